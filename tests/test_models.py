"""PASN network: shapes of every variant, documented parameter counts, the PyTorch layout (names, shapes and the
function itself against a numpy re-implementation working on PyTorch-layout weights), the frozen identity tower
under one SGD step, copy_tower, config errors. Tiny networks (width 8, one block per stage, 32 px)."""

import re
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pasn_jax import losses
from pasn_jax.labels import NUM_AUS, NUM_EXPRS
from pasn_jax.models import pasn, towers
from pasn_jax.models.iresnet import IResNet
from pasn_jax.models.resnet import ResNet

TINY = dict(backbone="iresnet18", width=8, layers=(1, 1, 1, 1), embedding_dim=32, image_size=32, prior=True,
            streaming=True, dropout=0.1, dtype="float32")
REAL = dict(TINY, width=64, layers=None, embedding_dim=512, image_size=112, dropout=0.0)
B = 8


def config(**overrides):
    return SimpleNamespace(**{**TINY, **overrides})


def count(tree):
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))


def abstract_variables(model, size):
    return jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                                             jnp.zeros((1, size, size, 3)), train=False))


def random_variables(model, size, seed):
    """Variables of the model's shapes filled at random: BN scales, statistics and PReLU slopes included, so a
    comparison exercises every parameter (a fresh init has scale 1, mean 0, var 1)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, leaf.shape)
        elif name in ("bias", "mean", "negative_slope"):
            value = rng.normal(0, 0.2, leaf.shape)
        else:  # conv / dense kernels: unit-variance outputs
            value = rng.normal(0, 1, leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract_variables(model, size))


def images(seed, size=32, batch=B):
    return jax.random.uniform(jax.random.key(seed), (batch, size, size, 3), minval=-1, maxval=1)


# --- shapes and parameter counts ------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["iresnet18", "resnet50"])
@pytest.mark.parametrize("prior", [True, False])
@pytest.mark.parametrize("streaming", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_output_shapes_of_every_variant(backbone, prior, streaming, dtype):
    model = pasn.build_model(config(backbone=backbone, prior=prior, streaming=streaming, dtype=dtype))
    variables = abstract_variables(model, 32)
    assert set(variables) == {"params", "batch_stats"}
    tops = {"prior": {"f_expr", "f_id"}} if prior else {"backbone"}
    assert set(variables["params"]) == {*tops, "heads"}
    if prior:
        assert set(variables["params"]["prior"]) == {"f_expr", "f_id"}
    translators = {"au_to_expr", "au_expr_to_va"}
    assert translators <= set(variables["params"]["heads"]) if streaming else \
        not translators & set(variables["params"]["heads"])
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))  # params stay float32
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, rngs={"dropout": jax.random.key(0)},
                                                  mutable=["batch_stats"]), variables, images(0))[0]
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        "au": ((B, NUM_AUS), jnp.float32), "expr": ((B, NUM_EXPRS), jnp.float32), "va": ((B, 2), jnp.float32)}


def iresnet_torch_count(layers, width, size, embedding):
    """Parameters of insightface's IResNet (model.parameters(), features.weight included), from its layout."""
    total = 27 * width + 2 * width + width  # stem conv, bn, prelu
    cin = width
    for stage, blocks in enumerate(layers):
        p = width * 2**stage
        for block in range(blocks):
            total += 2 * cin + 9 * cin * p + 2 * p + p + 9 * p * p + 2 * p
            if block == 0:
                total += cin * p + 2 * p
            cin = p
    return total + 2 * cin + cin * (size // 16) ** 2 * embedding + embedding + 2 * embedding


def resnet_torch_count(layers, width, embedding):
    """Parameters of torchvision's ResNet (Bottleneck) with an `embedding`-way fc, from its layout."""
    total = 49 * 3 * width + 2 * width
    cin = width
    for stage, blocks in enumerate(layers):
        p = width * 2**stage
        for block in range(blocks):
            total += cin * p + 2 * p + 9 * p * p + 2 * p + p * 4 * p + 8 * p
            if block == 0:
                total += cin * 4 * p + 8 * p
            cin = 4 * p
    return total + cin * embedding + embedding


# The table in pasn_jax/models/README.md: flax parameters of one tower (insightface's fixed features.weight has no
# flax counterpart, so PyTorch's model.parameters() counts 512 more for IResNets).
TOWER_PARAMS = {
    ("iresnet18", 112): 24_025_088, ("iresnet18", 224): 62_560_256,
    ("iresnet34", 112): 34_138_816, ("iresnet34", 224): 72_673_984,
    ("iresnet50", 112): 43_590_336, ("iresnet50", 224): 82_125_504,
    ("iresnet100", 112): 65_155_648, ("iresnet100", 224): 103_690_816,
    ("resnet50", 112): 24_557_120, ("resnet50", 224): 24_557_120,
}
HEADS_PARAMS = {True: 225_941, False: 176_533}  # streaming, parallel (embedding 512)


@pytest.mark.parametrize("backbone,size", sorted(TOWER_PARAMS))
def test_documented_parameter_counts(backbone, size):
    model = pasn.build_model(SimpleNamespace(**{**REAL, "backbone": backbone, "image_size": size, "prior": False}))
    params = abstract_variables(model, size)["params"]
    tower = count(params["backbone"])
    assert tower == TOWER_PARAMS[backbone, size]
    layers = towers.DEFAULT_LAYERS[backbone]
    if backbone.startswith("iresnet"):
        assert tower + 512 == iresnet_torch_count(layers, 64, size, 512)
    else:
        assert tower == resnet_torch_count(layers, 64, 512)
    assert count(params["heads"]) == HEADS_PARAMS[True]


def test_resnet50_with_1000_classes_has_torchvisions_count_and_pasn_totals():
    model = pasn.build_model(SimpleNamespace(**{**REAL, "backbone": "resnet50", "image_size": 224,
                                                "embedding_dim": 1000, "prior": False}))
    assert count(abstract_variables(model, 224)["params"]["backbone"]) == 25_557_032  # torchvision resnet50
    model = pasn.build_model(SimpleNamespace(**{**REAL, "backbone": "iresnet50", "streaming": False}))
    params = abstract_variables(model, 112)["params"]
    mask = towers.trainable_mask(params)
    trainable = sum(p.size for p, t in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)) if t)
    assert count(params) == 2 * TOWER_PARAMS["iresnet50", 112] + HEADS_PARAMS[False]
    assert trainable == TOWER_PARAMS["iresnet50", 112] + HEADS_PARAMS[False]


