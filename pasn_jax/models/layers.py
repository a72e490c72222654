"""The layers the towers are built of, with the functions of their PyTorch counterparts, written for speed on XLA:CPU
(BENCHMARKS.md, "What helped"): batch norm with a closed-form gradient, PReLU as max/min, the stride-2 3x3
convolution with a sub-pixel input gradient, the strided 1x1 convolution as a subsampled matmul, and the fusion
boundary that keeps a residual stream in memory. The last three are XLA:CPU's workarounds and are taken only with
kernels 'cpu' (`resolve_kernels`: 'auto' on a CPU backend); with 'portable' (GPU, TPU) they are the plain lax
operations, whose gradients cuDNN and the TPU compute natively. Each layer has the variables of the flax/PyTorch
layer it replaces in both forms, so the PyTorch weight mapping and checkpoints are unchanged.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BN_EPSILON = 1e-5
KERNELS = ("auto", "portable", "cpu")  # model.kernels


def resolve_kernels(kernels: str) -> str:
    """'cpu' (XLA:CPU's workarounds) or 'portable' (the plain lax operations); 'auto' is 'cpu' on a CPU backend."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels: expected one of {list(KERNELS)}, got {kernels!r}")
    if kernels == "auto":
        return "cpu" if jax.default_backend() == "cpu" else "portable"
    return kernels


class PReLU(nn.Module):
    """Per-channel PReLU (torch.nn.PReLU(num_parameters=C)): x if x >= 0 else a_c * x, a initialised to 0.25.

    Written max(x, 0) + a * min(x, 0), which XLA:CPU fuses into fewer passes than a select (BENCHMARKS.md); the
    value is the same everywhere, the gradient differs only at x == 0 exactly (a tie that jnp.maximum splits).
    """

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        negative_slope = self.param("negative_slope", nn.initializers.constant(0.25), (x.shape[-1],))  # [C]
        return jnp.maximum(x, 0) + negative_slope.astype(self.dtype) * jnp.minimum(x, 0)


def _batch_statistics(x):
    """Mean and biased variance over every axis but the channels (last), float32, one pass (E[x^2] - E[x]^2,
    clipped at 0), as flax's BatchNorm with use_fast_variance computes them."""
    axes = tuple(range(x.ndim - 1))
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axes)
    return mean, jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)


def _normalise_forward(x, scale, bias, epsilon):
    mean, var = _batch_statistics(x)
    inv = jax.lax.rsqrt(var + epsilon)  # [C]
    y = ((x.astype(jnp.float32) - mean) * (inv * scale) + bias).astype(x.dtype)
    return (y, mean, var), (x, mean, inv, scale)


def _normalise_backward(epsilon, residuals, cotangents):
    """The batch-norm gradient in closed form: with x^ = (x - mean) * inv and g the output cotangent,
    dbias = sum g, dscale = sum g x^, dx = scale * inv * (g - (dbias + x^ dscale) / m) over the m values per channel.
    mean and var are outputs for the running averages only; their cotangents are not used."""
    del epsilon
    x, mean, inv, scale = residuals
    g = cotangents[0].astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    x_hat = (x.astype(jnp.float32) - mean) * inv
    dbias = jnp.sum(g, axes)
    dscale = jnp.sum(g * x_hat, axes)
    dx = (scale * inv) * (g - (dbias + x_hat * dscale) / m)
    return dx.astype(x.dtype), dscale, dbias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_normalise(x, scale, bias, epsilon):
    """Training-mode batch norm of x [..., C]: (y, batch mean, batch biased variance); gradient in closed form."""
    return _normalise_forward(x, scale, bias, epsilon)[0]


batch_normalise.defvjp(_normalise_forward, _normalise_backward)


