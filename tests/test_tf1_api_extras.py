"""TF1 names a ported program reaches for: py_func, Print, check_numerics, Assert and the
assert_* checks, unique, linspace, eye, norm, selu/swish, conv1d, atrous and separable
convolutions, the tw.math / tw.linalg / tw.debugging namespaces."""

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case

pytestmark = pytest.mark.usefixtures("fresh_graph")


def _run(fetches, feed=None):
    with tw.Session() as s:
        return s.run(fetches, feed)


# --- py_func -----------------------------------------------------------------------------------
def test_py_func_single_and_several_outputs():
    x = tw.placeholder(tw.float32, [None])
    doubled = tw.py_func(lambda a: a * 2, [x], tw.float32)
    total, count = tw.py_func(lambda a: (a.sum(), a.size), [x], [tw.float64, tw.int32])
    assert doubled.dtype == tw.float32 and doubled.shape.ndims is None
    d, t, c = _run([doubled, total, count], {x: [1.0, 2.5]})
    assert d.tolist() == [2.0, 5.0] and d.dtype == np.float32
    assert t == 3.5 and t.dtype == np.float64 and c == 2 and c.dtype == np.int32
    (g,) = tw.gradients(tw.reduce_sum(doubled) + tw.reduce_sum(x), [x])
    assert _run(g, {x: [1.0, 2.0]}).tolist() == [1.0, 1.0]  # nothing through the py_func


def test_py_func_stateful_runs_every_time_stateless_may_merge():
    calls = []

    def f(a):
        calls.append(1)
        return a + 1

    x = tw.constant([1, 2])
    a = tw.py_func(f, [x], tw.int32)
    b = tw.py_func(f, [x], tw.int32)
    _run([a, b])
    assert len(calls) == 2
    assert tw.get_default_graph().get_operation_by_name("PyFunc").type == "PyFunc"
    s = tw.py_func(f, [x], tw.int32, stateful=False)
    assert s.op.type == "PyFuncStateless"


def test_py_func_errors_name_the_function_and_the_op():
    x = tw.constant([1.0])

    def broken(a):
        raise ValueError("no tokens here")

    with pytest.raises(tw.errors.UnknownError, match=r"ValueError: no tokens here.*'broken'"):
        _run(tw.py_func(broken, [x], tw.float32))
    with pytest.raises(tw.errors.InvalidArgumentError, match="returned 1 values but Tout"):
        _run(tw.py_func(lambda a: a, [x], [tw.float32, tw.float32]))
    with pytest.raises(tw.errors.InvalidArgumentError, match="does not convert"):
        _run(tw.py_func(lambda a: a, [x], tw.int32))
    with pytest.raises(TypeError, match="callable"):
        tw.py_func(3, [x], tw.float32)


# --- Print, check_numerics, Assert ------------------------------------------------------------
def test_print_passes_the_value_through_and_prints_first_n(capfd):
    x = tw.placeholder(tw.float32, [None])
    p = tw.Print(x, [x, tw.size(x)], message="x: ", first_n=2, summarize=2)
    (g,) = tw.gradients(tw.reduce_sum(3.0 * p), [x])
    with tw.Session() as s:
        for _ in range(3):
            out = s.run(p, {x: [1.0, 2.0, 3.0]})
        grad = s.run(g, {x: [1.0, 2.0, 3.0]})
    err = capfd.readouterr().err
    assert out.tolist() == [1.0, 2.0, 3.0] and grad.tolist() == [3.0, 3.0, 3.0]
    assert err.count("x: [1.0 2.0...][3]") == 2


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")  # log(0), log(-1): checked
def test_check_numerics_and_its_gradient():
    x = tw.placeholder(tw.float32, [None])
    y = tw.check_numerics(tw.log(x), "log of x")
    checked = tw.check_numerics(x, "x")
    (g,) = tw.gradients(tw.reduce_sum(tw.log(checked)), [x])  # d/dx log x = inf at 0
    with tw.Session() as s:
        assert s.run(y, {x: [1.0]}).tolist() == [0.0]
        with pytest.raises(tw.errors.InvalidArgumentError, match="log of x : Tensor had Inf"):
            s.run(y, {x: [0.0]})
        with pytest.raises(tw.errors.InvalidArgumentError, match="NaN"):
            s.run(y, {x: [-1.0]})
        assert s.run(g, {x: [2.0]}).tolist() == [0.5]
        with pytest.raises(tw.errors.InvalidArgumentError, match="detected in gradient. x"):
            s.run(g, {x: [0.0]})
    with pytest.raises(TypeError, match="floating-point"):
        tw.check_numerics(tw.constant([1]), "ints")


