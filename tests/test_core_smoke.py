"""A first table: the ops the core skeleton defines, through the shared harness."""

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case

CASES = [
    OpCase("add_broadcast", lambda x, y: x + y, np.add, [(3, 4), (4,)], second_order=True),
    OpCase("sub_broadcast", lambda x, y: x - y, np.subtract, [(2, 1, 3), (4, 1)]),
    OpCase("mul", lambda x, y: x * y, np.multiply, [(3, 4), (3, 4)], second_order=True),
    OpCase("div", lambda x, y: x / y, np.divide, [(3,), (3,)],
           make_inputs=lambda r: [r.standard_normal(3), r.uniform(1, 2, 3)]),
    OpCase("neg", lambda x: -x, np.negative, [(5,)]),
    OpCase("tanh", tw.tanh, np.tanh, [(2, 3)], second_order=True),
    OpCase("matmul", tw.matmul, np.matmul, [(3, 4), (4, 2)], second_order=True),
    OpCase("matmul_tt", lambda a, b: tw.matmul(a, b, transpose_a=True, transpose_b=True),
           lambda a, b: a.T @ b.T, [(4, 3), (2, 4)]),
    OpCase("reduce_sum_axis", lambda x: tw.reduce_sum(x, 1), lambda x: x.sum(1), [(3, 4)]),
    OpCase("reduce_mean_keep", lambda x: tw.reduce_mean(x, [0], keepdims=True),
           lambda x: x.mean(0, keepdims=True), [(3, 4)]),
    OpCase("reduce_mean_dynamic", lambda x: tw.reduce_mean(x), np.mean, [(3, 4)],
           static_shapes=False),
    OpCase("add_dynamic", lambda x, y: x + y, np.add, [(3, 4), (1, 4)], static_shapes=False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_op(case):
    check_case(case)


def test_add_n_of_three_scalars():
    # regression: the kernel accumulated into a NumPy scalar returned by 0-d np.add
    xs = [tw.constant(float(i)) for i in range(1, 4)]
    with tw.Session() as sess:
        assert sess.run(tw.add_n(xs)) == 6.0
