"""Stage 1 of the prior (paper §3.2): the identity tower f_id trained as a face-recognition network, a tower and a
cosine classifier over the training identities (ArcFace / CosFace: the additive margin is the loss's,
pasn_jax/prior_losses.py). Only the tower is kept: it becomes PASN's f_id (params['backbone'])."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pasn_jax.models import towers
from pasn_jax.models.iresnet import IRESNET_LAYERS
from pasn_jax.models.layers import cosine_logits


class FaceIdentity(nn.Module):
    """images [B, S, S, 3] in [-1, 1] -> {'embedding': [B, embedding_dim], 'cosine': [B, num_classes]} (float32)."""

    num_classes: int
    backbone: str = "iresnet50"
    width: int = 64
    layers: tuple[int, ...] = IRESNET_LAYERS["iresnet50"]
    embedding_dim: int = 512
    image_size: int = 112
    dropout: float = 0.0
    dtype: Any = jnp.float32
    kernels: str = "auto"  # the tower's layers (layers.resolve_kernels)

    @nn.compact
    def __call__(self, images, train: bool = False):
        towers.check_images(images, self.image_size)
        embedding = towers.tower_module(self, name="backbone")(images, train=train)  # float32: the tower's head
        weights = self.param("classifier", nn.initializers.normal(0.01), (self.embedding_dim, self.num_classes))
        return {"embedding": embedding, "cosine": cosine_logits(embedding, weights)}


def build_model(model_config, num_classes: int) -> FaceIdentity:
    """FaceIdentity from a model config's tower fields (backbone, width, layers, embedding_dim, image_size, dropout,
    dtype) over `num_classes` identities."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise towers.ModelConfigError(f"number of identities: expected an int >= 2, got {num_classes!r}")
    return FaceIdentity(num_classes=num_classes, **towers.tower_fields(model_config))
