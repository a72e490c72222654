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
import jax
import jax.numpy as jnp

from pasn_jax.models.iresnet import Conv3x3, batch_norm

RESNET_LAYERS = {"resnet50": (3, 4, 6, 3)}
EXPANSION = 4
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Module:
    """Bias-free convolution with PyTorch's symmetric padding kernel // 2 (3x3 ones through iresnet.Conv3x3)."""
    if kernel == 3:
        return Conv3x3(features, stride, dtype, conv_init, name=name)
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False, kernel_init=conv_init, dtype=dtype, name=name)


def _plus_zero_product(x):
    """x + x[..., :1] @ 0 ([1, C] zeros): x for finite x; a branch with a dot, so that `materialise`'s cond stays."""
    zeros = jnp.zeros((1, x.shape[-1]), x.dtype)
    return x + jax.lax.dot_general(x[..., :1], zeros, (((x.ndim - 1,), (0,)), ((), ())))


def materialise(x):
    """x unchanged (for finite x), kept in memory as it is: XLA:CPU otherwise fuses the whole residual stream of a
    stage (every earlier block's batch-norm + add + ReLU) into each consumer, recomputing it in every fusion and in
    the transposed copies that the kernel gradients read, which made the training step ~1.4x slower (BENCHMARKS.md).

    On CPU, a lax.cond on isfinite(x[0, ..., 0]) is a fusion boundary XLA keeps as long as one branch is not
    trivial; the other branch, x + x[..., :1] @ 0, is taken only when that entry is not finite and then differs from
    x only where x is not finite. Gradients pass through the same cond. Other backends get x itself: the
    recomputation is XLA:CPU's, and a cond there would read its predicate back from the device per block.
    """
    if jax.default_backend() != "cpu":
        return x
    return jax.lax.cond(jnp.isfinite(x[(0,) * x.ndim]), lambda v: v, _plus_zero_product, x)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (expansion 4); the downsample branch exists where the shape changes."""

    features: int
    stride: int
    downsample: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        out = conv(self.features, 1, 1, self.dtype, "conv1")(x)
        out = nn.relu(batch_norm(train, self.dtype, "bn1")(out))
        out = conv(self.features, 3, self.stride, self.dtype, "conv2")(out)
        out = nn.relu(batch_norm(train, self.dtype, "bn2")(out))
        out = conv(self.features * EXPANSION, 1, 1, self.dtype, "conv3")(out)
        out = batch_norm(train, self.dtype, "bn3")(out)
        identity = x
        if self.downsample:
            identity = conv(self.features * EXPANSION, 1, self.stride, self.dtype, "downsample_0")(x)
            identity = batch_norm(train, self.dtype, "downsample_1")(identity)
        return materialise(nn.relu(out + identity))


class ResNet(nn.Module):
    """ResNet backbone: images [B, S, S, 3] in [-1, 1] -> embedding [B, embedding_dim]."""

    layers: tuple[int, ...] = RESNET_LAYERS["resnet50"]
    width: int = 64
    embedding_dim: int = 512
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = images.astype(self.dtype)
        x = conv(self.width, 7, 2, self.dtype, "conv1")(x)
        x = nn.relu(batch_norm(train, self.dtype, "bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        in_features = self.width
        for stage, blocks in enumerate(self.layers):
            features = self.width * 2**stage
            for block in range(blocks):
                stride = 2 if block == 0 and stage > 0 else 1
                x = Bottleneck(features, stride, downsample=stride != 1 or in_features != features * EXPANSION,
                               dtype=self.dtype, name=f"layer{stage + 1}_{block}")(x, train)
                in_features = features * EXPANSION
        x = jnp.mean(x, axis=(1, 2))  # [B, 8 * width * 4]
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.embedding_dim, dtype=self.dtype, name="fc")(x)  # [B, embedding_dim]