# --- PyTorch layout -------------------------------------------------------------------------------------------

def insightface_keys(layers, width, size, embedding):
    """state_dict key -> shape of insightface's IResNet, written from its source (num_batches_tracked left out)."""
    keys = {}

    def bn(prefix, c):
        keys.update({f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")})

    keys["conv1.weight"] = (width, 3, 3, 3)
    bn("bn1", width)
    keys["prelu.weight"] = (width,)
    cin = width
    for stage, blocks in enumerate(layers):
        p = width * 2**stage
        for block in range(blocks):
            prefix = f"layer{stage + 1}.{block}"
            bn(f"{prefix}.bn1", cin)
            keys[f"{prefix}.conv1.weight"] = (p, cin, 3, 3)
            bn(f"{prefix}.bn2", p)
            keys[f"{prefix}.prelu.weight"] = (p,)
            keys[f"{prefix}.conv2.weight"] = (p, p, 3, 3)
            bn(f"{prefix}.bn3", p)
            if block == 0:
                keys[f"{prefix}.downsample.0.weight"] = (p, cin, 1, 1)
                bn(f"{prefix}.downsample.1", p)
            cin = p
    bn("bn2", cin)
    keys["fc.weight"] = (embedding, cin * (size // 16) ** 2)
    keys["fc.bias"] = (embedding,)
    bn("features", embedding)
    return keys


def torchvision_keys(layers, width, embedding):
    """state_dict key -> shape of torchvision's resnet50 with an `embedding`-way fc."""
    keys = {}

    def bn(prefix, c):
        keys.update({f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")})

    keys["conv1.weight"] = (width, 3, 7, 7)
    bn("bn1", width)
    cin = width
    for stage, blocks in enumerate(layers):
        p = width * 2**stage
        for block in range(blocks):
            prefix = f"layer{stage + 1}.{block}"
            keys[f"{prefix}.conv1.weight"] = (p, cin, 1, 1)
            bn(f"{prefix}.bn1", p)
            keys[f"{prefix}.conv2.weight"] = (p, p, 3, 3)
            bn(f"{prefix}.bn2", p)
            keys[f"{prefix}.conv3.weight"] = (4 * p, p, 1, 1)
            bn(f"{prefix}.bn3", 4 * p)
            if block == 0:
                keys[f"{prefix}.downsample.0.weight"] = (4 * p, cin, 1, 1)
                bn(f"{prefix}.downsample.1", 4 * p)
            cin = 4 * p
    keys["fc.weight"] = (embedding, cin)
    keys["fc.bias"] = (embedding,)
    return keys


LEAF_TO_TORCH = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
                 ("params", "negative_slope"): "weight", ("batch_stats", "mean"): "running_mean",
                 ("batch_stats", "var"): "running_var"}


def to_torch_state(tower_variables):
    """The README's mapping, flax tower -> PyTorch state_dict: join the path with '.', layerK_J -> layerK.J,
    downsample_N -> downsample.N, leaf names as LEAF_TO_TORCH; conv kernels [kh, kw, in, out] -> [out, in, kh, kw],
    dense kernels [in, out] -> [out, in]. Traceable, so jax.eval_shape gives the shapes of a whole network."""
    state = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tower_variables[collection])[0]:
            names = [p.key for p in path]
            module = re.sub(r"(layer\d+|downsample)_(\d+)", r"\1.\2", ".".join(names[:-1]))
            if names[-1] == "kernel":
                leaf = jnp.transpose(leaf, (3, 2, 0, 1) if leaf.ndim == 4 else (1, 0))
            state[f"{module}.{LEAF_TO_TORCH[collection, names[-1]]}"] = leaf
    return state


def test_iresnet_and_resnet50_map_one_to_one_onto_pytorch_state_dicts():
    ir = pasn.build_model(SimpleNamespace(**{**REAL, "prior": True}))  # iresnet18, 112 px
    tower = towers.get_tower(abstract_variables(ir, 112), "f_id")
    got = {k: tuple(v.shape) for k, v in jax.eval_shape(to_torch_state, tower).items()}
    expected = insightface_keys((2, 2, 2, 2), 64, 112, 512)
    assert expected.pop("features.weight") == (512,)  # fixed at 1 in insightface: use_scale=False here
    assert got == expected
    rn = pasn.build_model(SimpleNamespace(**{**REAL, "backbone": "resnet50", "image_size": 224, "prior": False}))
    tower = towers.get_tower(abstract_variables(rn, 224), "backbone")
    got = {k: tuple(v.shape) for k, v in jax.eval_shape(to_torch_state, tower).items()}
    assert got == torchvision_keys((3, 4, 6, 3), 64, 512)


# numpy re-implementation in PyTorch's conventions (NCHW, weights [out, in, kh, kw]), float64.
def np_conv(x, w, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    ho, wo = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    return sum(np.einsum("nchw,oc->nohw", x[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride], w[:, :, i, j])
               for i in range(kh) for j in range(kw))


def np_bn(x, s, prefix, fixed_weight=False):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    weight = 1.0 if fixed_weight else s[f"{prefix}.weight"].reshape(shape)
    mean, var = s[f"{prefix}.running_mean"].reshape(shape), s[f"{prefix}.running_var"].reshape(shape)
    return (x - mean) / np.sqrt(var + 1e-5) * weight + s[f"{prefix}.bias"].reshape(shape)


def np_prelu(x, a):
    return np.where(x >= 0, x, a.reshape(1, -1, 1, 1) * x)


def np_iresnet(x, s, layers):
    """insightface IResNet.forward in eval mode."""
    x = np_prelu(np_bn(np_conv(x, s["conv1.weight"], 1, 1), s, "bn1"), s["prelu.weight"])
    for stage, blocks in enumerate(layers):
        for block in range(blocks):
            p = f"layer{stage + 1}.{block}"
            stride = 2 if block == 0 else 1
            out = np_conv(np_bn(x, s, f"{p}.bn1"), s[f"{p}.conv1.weight"], 1, 1)
            out = np_prelu(np_bn(out, s, f"{p}.bn2"), s[f"{p}.prelu.weight"])
            out = np_bn(np_conv(out, s[f"{p}.conv2.weight"], stride, 1), s, f"{p}.bn3")
            if f"{p}.downsample.0.weight" in s:
                x = np_bn(np_conv(x, s[f"{p}.downsample.0.weight"], stride, 0), s, f"{p}.downsample.1")
            x = out + x
    x = np_bn(x, s, "bn2").reshape(x.shape[0], -1)  # torch.flatten(x, 1) of NCHW
    x = x @ s["fc.weight"].T + s["fc.bias"]
    return np_bn(x, s, "features", fixed_weight=True)


def np_resnet(x, s, layers):
    """torchvision ResNet.forward (Bottleneck) in eval mode."""
    x = np.maximum(np_bn(np_conv(x, s["conv1.weight"], 2, 3), s, "bn1"), 0)
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ho, wo = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
    x = np.max([x[:, :, i:i + 2 * ho:2, j:j + 2 * wo:2] for i in range(3) for j in range(3)], axis=0)
    for stage, blocks in enumerate(layers):
        for block in range(blocks):
            p = f"layer{stage + 1}.{block}"
            stride = 2 if block == 0 and stage > 0 else 1
            out = np.maximum(np_bn(np_conv(x, s[f"{p}.conv1.weight"], 1, 0), s, f"{p}.bn1"), 0)
            out = np.maximum(np_bn(np_conv(out, s[f"{p}.conv2.weight"], stride, 1), s, f"{p}.bn2"), 0)
            out = np_bn(np_conv(out, s[f"{p}.conv3.weight"], 1, 0), s, f"{p}.bn3")
            if f"{p}.downsample.0.weight" in s:
                x = np_bn(np_conv(x, s[f"{p}.downsample.0.weight"], stride, 0), s, f"{p}.downsample.1")
            x = np.maximum(out + x, 0)
    return x.mean(axis=(2, 3)) @ s["fc.weight"].T + s["fc.bias"]


@pytest.mark.parametrize("name", ["iresnet", "resnet"])
def test_backbones_compute_what_pytorch_layout_weights_compute(name):
    layers, size = (2, 1, 1, 1), 32  # a second block in stage 1: one without downsample
    module = IResNet(layers, width=4, embedding_dim=6) if name == "iresnet" else \
        ResNet(layers, width=4, embedding_dim=6)
    variables = random_variables(module, size, seed=1)
    x = np.asarray(images(2, size, batch=3))
    got = module.apply(variables, x, train=False)
    state = {k: np.asarray(v, np.float64) for k, v in to_torch_state(variables).items()}
    reference = (np_iresnet if name == "iresnet" else np_resnet)(np.transpose(x, (0, 3, 1, 2)).astype(np.float64),
                                                                  state, layers)
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)


# --- prior model: the frozen identity tower ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    model = pasn.build_model(config())
    variables = jax.jit(lambda key: model.init({"params": key, "dropout": key}, images(0), train=False))(
        jax.random.key(0))
    return model, variables


def labelled_batch(seed):
    rng = np.random.default_rng(seed)
    return {"au": rng.integers(0, 2, (B, 12)), "au_mask": np.ones((B, 12), bool),
            "expr": rng.integers(0, 7, B), "expr_mask": np.ones(B, bool),
            "va": rng.uniform(-1, 1, (B, 2)).astype(np.float32), "va_mask": np.ones(B, bool)}


# In training, a batch norm subtracts its batch mean, so a per-channel constant added before it has no effect. In
# insightface's layout four kinds of bias add only such constants: fc.bias and, without dropout, bn2.bias (both
# reach the loss only through the `features` BN), each block's bn3.bias and each downsample_1.bias (added to the
# residual stream, which reaches the loss only through batch norms and unpadded 1x1 convolutions). Their
# training-mode gradient is analytically 0 (rounding noise only); the inference-mode loss depends on them.
TRAIN_INVARIANT = re.compile(
    r"\['prior'\]\['f_expr'\]\[('layer\d_\d+'\]\['(bn3|downsample_1)|'fc|'bn2)'\]\['bias'\]")


def sgd_step(model, optimizer, batch, train):
    @jax.jit
    def step(params, batch_stats, opt_state, x):
        def loss_fn(p):
            out, updated = model.apply({"params": p, "batch_stats": batch_stats}, x, train=train,
                                       rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"])
            return losses.multitask_loss(out, batch)[0], updated["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, grads, loss

    return step


def test_one_sgd_step_changes_every_trainable_parameter_and_nothing_of_the_identity_tower(tiny):
    model, variables = tiny
    model = model.clone(dropout=0.0)
    rng = np.random.default_rng(0)
    # random biases, so that every batch-norm input has a nonzero batch mean and every running mean must move
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x + rng.normal(0, 0.2, x.shape).astype(x.dtype) if path[-1].key == "bias" else x,
        variables["params"])
    batch_stats = variables["batch_stats"]
    labels = jax.tree_util.tree_map(lambda t: "train" if t else "frozen", towers.trainable_mask(params))
    optimizer = optax.multi_transform({"train": optax.sgd(1.0), "frozen": optax.set_to_zero()}, labels)
    opt_state = optimizer.init(params)
    batch = labelled_batch(0)
    new_params, new_stats, grads, loss = sgd_step(model, optimizer, batch, True)(
        params, batch_stats, opt_state, images(1))
    assert np.isfinite(loss)
    flat_new = dict(jax.tree_util.tree_flatten_with_path(new_params)[0])
    flat_grad = dict(jax.tree_util.tree_flatten_with_path(grads)[0])
    changed, frozen, invariant = 0, 0, []
    for path, old in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = jax.tree_util.keystr(path)
        old, new, grad = np.asarray(old), np.asarray(flat_new[path]), np.asarray(flat_grad[path])
        if "['f_id']" in name:
            assert np.array_equal(new, old) and np.all(grad == 0), name  # set_to_zero, stop_gradient
            frozen += 1
        elif TRAIN_INVARIANT.fullmatch(name):
            sibling = flat_grad[path[:-1] + (jax.tree_util.DictKey("kernel" if "['fc']" in name else "scale"),)]
            assert np.max(np.abs(grad)) < 1e-4 * np.max(np.abs(sibling)), name  # rounding noise only
            invariant.append(path)
        else:
            # every entry gets a learning signal (some updates are below float32 resolution, so compare gradients)
            assert np.all(grad != 0), f"{name}: {np.sum(grad == 0)} of {grad.size} entries without gradient"
            assert np.any(new != old), name
            changed += 1
    assert frozen == len(jax.tree_util.tree_leaves(params["prior"]["f_id"]))
    assert len(invariant) == 2 + 4 + 4  # fc, bn2, and bn3 + downsample_1 of the four one-block stages
    assert changed == len(jax.tree_util.tree_leaves(params)) - frozen - len(invariant)
    for (path, old), new in zip(jax.tree_util.tree_flatten_with_path(batch_stats)[0],
                                jax.tree_util.tree_leaves(new_stats), strict=True):
        name = jax.tree_util.keystr(path)
        if "['f_id']" in name:
            assert np.array_equal(new, old), name  # f_id runs on its running statistics even with train=True
        else:
            assert np.all(np.asarray(new) != np.asarray(old)), name
    # The train-invariant biases are trainable all the same: a step on the inference-mode loss moves them.
    new_params = sgd_step(model, optimizer, batch, False)(params, batch_stats, opt_state, images(1))[0]
    flat_new = dict(jax.tree_util.tree_flatten_with_path(new_params)[0])
    flat_old = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    for path in invariant:
        assert np.all(np.asarray(flat_new[path]) != np.asarray(flat_old[path])), jax.tree_util.keystr(path)


def test_trainable_mask_is_false_exactly_for_the_identity_tower(tiny):
    _, variables = tiny
    mask = towers.trainable_mask(variables["params"])
    assert jax.tree_util.tree_structure(mask) == jax.tree_util.tree_structure(variables["params"])
    assert not any(jax.tree_util.tree_leaves(mask["prior"]["f_id"]))
    assert all(jax.tree_util.tree_leaves(mask["prior"]["f_expr"])) and all(jax.tree_util.tree_leaves(mask["heads"]))
    single = abstract_variables(pasn.build_model(config(prior=False)), 32)["params"]
    assert all(jax.tree_util.tree_leaves(towers.trainable_mask(single)))


def test_emb_is_f_expr_minus_f_id_and_f_id_always_runs_in_inference_mode(tiny):
    model, variables = tiny
    model = model.clone(dropout=0.0)  # a standalone tower would draw other dropout masks
    x = images(4)
    tower = IResNet(layers=(1, 1, 1, 1), width=8, embedding_dim=32)
    f_expr, f_id = towers.get_tower(variables, "f_expr"), towers.get_tower(variables, "f_id")
    expected_id = tower.apply(f_id, x, train=False)
    for train in (False, True):
        _, state = model.apply(variables, x, train=train, mutable=["batch_stats", "intermediates"],
                               capture_intermediates=lambda module, method: module.name == "prior")
        emb = state["intermediates"]["prior"]["__call__"][0]  # [B, 32]
        expected_expr = tower.apply(f_expr, x, train=train, mutable=["batch_stats"])[0]
        np.testing.assert_allclose(emb, expected_expr - expected_id, rtol=1e-5, atol=1e-5)
    # in training f_expr normalises with batch statistics, f_id with its running ones: the two modes differ
    assert not np.allclose(expected_expr, tower.apply(f_expr, x, train=False), atol=1e-3)


def test_copy_tower_starts_f_expr_from_f_id(tiny):
    model, variables = tiny
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    a, b = images(6), images(7)
    before = apply(variables, a)
    assert not np.allclose(before["expr"], apply(variables, b)["expr"])
    copied = towers.copy_tower(variables, src="f_id", dst="f_expr")
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, towers.get_tower(copied, "f_expr"),
                                                         towers.get_tower(variables, "f_id")))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, copied["params"]["heads"],
                                                         variables["params"]["heads"]))
    # equal towers in inference mode: Emb = 0 for every image, so every image gets the same outputs
    out_a, out_b = apply(copied, a), apply(copied, b)
    for task in ("au", "expr", "va"):
        np.testing.assert_array_equal(out_a[task], out_b[task])
    with pytest.raises(towers.ModelConfigError, match="'backbone' tower"):
        towers.get_tower(variables, "backbone")


def test_bfloat16_parallel_resnet_runs_in_training_mode():
    model = pasn.build_model(config(backbone="resnet50", prior=False, streaming=False, dtype="bfloat16"))
    variables = random_variables(model, 32, seed=3)
    out, updated = jax.jit(lambda v, x: model.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)},
                                                    mutable=["batch_stats"]))(variables, images(8))
    assert all(v.dtype == jnp.float32 and np.all(np.isfinite(v)) for v in out.values())
    assert np.all(np.abs(out["va"]) < 1)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(updated))


