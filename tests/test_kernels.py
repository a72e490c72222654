"""model.kernels: XLA:CPU's rewrites ('cpu') and the plain lax operations ('portable') compute the same layers and
train a tower to the same parameters, with the same variables; 'auto' is 'cpu' on this CPU backend; a workdir
resumes under either."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import abaw, dln, face_id
from pasn_jax import workdir_config
from pasn_jax.models import pasn, towers
from pasn_jax.models.iresnet import IResNet
from pasn_jax.models.layers import Conv1x1, Conv3x3, materialise
from pasn_jax.models.resnet import ResNet

FORMS = ("cpu", "portable")
# float32 rounding: the forms sum the same products in different orders (values ~1, gradients over <= 9 * 5 terms)
LAYER_TOLERANCE = dict(rtol=1e-5, atol=1e-5)
# after 3 SGD steps (lr 0.01, batch 8; measured: <= 2.2e-7 apart). Tiny towers at lr 0.1 or batch 4 are chaotic
# (ReLU masks and batch norm over 4-8 values per channel): a 1e-6 relative change of the initial weights alone moves
# them 2e-3 apart in 3 steps, which no tolerance of rounding covers.
TOWER_TOLERANCE = dict(rtol=1e-5, atol=2e-6)


def _random(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _value_and_gradients(layer, size, features=6):
    """{form: (output, d/dx, d/dkernel)} of `layer(kernels)` on one random input [2, size, size, 5], one kernel and
    one output cotangent shared by the forms, and the jaxpr of each form's gradient."""
    x = _random((2, size, size, 5), seed=size)
    variables = layer(FORMS[0]).init(jax.random.key(0), x)
    shapes = jax.tree.map(jnp.shape, variables)
    results, jaxprs = {}, {}
    for form in FORMS:
        module = layer(form)
        assert jax.tree.map(jnp.shape, module.init(jax.random.key(0), x)) == shapes  # the same variables
        y, vjp = jax.vjp(lambda v, x: module.apply(v, x), variables, x)
        g = _random(y.shape, seed=size + 1)
        dv, dx = vjp(g)
        results[form] = (y, dx, dv["params"]["kernel"])
        jaxprs[form] = str(jax.make_jaxpr(lambda v, x: jax.vjp(lambda v, x: module.apply(v, x), v, x)[1](g))(
            variables, x))
    return results, jaxprs


def _assert_same(results, tolerance):
    for got, want in zip(results["portable"], results["cpu"], strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, **tolerance)


@pytest.mark.parametrize("size", [7, 8])  # odd and even: stride 2 with padding 1 drops a row of an even input
def test_stride2_conv3x3_is_the_same_in_both_forms(size):
    results, jaxprs = _value_and_gradients(lambda form: Conv3x3(6, stride=2, kernels=form), size)
    assert results["cpu"][0].shape == (2, (size + 1) // 2, (size + 1) // 2, 6)
    _assert_same(results, LAYER_TOLERANCE)
    assert "custom_vjp_call" in jaxprs["cpu"] and "custom_vjp_call" not in jaxprs["portable"]
    assert "lhs_dilation=(2, 2)" in jaxprs["portable"]  # autodiff's input gradient: an input-dilated convolution


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
def test_conv1x1_is_the_same_in_both_forms(stride, size):
    results, jaxprs = _value_and_gradients(lambda form: Conv1x1(6, stride=stride, kernels=form), size)
    out = (size + stride - 1) // stride
    assert results["cpu"][0].shape == (2, out, out, 6)
    _assert_same(results, LAYER_TOLERANCE)
    assert "conv_general_dilated" not in jaxprs["cpu"] and "conv_general_dilated" in jaxprs["portable"]


@pytest.mark.parametrize("size", [7, 8])
def test_materialise_is_the_identity_in_both_forms(size):
    x, g = _random((2, size, size, 5), seed=size), _random((2, size, size, 5), seed=size + 1)
    for form, has_cond in (("cpu", True), ("portable", False)):
        fn = jax.jit(lambda v, form=form: materialise(v, form))
        y, vjp = jax.vjp(fn, x)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(vjp(g)[0], g)
        assert ("cond[" in str(jax.make_jaxpr(fn)(x))) == has_cond


def _trained(tower_class, kernels, images, target, steps=3, lr=0.01):
    """(variables of a tiny tower after `steps` plain SGD steps on a mean-square loss of its embedding, the jaxpr of
    a step)."""
    module = tower_class(layers=(1, 1, 1, 1), width=8, embedding_dim=16, kernels=kernels)
    variables = module.init(jax.random.key(0), images[:1])

    @jax.jit
    def step(variables):
        def loss_fn(params):
            emb, updated = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, images,
                                        train=True, mutable=["batch_stats"])
            return jnp.mean(jnp.square(emb - target)), updated["batch_stats"]

        grads, batch_stats = jax.grad(loss_fn, has_aux=True)(variables["params"])
        params = jax.tree.map(lambda p, g: p - lr * g, variables["params"], grads)
        return {"params": params, "batch_stats": batch_stats}

    jaxpr = str(jax.make_jaxpr(step)(variables))
    for _ in range(steps):
        variables = step(variables)
    return variables, jaxpr