@pytest.mark.parametrize("check, good, bad", [
    (lambda x: tw.assert_positive(x), [1.0, 2.0], [1.0, 0.0]),
    (lambda x: tw.assert_non_negative(x), [0.0, 2.0], [-1.0, 0.0]),
    (lambda x: tw.assert_negative(x), [-1.0], [0.0]),
    (lambda x: tw.assert_non_positive(x), [0.0], [0.5]),
    (lambda x: tw.assert_equal(x, [1.0, 2.0]), [1.0, 2.0], [1.0, 3.0]),
    (lambda x: tw.assert_none_equal(x, [1.0, 2.0]), [2.0, 1.0], [1.0, 1.0]),
    (lambda x: tw.assert_less(x, 2.0), [1.0, 1.5], [1.0, 2.0]),
    (lambda x: tw.assert_less_equal(x, 2.0), [2.0], [2.5]),
    (lambda x: tw.assert_greater(x, 0.0), [1.0], [0.0]),
    (lambda x: tw.debugging.assert_greater_equal(x, 0.0), [0.0], [-0.1]),
])
def test_assertions_guard_what_depends_on_them(check, good, bad):
    x = tw.placeholder(tw.float32, [None])
    with tw.control_dependencies([check(x)]):
        y = tw.identity(x)
    with tw.Session() as s:
        assert s.run(y, {x: good}).tolist() == good
        with pytest.raises(tw.errors.InvalidArgumentError, match="assertion failed"):
            s.run(y, {x: bad})


def test_assert_message_and_data():
    x = tw.constant([3, 4])
    op = tw.Assert(tw.reduce_all(x < 4), ["x too big:", x])
    with pytest.raises(tw.errors.InvalidArgumentError,
                       match=r"assertion failed: \[x too big:\] \[3 4\]"):
        _run(op)
    with pytest.raises(TypeError, match="bool"):
        tw.Assert(x, [])


# --- array and math additions -------------------------------------------------------------------
def test_unique_keeps_first_appearance_order():
    y, idx = tw.unique([4, 1, 4, 7, 1, 1])
    v, i, c = tw.unique_with_counts(tw.constant([2.5, 2.5, -1.0]), out_idx=tw.int64)
    got = _run([y, idx, v, i, c])
    assert got[0].tolist() == [4, 1, 7] and got[1].tolist() == [0, 1, 0, 2, 1, 1]
    assert got[2].tolist() == [2.5, -1.0] and got[3].dtype == np.int64
    assert got[4].tolist() == [2, 1]
    with pytest.raises(ValueError, match="1-D"):
        tw.unique(tw.zeros([2, 2]))


def test_linspace_and_eye():
    n = tw.placeholder(tw.int32, [])
    lin = tw.linspace(-1.0, 1.0, 5)
    dyn = tw.lin_space(0.0, 1.0, n)
    assert lin.shape.as_list() == [5] and dyn.shape.as_list() == [None]
    got = _run([lin, dyn, tw.eye(2, 3), tw.eye(n, dtype=tw.int32), tw.eye(2, batch_shape=[3])],
               {n: 1})
    np.testing.assert_allclose(got[0], np.linspace(-1, 1, 5))
    assert got[1].tolist() == [0.0]
    assert got[2].tolist() == np.eye(2, 3).tolist()
    assert got[3].tolist() == [[1]] and got[3].dtype == np.int32
    assert got[4].shape == (3, 2, 2)
    with pytest.raises(tw.errors.InvalidArgumentError, match="num must be positive"):
        _run(dyn, {n: 0})


