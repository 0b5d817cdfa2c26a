"""tw.get_variable / tw.variable_scope semantics (TF1) and the initializers."""

import numpy as np
import pytest

import tensorweave as tw


@pytest.fixture(autouse=True)
def fresh_graph():
    g = tw.Graph()
    with g.as_default():
        yield g


def _values(*tensors):
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        return sess.run(list(tensors))


# --- get_variable / variable_scope ----------------------------------------------------------------
def test_names_follow_variable_scope_and_ops_the_name_scope():
    with tw.variable_scope("foo") as scope:
        w = tw.get_variable("w", [3, 4])
        c = tw.constant(1.0, name="c")
        with tw.variable_scope("bar"):
            v = tw.get_variable("v", [2])
            d = tw.constant(2.0, name="d")
    assert scope.name == "foo" and scope.original_name_scope == "foo/"
    assert (w.name, c.name, v.name, d.name) == ("foo/w:0", "foo/c:0", "foo/bar/v:0", "foo/bar/d:0")
    # variable names ignore an enclosing plain name scope
    with tw.name_scope("outer"):
        with tw.variable_scope("baz"):
            u = tw.get_variable("u", [1])
            e = tw.constant(0.0, name="e")
    assert u.name == "baz/u:0" and e.name == "outer/baz/e:0"


def test_reentering_scope_by_name_reuses_variables_and_uniquifies_op_names():
    with tw.variable_scope("foo"):
        w = tw.get_variable("w", [3])
        tw.constant(1.0, name="c")
    with tw.variable_scope("foo", reuse=True):
        assert tw.get_variable("w", [3]) is w
        c = tw.constant(1.0, name="c")
    assert c.name == "foo_1/c:0"
    assert tw.trainable_variables() == [w]


def test_reuse_true_requires_existing_variable():
    with tw.variable_scope("foo", reuse=True):
        with pytest.raises(ValueError) as e:
            tw.get_variable("w", [1])
    assert str(e.value) == ("Variable foo/w does not exist, or was not created with "
                            "tw.get_variable(). Did you mean to set reuse=tw.AUTO_REUSE in "
                            "VarScope?")


def test_recreating_without_reuse_is_refused():
    with tw.variable_scope("foo"):
        tw.get_variable("w", [1])
    for reuse in (None, False):
        with tw.variable_scope("foo", reuse=reuse):
            with pytest.raises(ValueError) as e:
                tw.get_variable("w", [1])
        assert str(e.value).startswith(
            "Variable foo/w already exists, disallowed. Did you mean to set reuse=True or "
            "reuse=tw.AUTO_REUSE in VarScope?")
        assert "test_variable_scope.py" in str(e.value)  # where it was first defined


def test_auto_reuse_creates_then_shares():
    def layer():
        with tw.variable_scope("dense", reuse=tw.AUTO_REUSE):
            return tw.get_variable("w", [2, 2])

    a, b = layer(), layer()
    assert a is b and len(tw.global_variables()) == 1


def test_reuse_is_inherited_by_nested_scopes_and_reuse_variables():
    with tw.variable_scope("a"):
        with tw.variable_scope("b"):
            w = tw.get_variable("w", [1])
    with tw.variable_scope("a", reuse=True):
        with tw.variable_scope("b") as inner:
            assert inner.reuse is True
            assert tw.get_variable("w", [1]) is w
    with tw.variable_scope("a") as scope:
        assert scope.reuse is False
        scope.reuse_variables()
        with tw.variable_scope("b"):
            assert tw.get_variable("w") is w
    with tw.variable_scope("c"):
        v = tw.get_variable("v", [1])
        tw.get_variable_scope().reuse_variables()
        assert tw.get_variable("v") is v


def test_reenter_scope_object():
    with tw.variable_scope("model") as model_scope:
        w = tw.get_variable("w", [2])
    with tw.variable_scope("elsewhere"):
        with tw.variable_scope(model_scope, reuse=True) as again:
            assert again.name == "model"
            assert tw.get_variable("w") is w
            c = tw.constant(0.0, name="c")
    assert c.name == "elsewhere/model/c:0"  # TF1 opens the last component as a name scope
    with tw.variable_scope(model_scope):
        x = tw.get_variable("x", [1])
    assert x.name == "model/x:0"