@pytest.mark.parametrize("tower_class", [IResNet, ResNet])
def test_a_tower_trains_to_the_same_parameters_in_both_forms(tower_class):
    images = jnp.tanh(_random((8, 32, 32, 3), seed=0))
    target = _random((8, 16), seed=1)
    initial = tower_class(layers=(1, 1, 1, 1), width=8, embedding_dim=16).init(jax.random.key(0), images[:1])
    (cpu, cpu_jaxpr), (portable, portable_jaxpr) = (_trained(tower_class, form, images, target) for form in FORMS)
    if tower_class is IResNet:  # every stride-2 input gradient (3x3 and downsample 1x1) in autodiff's form or not
        assert "lhs_dilation=(2, 2)" in portable_jaxpr and "lhs_dilation=(2, 2)" not in cpu_jaxpr
    else:  # ResNet: materialise's cond after every block (forward and backward), or none
        assert cpu_jaxpr.count("cond[") == 2 * 4 and "cond[" not in portable_jaxpr
    paths = jax.tree_util.tree_flatten_with_path(cpu)[0]
    assert jax.tree.structure(portable) == jax.tree.structure(cpu)
    moved = 0
    for (path, a), b, start in zip(paths, jax.tree.leaves(portable), jax.tree.leaves(initial), strict=True):
        np.testing.assert_allclose(b, a, **TOWER_TOLERANCE, err_msg=jax.tree_util.keystr(path))
        moved += not np.allclose(a, start)
    assert moved > len(paths) // 2  # the steps changed most leaves: the comparison is not of initial values


def _model_config(**overrides):
    c = abaw.get_config("smoke").model
    c.update(overrides)
    return c


def test_auto_is_cpu_here_and_the_choice_reaches_every_layer():
    assert jax.default_backend() == "cpu"
    for config in (abaw.get_config("smoke"), dln.get_config("smoke"), face_id.get_config("smoke")):
        assert config.model.kernels == "auto"
    assert towers.tower_fields(_model_config())["kernels"] == "cpu"
    without = ml_collections.ConfigDict({k: v for k, v in _model_config().items() if k != "kernels"})
    assert towers.tower_fields(without)["kernels"] == "cpu"  # a config from before the key existed
    model = pasn.build_model(_model_config(kernels="portable"))
    assert model.kernels == "portable" and towers.tower_module(model).kernels == "portable"


def test_a_bad_kernels_value_is_named():
    with pytest.raises(towers.ModelConfigError, match=r"^model_config\.kernels: expected one of "
                                                      r"\['auto', 'portable', 'cpu'\], got 'gpu'$"):
        pasn.build_model(_model_config(kernels="gpu"))


def test_a_workdir_resumes_under_other_kernels_or_recorded_without_them(tmp_path):
    config = abaw.get_config("smoke")
    workdir_config.check(str(tmp_path), config)  # records kernels 'auto'
    for kernels in ("portable", "cpu"):
        config.model.kernels = kernels
        workdir_config.check(str(tmp_path), config)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["model"]["kernels"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    workdir_config.check(str(tmp_path), config)
    config.model.width = 16  # a parameter's change is still refused
    with pytest.raises(workdir_config.IncompatibleWorkdirError, match="model.width"):
        workdir_config.check(str(tmp_path), config)
