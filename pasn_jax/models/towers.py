"""The backbone towers every network of the project is built from (paper §3.2: the prior's two towers f_expr and
f_id, and the face-identity network they start from): their config fields, checked once, the module built from them,
and where each tower's variables live in a network's variable tree (so that a tower trained in one network can be
put into another: `get_tower` / `set_tower`)."""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pasn_jax.models.iresnet import IRESNET_LAYERS, NUM_STAGES, IResNet
from pasn_jax.models.layers import KERNELS, resolve_kernels
from pasn_jax.models.resnet import RESNET_LAYERS, ResNet

BACKBONES = {**{name: IResNet for name in IRESNET_LAYERS}, **{name: ResNet for name in RESNET_LAYERS}}
DEFAULT_LAYERS = {**IRESNET_LAYERS, **RESNET_LAYERS}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
IRESNET_STRIDE = 2**NUM_STAGES  # the IResNet fc input needs image_size divisible by 16
MIN_IMAGE_SIZE = 32  # ResNet-50 reduces by 32
# Where each tower's variables live, under both 'params' and 'batch_stats', in the networks that hold it.
TOWER_PATHS = {"f_expr": ("prior", "f_expr"), "f_id": ("prior", "f_id"), "backbone": ("backbone",)}
FROZEN_TOWER = "f_id"


class ModelConfigError(ValueError):
    """A model config field or a model input that cannot be used; the message names it."""


def field(model_config, name: str):
    try:
        return getattr(model_config, name)
    except (AttributeError, KeyError):
        raise ModelConfigError(f"model_config.{name}: missing") from None


def tower_fields(model_config) -> dict[str, Any]:
    """The checked tower fields of a model config: backbone, layers, width, embedding_dim, image_size, dropout, dtype
    (a jnp dtype), kernels ('portable' or 'cpu'; a config without the key has 'auto'); raises ModelConfigError
    naming a bad field."""
    backbone = field(model_config, "backbone")
    if backbone not in BACKBONES:
        raise ModelConfigError(f"model_config.backbone: expected one of {sorted(BACKBONES)}, got {backbone!r}")
    layers = field(model_config, "layers")
    layers = DEFAULT_LAYERS[backbone] if layers is None else tuple(layers)
    if len(layers) != NUM_STAGES or not all(isinstance(n, int) and n >= 1 for n in layers):
        raise ModelConfigError(f"model_config.layers: expected None or {NUM_STAGES} positive ints, got {layers}")
    positive = {name: field(model_config, name) for name in ("width", "embedding_dim", "image_size")}
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise ModelConfigError(f"model_config.{name}: expected a positive int, got {value!r}")
    image_size = positive["image_size"]
    if backbone in IRESNET_LAYERS and image_size % IRESNET_STRIDE:
        raise ModelConfigError(f"model_config.image_size: {backbone} needs a multiple of {IRESNET_STRIDE}, "
                               f"got {image_size}")
    if image_size < MIN_IMAGE_SIZE:
        raise ModelConfigError(f"model_config.image_size: expected at least {MIN_IMAGE_SIZE}, got {image_size}")
    dropout = field(model_config, "dropout")
    if not 0.0 <= dropout < 1.0:
        raise ModelConfigError(f"model_config.dropout: expected a rate in [0, 1), got {dropout!r}")
    dtype = field(model_config, "dtype")
    if dtype == "auto":  # training resolves it once and records it (workdir_config.resolve_dtype)
        dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    if dtype not in DTYPES:
        raise ModelConfigError(f"model_config.dtype: expected 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    kernels = getattr(model_config, "kernels", "auto")
    if kernels not in KERNELS:
        raise ModelConfigError(f"model_config.kernels: expected one of {list(KERNELS)}, got {kernels!r}")
    return dict(backbone=backbone, layers=layers, width=positive["width"], embedding_dim=positive["embedding_dim"],
                image_size=image_size, dropout=float(dropout), dtype=DTYPES[dtype], kernels=resolve_kernels(kernels))


def check_images(images, image_size: int) -> None:
    """A network's input must be [batch, image_size, image_size, 3]."""
    expected = (image_size, image_size, 3)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ModelConfigError(f"images: expected shape [batch, {', '.join(map(str, expected))}], "
                               f"got {list(images.shape)}")


def tower_module(network: nn.Module, **kwargs) -> nn.Module:
    """One tower (IResNet / ResNet) of a network whose fields include backbone, layers, width, embedding_dim,
    dropout, dtype and kernels."""
    return BACKBONES[network.backbone](layers=network.layers, width=network.width,
                                       embedding_dim=network.embedding_dim, dropout=network.dropout,
                                       dtype=network.dtype, kernels=network.kernels, **kwargs)


def trainable_mask(params):
    """Same structure as params: False exactly for the frozen identity tower's (f_id) leaves, True elsewhere."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(getattr(key, "key", None) == FROZEN_TOWER for key in path), params)


def _subtree(tree: Mapping, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def _replace(tree: Mapping, path: tuple[str, ...], value):
    updated = dict(tree)
    updated[path[0]] = value if len(path) == 1 else _replace(tree[path[0]], path[1:], value)
    return updated


def get_tower(variables: Mapping, name: str) -> dict:
    """{'params': ..., 'batch_stats': ...} of tower `name` ('f_expr', 'f_id' or 'backbone'), as a standalone
    IResNet / ResNet of the same config would hold them (so weights read into one can be put into a tower)."""
    if name not in TOWER_PATHS:
        raise ModelConfigError(f"tower: expected one of {sorted(TOWER_PATHS)}, got {name!r}")
    path = TOWER_PATHS[name]
    try:
        return {collection: _subtree(variables[collection], path) for collection in ("params", "batch_stats")}
    except KeyError:
        raise ModelConfigError(f"tower: no {name!r} tower in these variables (prior on/off?)") from None


def set_tower(variables: Mapping, name: str, tower_variables: Mapping) -> dict:
    """A copy of variables whose tower `name` holds tower_variables ({'params', 'batch_stats'}); shapes must match."""
    current = get_tower(variables, name)
    for collection in ("params", "batch_stats"):
        expected = jax.tree_util.tree_map(jnp.shape, current[collection])
        got = jax.tree_util.tree_map(jnp.shape, tower_variables[collection])
        if expected != got:
            raise ModelConfigError(f"tower {name!r} {collection}: structure or shapes differ from the model's")
    updated = dict(variables)
    for collection in ("params", "batch_stats"):
        updated[collection] = _replace(variables[collection], TOWER_PATHS[name], tower_variables[collection])
    return updated


def copy_tower(variables: Mapping, src: str = "f_id", dst: str = "f_expr") -> dict:
    """Start tower dst from tower src's weights and statistics (DLN's two towers share their initial network)."""
    return set_tower(variables, dst, get_tower(variables, src))