def test_default_name_is_made_unique():
    names = []
    for _ in range(3):
        with tw.variable_scope(None, default_name="layer") as s:
            names.append(s.name)
            tw.get_variable("w", [1])
    assert names == ["layer", "layer_1", "layer_2"]
    with pytest.raises(TypeError, match="name_or_scope is required"):
        with tw.variable_scope(None):
            pass
    with pytest.raises(ValueError, match="reuse=True cannot be used without a name_or_scope"):
        with tw.variable_scope(None, default_name="x", reuse=True):
            pass


def test_shape_and_dtype_mismatch_on_reuse():
    with tw.variable_scope("s"):
        tw.get_variable("w", [3, 4])
    with tw.variable_scope("s", reuse=True):
        with pytest.raises(ValueError) as e:
            tw.get_variable("w", [4, 4])
        assert "(4, 4)" in str(e.value) and "(3, 4)" in str(e.value)
        assert "Trying to share variable s/w" in str(e.value)
        with pytest.raises(ValueError, match="specified dtype int32 and found dtype float32"):
            tw.get_variable("w", [3, 4], dtype=tw.int32)


def test_new_variable_needs_fully_defined_shape():
    with pytest.raises(ValueError, match=r"Shape of a new variable \(v\) must be fully defined"):
        tw.get_variable("v", [None, 3])
    with pytest.raises(ValueError, match="must be fully defined"):
        tw.get_variable("u")


def test_default_initializers_glorot_for_floats_zeros_for_ints():
    w = tw.get_variable("w", [50, 70])
    i = tw.get_variable("i", [5], dtype=tw.int64)
    wv, iv = _values(w, i)
    limit = np.sqrt(6.0 / 120)
    assert np.abs(wv).max() <= limit and wv.std() > 0.5 * limit / np.sqrt(3)
    assert iv.dtype == np.int64 and not iv.any()


def test_scope_initializer_and_dtype_are_defaults():
    with tw.variable_scope("s", initializer=tw.constant_initializer(3.0), dtype=tw.float64):
        a = tw.get_variable("a", [2])
        b = tw.get_variable("b", [2], initializer=tw.ones_initializer())
        with tw.variable_scope("inner"):
            c = tw.get_variable("c", [1])
    assert a.dtype == tw.float64
    av, bv, cv = _values(a, b, c)
    np.testing.assert_array_equal(av, [3.0, 3.0])
    np.testing.assert_array_equal(bv, [1.0, 1.0])
    np.testing.assert_array_equal(cv, [3.0])


def test_initializer_class_tensor_and_value():
    a = tw.get_variable("a", [3], initializer=tw.ones_initializer)  # the class, as TF1 allows
    b = tw.get_variable("b", initializer=tw.constant([1, 2], dtype=tw.int32))
    c = tw.get_variable("c", initializer=np.arange(4.0).reshape(2, 2), dtype=tw.float32)
    assert b.dtype == tw.int32 and b.shape.as_list() == [2] and c.shape.as_list() == [2, 2]
    av, bv, cv = _values(a, b, c)
    np.testing.assert_array_equal(av, np.ones(3))
    np.testing.assert_array_equal(bv, [1, 2])
    np.testing.assert_array_equal(cv, np.arange(4.0).reshape(2, 2))


def test_regularizer_adds_to_regularization_losses():
    with tw.variable_scope("s", regularizer=lambda v: tw.reduce_sum(v * v)):
        w = tw.get_variable("w", [2], initializer=tw.constant_initializer([1.0, 2.0]))
        tw.get_variable("nr", [2], regularizer=tw.no_regularizer)
    losses = tw.get_collection(tw.GraphKeys.REGULARIZATION_LOSSES)
    assert len(losses) == 1 and losses[0].op.name.startswith("s/w/Regularizer/")
    (lv,) = _values(losses[0])
    assert lv == pytest.approx(5.0)
    assert w in tw.trainable_variables()


