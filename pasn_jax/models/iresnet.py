"""IResNet-18/34/50/100: the insightface (arcface_torch) face-recognition backbone, the towers of the prior (paper §3.2;
ARCHITECTURE.md "Model").

Layout, names and shapes follow insightface's `recognition/arcface_torch/backbones/iresnet.py`, so that its
PyTorch `state_dict` maps onto these parameters one to one (the mapping is in `pasn_jax/models/README.md`):

  stem     conv1 (3x3, stride 1) -> bn1 -> prelu
  layerK_i IBasicBlock: bn1 -> conv1 (3x3, stride 1) -> bn2 -> prelu -> conv2 (3x3, stride s) -> bn3, plus the
           input (through downsample_0 1x1 conv stride s -> downsample_1 BN in each stage's first block, s = 2);
           no activation after the sum.
  head     bn2 -> flatten in PyTorch's (C, H, W) order -> dropout -> fc (dense to the embedding)
           -> features (BN whose scale is fixed at 1, as insightface freezes it: `use_scale=False`).

Channels are width * (1, 2, 4, 8) (width 64 = the real networks); four stride-2 stages, so the fc input is
8 * width * (image_size / 16)^2 (512 * 7 * 7 at 112 px, 512 * 14 * 14 at 224 px).
Batch norm: eps 1e-5, momentum 0.9 (PyTorch's momentum 0.1). Convolutions are initialised N(0, 0.1) as insightface
does; dense layers use flax's default (LeCun normal, zero bias).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pasn_jax.models.layers import Conv1x1, Conv3x3, PReLU, ResidualBlock, Tower, batch_norm

# Blocks per stage of the named depths (insightface's iresnet18/34/50/100).
IRESNET_LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
STAGE_STRIDE = 2
NUM_STAGES = 4
conv_init = nn.initializers.normal(stddev=0.1)


def conv3x3(features: int, stride: int, dtype: Any, kernels: str, name: str) -> Conv3x3:
    """insightface's conv3x3 (N(0, 0.1) initialisation)."""
    return Conv3x3(features, stride, dtype, conv_init, kernels, name=name)


class IBasicBlock(ResidualBlock):
    """insightface's IBasicBlock; the stride sits on conv2, the downsample branch exists when stride > 1."""

    @nn.compact
    def __call__(self, x, train: bool):
        out = batch_norm(train, self.dtype, "bn1")(x)
        out = conv3x3(self.features, 1, self.dtype, self.kernels, "conv1")(out)
        out = batch_norm(train, self.dtype, "bn2")(out)
        out = PReLU(self.dtype, name="prelu")(out)
        out = conv3x3(self.features, self.stride, self.dtype, self.kernels, "conv2")(out)
        out = batch_norm(train, self.dtype, "bn3")(out)
        identity = x
        if self.downsample:
            identity = Conv1x1(self.features, self.stride, self.dtype, conv_init, self.kernels,
                               name="downsample_0")(x)
            identity = batch_norm(train, self.dtype, "downsample_1")(identity)
        return out + identity


class IResNet(Tower):
    """IResNet backbone: images [B, S, S, 3] in [-1, 1] -> embedding [B, embedding_dim] (S = image_size)."""

    layers: tuple[int, ...] = IRESNET_LAYERS["iresnet50"]

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = images.astype(self.dtype)
        x = conv3x3(self.width, 1, self.dtype, self.kernels, "conv1")(x)
        x = batch_norm(train, self.dtype, "bn1")(x)
        x = PReLU(self.dtype, name="prelu")(x)
        x = self.residual_stages(x, train, IBasicBlock, expansion=1,
                                 stride=lambda stage, index: STAGE_STRIDE if index == 0 else 1)
        # The head in float32, fc at full precision (GPU/TPU round a float32 matmul's inputs by default): the prior's
        # Emb is a difference of two towers' embeddings (models/prior.py)
        x = batch_norm(train, jnp.float32, "bn2")(x.astype(jnp.float32))  # [B, S/16, S/16, 8 * width]
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # PyTorch's NCHW flatten order
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.Dense(self.embedding_dim, dtype=jnp.float32, precision="highest", name="fc")(x)
        return batch_norm(train, jnp.float32, "features", use_scale=False)(x)  # [B, embedding_dim] float32
