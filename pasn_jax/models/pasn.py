"""The whole PASN network assembled from a config (paper Fig. 1, ARCHITECTURE.md "Model").

images [B, S, S, 3] in [-1, 1] -> backbone tower(s) -> Emb [B, embedding_dim] -> heads ->
{'au': [B, 12] logits, 'expr': [B, 7] logits, 'va': [B, 2] in (-1, 1)}, always float32.

Parameter tree: prior on -> params['prior']['f_expr'], params['prior']['f_id'] (the two DLN towers);
prior off -> params['backbone'] (one tower, the paper's "w/o prior model" ablation uses backbone='resnet50');
heads -> params['heads'] (streaming or parallel). `batch_stats` mirrors the towers' part of that tree.
"""

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pasn_jax.models.iresnet import IRESNET_LAYERS, NUM_STAGES, IResNet
from pasn_jax.models.prior import DeviationPrior
from pasn_jax.models.resnet import RESNET_LAYERS, ResNet
from pasn_jax.models.streaming import ParallelHeads, StreamingHeads

BACKBONES = {**{name: IResNet for name in IRESNET_LAYERS}, **{name: ResNet for name in RESNET_LAYERS}}
DEFAULT_LAYERS = {**IRESNET_LAYERS, **RESNET_LAYERS}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
IRESNET_STRIDE = 2**NUM_STAGES  # the IResNet fc input needs image_size divisible by 16
MIN_IMAGE_SIZE = 32  # ResNet-50 reduces by 32
# Where each tower's variables live, under both 'params' and 'batch_stats'.
TOWER_PATHS = {"f_expr": ("prior", "f_expr"), "f_id": ("prior", "f_id"), "backbone": ("backbone",)}
FROZEN_TOWER = "f_id"


class ModelConfigError(ValueError):
    """A model config field or a model input that cannot be used; the message names it."""


class PASN(nn.Module):
    """Prior Aided Streaming Network; fields as in `build_model`'s model_config."""

    backbone: str = "iresnet50"
    width: int = 64
    layers: tuple[int, ...] = IRESNET_LAYERS["iresnet50"]
    embedding_dim: int = 512
    image_size: int = 112
    prior: bool = True
    streaming: bool = True
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        expected = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ModelConfigError(f"images: expected shape [batch, {', '.join(map(str, expected))}], "
                                   f"got {list(images.shape)}")
        tower = functools.partial(tower_module, self)
        if self.prior:
            emb = DeviationPrior(tower, name="prior")(images, train=train)
        else:
            emb = tower(name="backbone")(images, train=train)
        heads = StreamingHeads if self.streaming else ParallelHeads
        outputs = heads(self.dtype, name="heads")(emb)
        return {task: value.astype(jnp.float32) for task, value in outputs.items()}


def tower_module(model: PASN, **kwargs) -> nn.Module:
    """One backbone tower of the model's config (f_expr, f_id or the single backbone), as IResNet / ResNet."""
    return BACKBONES[model.backbone](layers=model.layers, width=model.width, embedding_dim=model.embedding_dim,
                                     dropout=model.dropout, dtype=model.dtype, **kwargs)


def _field(model_config, name: str):
    try:
        return getattr(model_config, name)
    except (AttributeError, KeyError):
        raise ModelConfigError(f"model_config.{name}: missing") from None


def build_model(model_config) -> PASN:
    """PASN from a config with fields backbone, width, layers, embedding_dim, image_size, prior, streaming,
    dropout, dtype (see ARCHITECTURE.md "Model"); raises ModelConfigError naming a bad field."""
    backbone = _field(model_config, "backbone")
    if backbone not in BACKBONES:
        raise ModelConfigError(f"model_config.backbone: expected one of {sorted(BACKBONES)}, got {backbone!r}")
    layers = _field(model_config, "layers")
    layers = DEFAULT_LAYERS[backbone] if layers is None else tuple(layers)
    if len(layers) != NUM_STAGES or not all(isinstance(n, int) and n >= 1 for n in layers):
        raise ModelConfigError(f"model_config.layers: expected None or {NUM_STAGES} positive ints, got {layers}")
    positive = {name: _field(model_config, name) for name in ("width", "embedding_dim", "image_size")}
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise ModelConfigError(f"model_config.{name}: expected a positive int, got {value!r}")
    image_size = positive["image_size"]
    if backbone in IRESNET_LAYERS and image_size % IRESNET_STRIDE:
        raise ModelConfigError(f"model_config.image_size: {backbone} needs a multiple of {IRESNET_STRIDE}, "
                               f"got {image_size}")
    if image_size < MIN_IMAGE_SIZE:
        raise ModelConfigError(f"model_config.image_size: expected at least {MIN_IMAGE_SIZE}, got {image_size}")
    dropout = _field(model_config, "dropout")
    if not 0.0 <= dropout < 1.0:
        raise ModelConfigError(f"model_config.dropout: expected a rate in [0, 1), got {dropout!r}")
    dtype = _field(model_config, "dtype")
    if dtype not in DTYPES:
        raise ModelConfigError(f"model_config.dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    return PASN(backbone=backbone, width=positive["width"], layers=layers,
                embedding_dim=positive["embedding_dim"], image_size=image_size,
                prior=bool(_field(model_config, "prior")), streaming=bool(_field(model_config, "streaming")),
                dropout=float(dropout), dtype=DTYPES[dtype])


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
        updated[collection] = _replace(variables[collection], TOWER_PATHS[name],
                                       tower_variables[collection])
    return updated


def copy_tower(variables: Mapping, src: str = "f_id", dst: str = "f_expr") -> dict:
    """Start tower dst from tower src's weights and statistics (DLN's two towers share their initial network)."""
    return set_tower(variables, dst, get_tower(variables, src))