class BatchNorm(nn.Module):
    """Batch norm with flax.linen.BatchNorm's variables (params scale, bias; batch_stats mean, var) and semantics
    (biased batch variance, running averages with `momentum`), over every axis but the last.

    Training mode uses `batch_normalise`, whose hand-written gradient (two fused reductions and one elementwise
    pass) replaces the longer autodiff graph of flax's version; measured faster on XLA:CPU (BENCHMARKS.md).
    """

    use_running_average: bool
    momentum: float = BN_MOMENTUM
    epsilon: float = BN_EPSILON
    use_scale: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (channels,)) if self.use_scale else \
            jnp.ones((channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        x = x.astype(self.dtype)
        if self.use_running_average:
            multiplier = jax.lax.rsqrt(running_var.value + self.epsilon) * scale
            return ((x.astype(jnp.float32) - running_mean.value) * multiplier + bias).astype(self.dtype)
        y, mean, var = batch_normalise(x, scale, bias, self.epsilon)
        if not self.is_initializing():
            running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
            running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
        return y


def batch_norm(train: bool, dtype: Any, name: str, use_scale: bool = True) -> BatchNorm:
    """A PyTorch-equivalent batch norm (eps 1e-5, running statistics with momentum 0.1)."""
    return BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                     use_scale=use_scale, dtype=dtype, name=name)


def _conv(x, kernel, stride: int, padding):
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


# Sub-pixel form of the stride-2 3x3 convolution's input gradient: input row 2a + p receives the output-gradient
# rows a + d (d = 0, 1) through kernel row SUBPIXEL_ROWS[p][d] (p = 0: g[a] w[1]; p = 1: g[a] w[2] + g[a + 1] w[0]),
# and likewise for columns.
SUBPIXEL_ROWS = {0: (1,), 1: (2, 0)}


@jax.custom_vjp
def conv3x3_stride2(x, kernel):
    """3x3 convolution, stride 2, padding 1 (NHWC x HWIO). Same function as lax.conv_general_dilated; its input
    gradient is four stride-1 convolutions of the output gradient (one per output parity) interleaved, instead of
    XLA's input-dilated convolution, which XLA:CPU runs ~3x slower (BENCHMARKS.md)."""
    return _conv(x, kernel, 2, ((1, 1), (1, 1)))


def _conv3x3_stride2_forward(x, kernel):
    return conv3x3_stride2(x, kernel), (x, kernel)


def _conv3x3_stride2_backward(residuals, g):
    x, kernel = residuals
    batch, height, width, channels = x.shape
    out_height, out_width = g.shape[1:3]
    transposed = jnp.swapaxes(kernel, 2, 3)  # [3, 3, out, in]
    rows = []
    for p in (0, 1):
        cols = []
        for q in (0, 1):
            sub = transposed[jnp.array(SUBPIXEL_ROWS[p])][:, jnp.array(SUBPIXEL_ROWS[q])]  # [1|2, 1|2, out, in]
            pad = ((0, sub.shape[0] - 1), (0, sub.shape[1] - 1))  # g[a + 1] past the end is 0
            cols.append(_conv(g, sub, 1, pad))  # [B, H/2, W/2, in]: input pixels (2a + p, 2b + q)
        rows.append(jnp.stack(cols, axis=3))  # [B, H/2, W/2, 2 (q), in]
    dx = jnp.stack(rows, axis=2).reshape(batch, 2 * out_height, 2 * out_width, channels)[:, :height, :width]
    dkernel = jax.vjp(lambda k: _conv(x, k, 2, ((1, 1), (1, 1))), kernel)[1](g)[0]
    return dx, dkernel


conv3x3_stride2.defvjp(_conv3x3_stride2_forward, _conv3x3_stride2_backward)


class BiasFreeConv(nn.Module):
    """The fields of a bias-free convolution with PyTorch's layout of its kernel (as nn.Conv holds it) and the form
    of its computation (`resolve_kernels`)."""

    features: int
    stride: int = 1
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    kernels: str = "auto"


class Conv3x3(BiasFreeConv):
    """Bias-free 3x3 convolution with PyTorch's symmetric padding 1 (not 'SAME', which pads stride-2 inputs
    asymmetrically); kernel [3, 3, in, out]. Stride 2 goes through `conv3x3_stride2` with kernels 'cpu'."""

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features)).astype(self.dtype)
        x = x.astype(self.dtype)
        if self.stride == 2 and resolve_kernels(self.kernels) == "cpu":
            return conv3x3_stride2(x, kernel)
        return _conv(x, kernel, self.stride, ((1, 1), (1, 1)))


class Conv1x1(BiasFreeConv):
    """Bias-free 1x1 convolution with stride s, kernel [1, 1, in, out]. With kernels 'cpu' a matmul on the input
    subsampled by s: the same function, and XLA:CPU's gradient of a strided 1x1 convolution is far slower than
    this one's (BENCHMARKS.md)."""

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (1, 1, x.shape[-1], self.features)).astype(self.dtype)
        x = x.astype(self.dtype)
        if resolve_kernels(self.kernels) == "cpu":
            x = x[:, ::self.stride, ::self.stride, :]  # [B, H/s, W/s, in]
            return jax.lax.dot_general(x, kernel[0, 0], (((3,), (0,)), ((), ())))
        return _conv(x, kernel, self.stride, ((0, 0), (0, 0)))


