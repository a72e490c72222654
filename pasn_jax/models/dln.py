"""Stage 2 of the prior (paper §3.2, Fig. 2): DLN's deviation module Emb = f_expr(x) - f_id(x), with f_id frozen,
followed by a small projection to a low-dimensional L2-normalised expression embedding trained on expression-
similarity triplets. PASN keeps the two towers (params['prior'], the same paths as in PASN) and drops the
projection, as the paper takes DLN's 512-d deviation module.

The projection (the paper leaves it to DLN): dense embedding_dim -> PROJECTION_HIDDEN, GELU, dense ->
projection_dim (16, as FECNet and DLN), batch norm without scale (it centres the embeddings: with squared distances
the triplet loss has a flat stationary point where all embeddings point the same way, 2 * margin, which training
otherwise falls into from a random start), L2 normalisation with an epsilon, so it stays finite where Emb is 0 (at
the start f_expr = f_id). The projection computes in float32 whatever model.dtype, as Emb (models/prior.py).
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pasn_jax.models import towers
from pasn_jax.models.iresnet import IRESNET_LAYERS
from pasn_jax.models.layers import batch_norm, normalise
from pasn_jax.models.prior import DeviationPrior

PROJECTION_HIDDEN = 256


class DLN(nn.Module):
    """images [B, S, S, 3] in [-1, 1] -> {'deviation': Emb [B, embedding_dim], 'embedding': [B, projection_dim]
    unit vectors} (float32)."""

    projection_dim: int = 16
    backbone: str = "iresnet50"
    width: int = 64
    layers: tuple[int, ...] = IRESNET_LAYERS["iresnet50"]
    embedding_dim: int = 512
    image_size: int = 112
    dropout: float = 0.0
    dtype: Any = jnp.float32
    kernels: str = "auto"  # the towers' layers (layers.resolve_kernels)

    @nn.compact
    def __call__(self, images, train: bool = False):
        towers.check_images(images, self.image_size)
        emb = DeviationPrior(functools.partial(towers.tower_module, self), name="prior")(images, train=train)
        x = nn.gelu(nn.Dense(PROJECTION_HIDDEN, name="projection_0")(emb))  # float32, as Emb
        x = nn.Dense(self.projection_dim, name="projection_1")(x)
        x = batch_norm(train, jnp.float32, "projection_norm", use_scale=False)(x)  # centred: no common direction
        return {"deviation": emb, "embedding": normalise(x)}


def build_model(model_config, projection_dim: int) -> DLN:
    """DLN from a model config's tower fields and the embedding size."""
    if not isinstance(projection_dim, int) or projection_dim < 1:
        raise towers.ModelConfigError(f"dln.projection_dim: expected a positive int, got {projection_dim!r}")
    return DLN(projection_dim=projection_dim, **towers.tower_fields(model_config))