X34 = np.random.default_rng(0).standard_normal((3, 4))


@pytest.mark.parametrize("kwargs, ref", [
    ({}, lambda x: np.linalg.norm(x)),
    ({"ord": 1, "axis": 1}, lambda x: np.abs(x).sum(1)),
    ({"ord": np.inf, "axis": 0, "keepdims": True}, lambda x: np.abs(x).max(0, keepdims=True)),
    ({"ord": 3, "axis": -1}, lambda x: (np.abs(x) ** 3).sum(-1) ** (1 / 3)),
    ({"ord": "fro", "axis": [0, 1]}, lambda x: np.linalg.norm(x, "fro")),
    ({"ord": 1, "axis": (0, 1)}, lambda x: np.linalg.norm(x, 1)),
    ({"ord": np.inf, "axis": [0, 1]}, lambda x: np.linalg.norm(x, np.inf)),
])
def test_norm_matches_numpy(kwargs, ref):
    np.testing.assert_allclose(_run(tw.norm(X34, **kwargs)), ref(X34), rtol=1e-12)


def test_norm_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match="not supported"):
        tw.norm(X34, ord=2, axis=[0, 1])
    with pytest.raises(ValueError, match="ord must be"):
        tw.norm(X34, ord=-1)


CASES = [
    OpCase("selu", lambda x: tw.nn.selu(x),
           lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 *
                                                   np.expm1(np.minimum(x, 0))), [(3, 4)]),
    OpCase("swish", lambda x: tw.nn.swish(x), lambda x: x / (1 + np.exp(-x)), [(3, 4)]),
    OpCase("conv1d", lambda x, f: tw.nn.conv1d(x, f, 1, "VALID"),
           lambda x, f: np.stack([np.einsum("bkc,kco->bo", x[:, i:i + 3], f)
                                  for i in range(5)], 1), [(2, 7, 3), (3, 3, 2)]),
    OpCase("conv1d_stride2_ncw", lambda x, f: tw.nn.conv1d(x, f, [1, 1, 2], "VALID",
                                                           data_format="NCW"),
           lambda x, f: np.stack([np.einsum("bck,kco->bo", x[:, :, i:i + 3], f)
                                  for i in range(0, 5, 2)], 2), [(2, 3, 7), (3, 3, 2)]),
    OpCase("atrous_conv2d", lambda x, f: tw.nn.atrous_conv2d(x, f, 2, "VALID"),
           lambda x, f: np.einsum("bhwc,co->bhwo", x[:, 0:1, 0:1] * 0, f[0, 0]) + sum(
               np.einsum("bhwc,co->bhwo", x[:, 2 * i:2 * i + 1, 2 * j:2 * j + 1], f[i, j])
               for i in range(2) for j in range(2)), [(2, 3, 3, 2), (2, 2, 2, 3)]),
    OpCase("separable_conv2d",
           lambda x, d, p: tw.nn.separable_conv2d(x, d, p, [1, 1, 1, 1], "VALID"),
           lambda x, d, p: np.einsum("bhwk,ko->bhwo", sum(
               (x[:, i:i + 2, j:j + 2, :, None] * d[i, j]) for i in range(2)
               for j in range(2)).reshape(2, 2, 2, 4), p[0, 0]),
           [(2, 3, 3, 2), (2, 2, 2, 2), (1, 1, 4, 3)]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_new_nn_ops(case):
    check_case(case)


def test_namespaces():
    assert tw.math.reduce_sum is tw.reduce_sum and tw.math.top_k is tw.nn.top_k
    assert tw.linalg.matmul is tw.matmul and tw.linalg.norm is tw.norm
    t = tw.linalg.matrix_transpose(tw.zeros([2, 3, 4]))
    assert t.shape.as_list() == [2, 4, 3]
    assert tw.debugging.check_numerics is tw.check_numerics
    with pytest.raises(ValueError, match="rank >= 2"):
        tw.linalg.adjoint(tw.zeros([3]))


def test_conv1d_and_transposed_conv_layers():
    x = tw.placeholder(tw.float32, [None, 7, 3])
    y = tw.layers.conv1d(x, 4, 3, padding="same", activation=tw.nn.relu, name="c1")
    img = tw.placeholder(tw.float32, [None, 5, 5, 2])
    up_same = tw.layers.conv2d_transpose(img, 3, 3, strides=2, padding="same")
    up_valid = tw.layers.conv2d_transpose(img, 3, 3, strides=2)
    assert y.shape.as_list() == [None, 7, 4]
    assert up_same.shape.as_list() == [None, 10, 10, 3]
    assert up_valid.shape.as_list() == [None, 11, 11, 3]
    kernel, bias = tw.trainable_variables()[:2]
    assert kernel.op.name == "c1/kernel" and kernel.shape.as_list() == [3, 3, 4]
    ref = tw.nn.relu(tw.nn.bias_add(tw.nn.conv1d(x, kernel, 1, "SAME"), bias))
    (g,) = tw.gradients(tw.reduce_sum(up_valid), [img])
    xv = np.random.default_rng(1).standard_normal((2, 7, 3)).astype(np.float32)
    iv = np.ones((2, 5, 5, 2), np.float32)
    with tw.Session() as s:
        s.run(tw.global_variables_initializer())
        yv, rv, uv, gv = s.run([y, ref, up_valid, g], {x: xv, img: iv})
    np.testing.assert_allclose(yv, rv, rtol=1e-6)
    assert uv.shape == (2, 11, 11, 3) and gv.shape == (2, 5, 5, 2)


X234 = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
SEQ = np.arange(20, dtype=np.float64).reshape(2, 5, 2)


def _reverse_ref(x, lengths):
    out = x.copy()
    for b, n in enumerate(lengths):
        out[b, :n] = x[b, :n][::-1]
    return out


MATRIX_CASES = [
    OpCase("matrix_band_part", lambda x: tw.matrix_band_part(x, 1, 0),
           lambda x: np.tril(x) - np.tril(x, -2), [(2, 3, 4)]),
    OpCase("matrix_band_part_upper", lambda x: tw.linalg.band_part(x, 0, -1),
           lambda x: np.triu(x), [(3, 3)]),
    OpCase("matrix_diag", lambda d: tw.matrix_diag(d),
           lambda d: d[..., None] * np.eye(3), [(2, 3)]),
    OpCase("matrix_diag_part", lambda x: tw.matrix_diag_part(x),
           lambda x: np.diagonal(x, axis1=-2, axis2=-1), [(2, 4, 3)]),
    OpCase("matrix_set_diag", lambda x, d: tw.matrix_set_diag(x, d),
           lambda x, d: x * (1 - np.eye(3)) + d[..., None] * np.eye(3), [(2, 3, 3), (2, 3)]),
    OpCase("trace", lambda x: tw.trace(x), lambda x: np.trace(x, axis1=-2, axis2=-1),
           [(2, 3, 3)]),
    OpCase("reverse_sequence", lambda x: tw.reverse_sequence(x, [3, 5], seq_axis=1),
           lambda x: _reverse_ref(x, [3, 5]), [(2, 5, 2)]),
    OpCase("reverse_sequence_time_major",
           lambda x: tw.reverse_sequence(x, [2, 4], seq_axis=0, batch_axis=1),
           lambda x: _reverse_ref(x.transpose(1, 0, 2), [2, 4]).transpose(1, 0, 2), [(4, 2, 3)]),
    OpCase("segment_mean", lambda x: tw.segment_mean(x, [0, 0, 2]),
           lambda x: np.stack([x[:2].mean(0), np.zeros(2), x[2]]), [(3, 2)]),
    OpCase("unsorted_segment_mean", lambda x: tw.unsorted_segment_mean(x, [1, 0, 1], 3),
           lambda x: np.stack([x[1], (x[0] + x[2]) / 2, np.zeros(2)]), [(3, 2)]),
]


@pytest.mark.parametrize("case", MATRIX_CASES, ids=str)
def test_matrix_sequence_and_segment_ops(case):
    check_case(case)


def test_diag_meshgrid_and_counting():
    got = _run(dict(
        diag=tw.diag([1, 2, 3]), diag_part=tw.diag_part(np.arange(9).reshape(3, 3)),
        xy=tw.meshgrid([1, 2, 3], [4, 5]), ij=tw.meshgrid([1, 2, 3], [4, 5], indexing="ij"),
        seg=tw.segment_sum([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 3]),
        count=tw.bincount([1, 1, 3, 0]), weighted=tw.bincount([1, 1, 3], [0.5, 0.5, 2.0],
                                                              minlength=6),
        capped=tw.bincount([1, 5, 9], maxlength=4),
        cm=tw.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1]),
        cm4=tw.confusion_matrix([0, 1], [1, 1], num_classes=4, weights=[2, 3]),
    ))
    assert got["diag"].tolist() == np.diag([1, 2, 3]).tolist()
    assert got["diag_part"].tolist() == [0, 4, 8]
    for g, r in zip(got["xy"], np.meshgrid([1, 2, 3], [4, 5])):
        assert g.tolist() == r.tolist()
    for g, r in zip(got["ij"], np.meshgrid([1, 2, 3], [4, 5], indexing="ij")):
        assert g.tolist() == r.tolist()
    assert got["seg"].tolist() == [3.0, 3.0, 0.0, 4.0]
    assert got["count"].tolist() == [1, 2, 0, 1] and got["count"].dtype == np.int32
    assert got["weighted"].tolist() == [0, 1, 0, 2, 0, 0]
    assert got["capped"].tolist() == [0, 1, 0, 0]
    assert got["cm"].tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert got["cm4"].tolist() == [[0, 2, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="rank >= 2"):
        tw.matrix_band_part(tw.zeros([3]), -1, 0)
    with pytest.raises(ValueError, match="indexing"):
        tw.meshgrid([1], [2], indexing="xz")


def test_nce_loss_trains_a_linear_classifier():
    rng = np.random.default_rng(0)
    classes, dim = 20, 16
    centers = rng.standard_normal((classes, dim)).astype(np.float32)
    ids = np.arange(200) % classes
    xv = centers[ids] + 0.1 * rng.standard_normal((200, dim)).astype(np.float32)
    x = tw.constant(xv)
    w = tw.Variable(np.zeros((classes, dim), np.float32))
    b = tw.Variable(np.zeros(classes, np.float32))
    loss = tw.reduce_mean(tw.nn.nce_loss(w, b, tw.constant(ids[:, None].astype(np.int64)), x,
                                         num_sampled=5, num_classes=classes, seed=1))
    step = tw.train.AdamOptimizer(0.05).minimize(loss)
    predicted = tw.argmax(tw.matmul(x, w, transpose_b=True) + b, 1)
    with tw.Session() as s:
        s.run(tw.global_variables_initializer())
        first = s.run(loss)
        for _ in range(150):
            s.run(step)
        last, pred = s.run([loss, predicted])
    assert last < 0.5 * first
    assert (pred == ids).mean() > 0.9  # the full softmax's choice, trained by NCE only


def test_py_func_gets_bytes_for_strings_and_scalars_for_scalars():
    seen = []

    def f(name, n, words):
        seen.append((type(name), type(n), words.dtype, list(words)))
        return np.int64(len(name.decode()) + n)

    out = tw.py_func(f, [tw.constant("abc"), tw.constant(2), tw.constant(["x", "yz"])],
                     tw.int64)
    assert _run(out) == 5
    assert seen == [(bytes, np.int32, np.dtype(object), [b"x", b"yz"])]


def test_strings_are_bytes_as_in_tensorflow():
    """tw.string holds bytes: a fetched string scalar is a ``bytes`` object, arrays are object
    arrays of bytes; str constants and feeds are encoded as UTF-8 (before, fetches came back
    as NumPy unicode arrays and ``.decode()`` failed)."""
    p = tw.placeholder(tw.string, [None])
    same = tw.equal(p, tw.constant(["a", "é"]))
    with tw.Session() as s:
        scalar = s.run(tw.constant("héllo"))
        arr, eq = s.run([tw.constant([["a", "b"]]), same], {p: ["a", "é".encode()]})
        fed = s.run(tw.identity(p), {p: np.array(["x", "yz"])})
    assert scalar == "héllo".encode() and scalar.decode() == "héllo"
    assert arr.dtype == object and arr.tolist() == [[b"a", b"b"]]
    assert eq.tolist() == [True, True]
    assert fed.tolist() == [b"x", b"yz"]


def test_gfile_io_gfile_and_errors(tmp_path):
    d = str(tmp_path / "a" / "b")
    tw.gfile.MakeDirs(d)
    tw.gfile.MakeDirs(d)  # existing: fine
    with tw.gfile.GFile(d + "/x.txt", "w") as f:
        f.write("hello")
    assert tw.io.gfile.exists(d + "/x.txt") and tw.gfile.IsDirectory(d)
    assert tw.gfile.ListDirectory(d) == ["x.txt"] and tw.io.gfile.glob(d + "/*.txt") == [
        d + "/x.txt"]
    tw.gfile.Copy(d + "/x.txt", d + "/y.txt")
    with pytest.raises(tw.errors.AlreadyExistsError):
        tw.gfile.Copy(d + "/x.txt", d + "/y.txt")
    tw.gfile.Rename(d + "/y.txt", d + "/z.txt")
    assert tw.gfile.GFile(d + "/z.txt").read() == "hello"
    tw.gfile.Remove(d + "/z.txt")
    with pytest.raises(tw.errors.NotFoundError, match="No such file"):
        tw.gfile.GFile(d + "/z.txt")
    assert [w[0] for w in tw.gfile.Walk(str(tmp_path))] == [str(tmp_path), str(tmp_path / "a"),
                                                            d]
    tw.gfile.DeleteRecursively(str(tmp_path / "a"))
    assert not tw.gfile.Exists(str(tmp_path / "a"))


def test_logging_compat_and_graph_mode_switches(caplog):
    with caplog.at_level(tw.logging.INFO, logger="tensorweave"):
        tw.logging.info("step %d", 7)
        for i in range(5):
            tw.logging.log_every_n(tw.logging.INFO, "every %d", 2, i)
        for i in range(5):
            tw.logging.log_first_n(tw.logging.WARN, "first %d", 2, i)
    text = caplog.text
    assert "step 7" in text and "every 0" in text and "every 2" in text and "every 1" not in text
    assert "first 1" in text and "first 2" not in text
    assert tw.compat.v1.placeholder is tw.placeholder
    assert tw.compat.as_bytes("é") == "é".encode() and tw.compat.as_text(b"x") == "x"
    tw.disable_v2_behavior()
    tw.compat.v1.disable_eager_execution()
    assert tw.executing_eagerly() is False
    with pytest.raises(NotImplementedError, match="graph mode"):
        tw.enable_eager_execution()