# --- config and input errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,message", [
    ({"backbone": "vgg16"}, "model_config.backbone: expected one of"),
    ({"layers": (1, 1, 1)}, "model_config.layers"),
    ({"image_size": 40}, "model_config.image_size: iresnet18 needs a multiple of 16"),
    ({"image_size": 16}, "model_config.image_size: expected at least 32"),
    ({"width": 0}, "model_config.width"),
    ({"dropout": 1.0}, "model_config.dropout"),
    ({"dtype": "float16"}, "model_config.dtype"),
])
def test_bad_config_field_is_named(overrides, message):
    with pytest.raises(towers.ModelConfigError, match=re.escape(message)):
        pasn.build_model(config(**overrides))


def test_missing_field_and_wrong_image_size_are_named():
    fields = dict(TINY)
    del fields["streaming"]
    with pytest.raises(towers.ModelConfigError, match="model_config.streaming: missing"):
        pasn.build_model(SimpleNamespace(**fields))
    model = pasn.build_model(config())
    with pytest.raises(towers.ModelConfigError, match=re.escape("images: expected shape [batch, 32, 32, 3]")):
        jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, 64, 64, 3))))


# --- the speed formulations compute the same functions and gradients (BENCHMARKS.md) ------------------------------

def test_batch_norm_gradient_in_closed_form_matches_autodiff():
    from pasn_jax.models.layers import batch_normalise

    def reference(x, scale, bias):  # flax's formulation: one-pass biased variance
        mean = jnp.mean(x, (0, 1, 2))
        var = jnp.maximum(jnp.mean(x * x, (0, 1, 2)) - mean**2, 0.0)
        return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias, mean, var

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(1.0, 2.0, (4, 5, 5, 6)), jnp.float32)
    scale, bias = jnp.asarray(rng.uniform(0.5, 1.5, 6), jnp.float32), jnp.asarray(rng.normal(size=6), jnp.float32)
    g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    ours, vjp = jax.vjp(lambda *a: batch_normalise(*a, 1e-5)[0], x, scale, bias)
    expected, ref_vjp = jax.vjp(lambda *a: reference(*a)[0], x, scale, bias)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    for got, want in zip(vjp(g), ref_vjp(g), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for got, want in zip(batch_normalise(x, scale, bias, 1e-5)[1:], reference(x, scale, bias)[1:], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [8, 7])  # even and odd inputs
def test_stride2_convolution_gradient_matches_autodiff(size):
    from pasn_jax.models.layers import conv3x3_stride2

    def reference(x, k):
        return jax.lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, size, size, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
    y, vjp = jax.vjp(conv3x3_stride2, x, k)
    y_ref, ref_vjp = jax.vjp(reference, x, k)
    np.testing.assert_array_equal(y, y_ref)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    for got, want in zip(vjp(g), ref_vjp(g), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_materialise_is_the_identity_with_identity_gradient():
    from pasn_jax.models.layers import materialise

    x = images(9, size=8, batch=2)
    cpu_form = jax.jit(lambda v: materialise(v, "cpu"))
    y, vjp = jax.vjp(cpu_form, x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(vjp(2 * x)[0], 2 * x)
    compiled = cpu_form.lower(x).compile().as_text()
    assert "conditional(" in compiled  # kept by XLA: a fusion boundary