def _plus_zero_product(x):
    """x + x[..., :1] @ 0 ([1, C] zeros): x for finite x; a branch with a dot, so that `materialise`'s cond stays."""
    zeros = jnp.zeros((1, x.shape[-1]), x.dtype)
    return x + jax.lax.dot_general(x[..., :1], zeros, (((x.ndim - 1,), (0,)), ((), ())))


def materialise(x, kernels: str):
    """x unchanged (for finite x), kept in memory as it is: XLA:CPU otherwise fuses the whole residual stream of a
    stage (every earlier block's batch-norm + add + ReLU) into each consumer, recomputing it in every fusion and in
    the transposed copies that the kernel gradients read, which made the training step ~1.4x slower (BENCHMARKS.md).

    On CPU, a lax.cond on isfinite(x[0, ..., 0]) is a fusion boundary XLA keeps as long as one branch is not
    trivial; the other branch, x + x[..., :1] @ 0, is taken only when that entry is not finite and then differs from
    x only where x is not finite. Gradients pass through the same cond. Kernels 'portable' (GPU, TPU) get x itself:
    the recomputation is XLA:CPU's, and a cond there would read its predicate back from the device per block.
    """
    if resolve_kernels(kernels) != "cpu":
        return x
    return jax.lax.cond(jnp.isfinite(x[(0,) * x.ndim]), lambda v: v, _plus_zero_product, x)


class ResidualBlock(nn.Module):
    """The fields of a residual block as `Tower.residual_stages` builds it: output channels (before the block's
    expansion), the stride of its strided convolution, whether the shortcut has a downsample branch, and the form of
    its layers (`resolve_kernels`)."""

    features: int
    stride: int
    downsample: bool
    dtype: Any = jnp.float32
    kernels: str = "auto"


class Tower(nn.Module):
    """The fields and the residual stages shared by the backbone towers (IResNet, ResNet): images [B, S, S, 3] in
    [-1, 1] -> embedding [B, embedding_dim]."""

    layers: tuple[int, ...] = (1, 1, 1, 1)  # blocks per stage
    width: int = 64  # channels of the first stage; stage k has width * 2**k (times the block's expansion)
    embedding_dim: int = 512
    dropout: float = 0.0
    dtype: Any = jnp.float32
    kernels: str = "auto"  # the layers' form: 'auto', 'portable' or 'cpu' (`resolve_kernels`)

    def residual_stages(self, x, train: bool, block, expansion: int, stride: Callable[[int, int], int]):
        """The blocks of every stage, named `layer{stage + 1}_{index}` as PyTorch's `layer{K}.{i}`; `stride(stage,
        index)` gives each block's stride; a block gets a downsample branch where its input's shape changes."""
        in_features = self.width
        for stage, blocks in enumerate(self.layers):
            features = self.width * 2**stage
            for index in range(blocks):
                s = stride(stage, index)
                x = block(features, s, downsample=s != 1 or in_features != features * expansion, dtype=self.dtype,
                          kernels=self.kernels, name=f"layer{stage + 1}_{index}")(x, train)
                in_features = features * expansion
        return x


def normalise(x, axis=-1, epsilon=1e-12):
    """L2 normalisation x / sqrt(sum x^2 + epsilon) along `axis`, in float32: a finite value (0) and a finite
    gradient (I / sqrt(epsilon)) at x = 0, unlike x / |x|."""
    x = jnp.asarray(x, jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=axis, keepdims=True) + epsilon)


def cosine_logits(embeddings, weights):
    """cos(theta_ij) = <e_i / |e_i|, w_j / |w_j|> of embeddings [B, D] and class columns weights [D, C] -> [B, C]."""
    if jnp.ndim(embeddings) != 2 or jnp.ndim(weights) != 2 or jnp.shape(weights)[0] != jnp.shape(embeddings)[1]:
        raise ValueError(f"cosine_logits: expected embeddings [B, D] and weights [D, C], got "
                         f"{list(jnp.shape(embeddings))} and {list(jnp.shape(weights))}")
    return normalise(embeddings, axis=-1) @ normalise(weights, axis=0)
