"""ResNet-50 with a 512-d output: the backbone of the paper's "w/o prior model" ablation (§4.4, Tab. 3).

Layout, names and shapes follow torchvision's `resnet50` (v1.5: the stride sits on each bottleneck's 3x3 conv), with
the 1000-way classifier replaced by a dense layer to the embedding, so a torchvision `state_dict` maps onto these
parameters one to one except `fc` (mapping in `pasn_jax/models/README.md`):

  stem     conv1 (7x7, stride 2, padding 3) -> bn1 -> ReLU -> 3x3 max pool (stride 2, padding 1)
  layerK_i Bottleneck: conv1 (1x1) -> bn1 -> ReLU -> conv2 (3x3, stride s) -> bn2 -> ReLU -> conv3 (1x1, 4x wide)
           -> bn3, plus the input (through downsample_0 1x1 conv stride s -> downsample_1 BN where the shape
           changes), then ReLU. s = 2 in the first block of stages 2-4.
  head     global average pool -> dropout (0 in torchvision) -> fc (dense to the embedding)

Bottleneck widths are width * (1, 2, 4, 8), outputs 4x that (2048 at width 64). Batch norm: eps 1e-5, momentum 0.9
(PyTorch's 0.1). Convolutions use torchvision's He normal (fan_out) initialisation; the dense layer flax's default.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pasn_jax.models.layers import Conv3x3, ResidualBlock, Tower, batch_norm, materialise

RESNET_LAYERS = {"resnet50": (3, 4, 6, 3)}
EXPANSION = 4
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, stride: int, dtype: Any, kernels: str, name: str) -> nn.Module:
    """Bias-free convolution with PyTorch's symmetric padding kernel // 2 (3x3 ones through layers.Conv3x3 in the
    form `kernels`; the others are flax's nn.Conv in every form)."""
    if kernel == 3:
        return Conv3x3(features, stride, dtype, conv_init, kernels, name=name)
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False, kernel_init=conv_init, dtype=dtype, name=name)


class Bottleneck(ResidualBlock):
    """torchvision's Bottleneck (expansion 4); the downsample branch exists where the shape changes."""

    @nn.compact
    def __call__(self, x, train: bool):
        out = conv(self.features, 1, 1, self.dtype, self.kernels, "conv1")(x)
        out = nn.relu(batch_norm(train, self.dtype, "bn1")(out))
        out = conv(self.features, 3, self.stride, self.dtype, self.kernels, "conv2")(out)
        out = nn.relu(batch_norm(train, self.dtype, "bn2")(out))
        out = conv(self.features * EXPANSION, 1, 1, self.dtype, self.kernels, "conv3")(out)
        out = batch_norm(train, self.dtype, "bn3")(out)
        identity = x
        if self.downsample:
            identity = conv(self.features * EXPANSION, 1, self.stride, self.dtype, self.kernels, "downsample_0")(x)
            identity = batch_norm(train, self.dtype, "downsample_1")(identity)
        return materialise(nn.relu(out + identity), self.kernels)


class ResNet(Tower):
    """ResNet backbone: images [B, S, S, 3] in [-1, 1] -> embedding [B, embedding_dim]."""

    layers: tuple[int, ...] = RESNET_LAYERS["resnet50"]

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = images.astype(self.dtype)
        x = conv(self.width, 7, 2, self.dtype, self.kernels, "conv1")(x)
        x = nn.relu(batch_norm(train, self.dtype, "bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        x = self.residual_stages(x, train, Bottleneck, expansion=EXPANSION,
                                 stride=lambda stage, index: 2 if index == 0 and stage > 0 else 1)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # [B, 8 * width * 4]; the head in float32 as IResNet's
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.embedding_dim, dtype=jnp.float32, precision="highest", name="fc")(x)  # float32