def test_trainable_collections_and_creation_order():
    made = []
    with tw.variable_scope("z"):
        made.append(tw.get_variable("b", [1]))
        made.append(tw.get_variable("a", [1]))
    frozen = tw.get_variable("frozen", [1], trainable=False)
    local = tw.get_local_variable("counter", [], dtype=tw.int32)
    made.append(tw.get_variable("c", [1]))
    assert tw.trainable_variables() == made
    assert frozen in tw.global_variables() and frozen not in tw.trainable_variables()
    assert local in tw.local_variables() and local not in tw.global_variables()
    assert [v.name for v in tw.get_variable_scope().trainable_variables()] == \
        ["z/b:0", "z/a:0", "c:0"]


def test_custom_getter_sees_every_get_variable():
    seen = []

    def getter(next_getter, name, *args, **kwargs):
        seen.append(name)
        return next_getter(name, *args, **kwargs)

    with tw.variable_scope("g", custom_getter=getter):
        w = tw.get_variable("w", [1])
    assert seen == ["g/w"] and w.name == "g/w:0"


def test_scopes_are_per_graph():
    with tw.variable_scope("a"):
        tw.get_variable("w", [1])
    g2 = tw.Graph()
    with g2.as_default():
        assert tw.get_variable_scope().name == ""
        w2 = tw.get_variable("w", [1])  # no clash with the other graph's a/w or w
        assert w2.graph is g2


def test_variables_train_with_optimizer():
    x = tw.constant([[1.0, 2.0]])
    with tw.variable_scope("lin"):
        w = tw.get_variable("w", [2, 1], initializer=tw.zeros_initializer())
    loss = tw.reduce_sum((tw.matmul(x, w) - 1.0) * (tw.matmul(x, w) - 1.0))
    step = tw.train.GradientDescentOptimizer(0.1).minimize(loss)
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        for _ in range(30):
            sess.run(step)
        assert sess.run(loss) < 1e-4


# --- initializers ---------------------------------------------------------------------------------
def _sample(init, shape, dtype=tw.float32):
    with tw.Session() as sess:
        return sess.run(init(shape, dtype=dtype))


def test_zeros_ones_constant():
    np.testing.assert_array_equal(_sample(tw.zeros_initializer(), [2, 3]), np.zeros((2, 3)))
    ones = _sample(tw.ones_initializer(), [4], tw.int32)
    assert ones.dtype == np.int32 and (ones == 1).all()
    np.testing.assert_array_equal(_sample(tw.constant_initializer(7.5), [2, 2]),
                                  np.full((2, 2), 7.5))
    np.testing.assert_array_equal(_sample(tw.constant_initializer([1, 2, 3, 4]), [2, 2]),
                                  [[1, 2], [3, 4]])
    # TF1 pads a short list with its last value
    np.testing.assert_array_equal(_sample(tw.constant_initializer([1, 2]), [4]), [1, 2, 2, 2])
    with pytest.raises(ValueError, match="too many values"):
        tw.constant_initializer([1, 2, 3])([2])
    with pytest.raises(TypeError, match="expected value of shape"):
        tw.constant_initializer([1, 2], verify_shape=True)([3])
    np.testing.assert_array_equal(_sample(tw.initializers.identity(), [2, 3]), np.eye(2, 3))


def test_random_normal_and_uniform_statistics():
    x = _sample(tw.random_normal_initializer(mean=2.0, stddev=0.5, seed=1), [200, 100])
    assert abs(x.mean() - 2.0) < 0.02 and abs(x.std() - 0.5) < 0.02
    u = _sample(tw.random_uniform_initializer(-3.0, 1.0, seed=2), [20000])
    assert u.min() >= -3.0 and u.max() < 1.0 and abs(u.mean() + 1.0) < 0.05
    t = _sample(tw.truncated_normal_initializer(stddev=2.0, seed=3), [20000])
    assert np.abs(t).max() <= 4.0 and abs(t.std() - 2.0 * 0.8796) < 0.05


def test_glorot_and_variance_scaling_statistics():
    fan_in, fan_out = 300, 100
    g = _sample(tw.glorot_uniform_initializer(seed=4), [fan_in, fan_out])
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(g).max() <= limit and abs(g.var() - limit**2 / 3) < 0.1 * limit**2 / 3
    gn = _sample(tw.glorot_normal_initializer(seed=5), [fan_in, fan_out])
    assert abs(gn.var() - 2.0 / (fan_in + fan_out)) < 0.1 * 2.0 / (fan_in + fan_out)
    # conv kernels: fans multiply by the receptive field (3*3)
    he = _sample(tw.variance_scaling_initializer(2.0, "fan_in", "untruncated_normal", seed=6),
                 [3, 3, 32, 64])
    assert abs(he.var() - 2.0 / (9 * 32)) < 0.1 * 2.0 / (9 * 32)
    vs = _sample(tw.variance_scaling_initializer(1.0, "fan_out", "normal", seed=7), [400, 50])
    assert abs(vs.var() - 1.0 / 50) < 0.1 / 50 and np.abs(vs).max() <= 2 * np.sqrt(1 / 50) / 0.8796
    with pytest.raises(ValueError, match="mode must be"):
        tw.variance_scaling_initializer(mode="fan_sideways")
    with pytest.raises(ValueError, match="floating-point"):
        tw.glorot_uniform_initializer()([2, 2], dtype=tw.int32)


def test_seeded_initializer_is_reproducible_across_sessions():
    w = tw.get_variable("w", [5, 5], initializer=tw.random_normal_initializer(seed=11))
    a = _values(w)[0]
    b = _values(w)[0]
    np.testing.assert_array_equal(a, b)
    v = tw.get_variable("v", [5, 5], initializer=tw.random_normal_initializer(seed=12))
    assert not np.array_equal(_values(v)[0], a)


# --- partitioned variables -------------------------------------------------------------------------
def test_fixed_size_partitioner_shards_and_reuse():
    with tw.variable_scope("e", partitioner=tw.fixed_size_partitioner(3)):
        pv = tw.get_variable("emb", [10, 4], initializer=tw.random_normal_initializer(seed=1))
    assert isinstance(pv, tw.PartitionedVariable) and len(pv) == 3
    assert [v.name for v in pv] == ["e/emb/part_0:0", "e/emb/part_1:0", "e/emb/part_2:0"]
    assert [v.shape.as_list() for v in pv] == [[4, 4], [3, 4], [3, 4]]
    assert tw.trainable_variables() == list(pv)
    with tw.variable_scope("e", reuse=True):
        assert tw.get_variable("emb", [10, 4], partitioner=tw.fixed_size_partitioner(3)) is pv
    ids = tw.constant([0, 3, 4, 9])
    looked = tw.nn.embedding_lookup(list(pv), ids, partition_strategy="div")
    full, rows = _values(tw.convert_to_tensor(pv), looked)
    assert full.shape == (10, 4)
    np.testing.assert_array_equal(rows, full[[0, 3, 4, 9]])


def test_partitioned_initializer_sees_the_full_shape():
    part = tw.min_max_variable_partitioner(max_partitions=4, min_slice_size=1024)
    pv = tw.get_variable("w", [400, 100], partitioner=part,
                         initializer=tw.glorot_uniform_initializer(seed=3))
    assert len(pv) == 4  # 160 KB in slices of at least 1 KB, capped at 4
    (full,) = _values(tw.convert_to_tensor(pv))
    limit = np.sqrt(6.0 / 500)  # fans of the whole [400, 100] variable, not of a shard
    assert np.abs(full).max() <= limit and full.std() > 0.9 * limit / np.sqrt(3)


def test_variable_made_under_control_dependencies_initializes_alone():
    """TF1 creates variables in an init scope: their initializers do not wait for the
    control dependencies around them (before the fix, initializing needed the feed)."""
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [])
        counter = tw.Variable(0.0, name="counter")
        with tw.control_dependencies([counter.assign_add(x)]):
            made_inside = tw.Variable(7.0, name="made_inside")
            total = made_inside + 0.0
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as s:
        s.run(init)  # no feed needed, and the counter is not advanced
        assert s.run([counter, made_inside]) == [0.0, 7.0]
        assert s.run(total, {x: 2.0}) == 7.0 and s.run(counter) == 2.0
