"""MTCNN's three networks (Zhang et al. 2016) as flax linen modules, NHWC, with the layer definitions of the `mtcnn`
package's Keras models (`mtcnn/network/{pnet,rnet,onet}.py`): 'valid' convolutions, PReLU (one slope per
channel), TF-style max pooling ('SAME' pads at the end first, with -inf), and before the dense layers the Keras
`Permute((2, 1, 3))`, which flattens in (width, height, channel) order. Inputs are (pixel - 127.5) / 128.

P-Net is fully convolutional: [B, H, W, 3] -> box regression [B, H', W', 4] and face probability [B, H', W'],
H' = ceil((H - 2) / 2) - 4, output (i, j) seeing the 12x12 window at (2i, 2j). Given `valid` [B, 2] (the true
height and width of each padded input), it gives on the valid outputs exactly what the unpadded input gives.
R-Net: [N, 24, 24, 3] -> regression [N, 4], probability [N]. O-Net: [N, 48, 48, 3] -> regression [N, 4],
landmarks [N, 10] (x1..x5, y1..y5, relative to the input box), probability [N].
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class PReLU(nn.Module):
    """max(x, 0) + alpha * min(x, 0), one alpha per channel (the last axis)."""

    @nn.compact
    def __call__(self, x):
        alpha = self.param("alpha", nn.initializers.constant(0.25), (x.shape[-1],))
        return jnp.where(x >= 0, x, alpha * x)


def _conv(features: int, size: int, name: str) -> nn.Conv:
    return nn.Conv(features, (size, size), padding="VALID", name=name)


def _flatten_width_major(x):
    """Keras Permute((2, 1, 3)) then Flatten: [N, H, W, C] -> [N, W * H * C]."""
    return jnp.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


class PNet(nn.Module):
    @nn.compact
    def __call__(self, x, valid=None):
        x = PReLU(name="prelu1")(_conv(10, 3, "conv1")(x))
        if valid is not None:  # positions of conv1 computed from padding never win the pooling
            rows = jnp.arange(x.shape[1])[None, :, None] < valid[:, 0, None, None] - 2
            cols = jnp.arange(x.shape[2])[None, None, :] < valid[:, 1, None, None] - 2
            x = jnp.where((rows & cols)[..., None], x, -jnp.inf)
        x = nn.max_pool(x, (2, 2), (2, 2), padding="SAME")
        if valid is not None:
            x = jnp.where(jnp.isfinite(x), x, 0.0)
        x = PReLU(name="prelu2")(_conv(16, 3, "conv2")(x))
        x = PReLU(name="prelu3")(_conv(32, 3, "conv3")(x))
        regression = _conv(4, 1, "conv4_1")(x)
        probability = nn.softmax(_conv(2, 1, "conv4_2")(x), axis=-1)[..., 1]
        return regression, probability


class RNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(PReLU(name="prelu1")(_conv(28, 3, "conv1")(x)), (3, 3), (2, 2), padding="SAME")
        x = nn.max_pool(PReLU(name="prelu2")(_conv(48, 3, "conv2")(x)), (3, 3), (2, 2), padding="VALID")
        x = _flatten_width_major(PReLU(name="prelu3")(_conv(64, 2, "conv3")(x)))
        x = PReLU(name="prelu4")(nn.Dense(128, name="fc4")(x))
        return nn.Dense(4, name="fc5_1")(x), nn.softmax(nn.Dense(2, name="fc5_2")(x), axis=-1)[:, 1]


class ONet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(PReLU(name="prelu1")(_conv(32, 3, "conv1")(x)), (3, 3), (2, 2), padding="SAME")
        x = nn.max_pool(PReLU(name="prelu2")(_conv(64, 3, "conv2")(x)), (3, 3), (2, 2), padding="VALID")
        x = nn.max_pool(PReLU(name="prelu3")(_conv(64, 3, "conv3")(x)), (2, 2), (2, 2), padding="SAME")
        x = _flatten_width_major(PReLU(name="prelu4")(_conv(128, 2, "conv4")(x)))
        x = PReLU(name="prelu5")(nn.Dense(256, name="fc5")(x))
        probability = nn.softmax(nn.Dense(2, name="fc6_3")(x), axis=-1)[:, 1]
        return nn.Dense(4, name="fc6_1")(x), nn.Dense(10, name="fc6_2")(x), probability


# Keras get_weights() order of each network: (layer, kind), kind 'conv'/'dense' = kernel + bias, 'prelu' = alpha.
LAYERS = {
    "pnet": [("conv1", "conv"), ("prelu1", "prelu"), ("conv2", "conv"), ("prelu2", "prelu"), ("conv3", "conv"),
             ("prelu3", "prelu"), ("conv4_1", "conv"), ("conv4_2", "conv")],
    "rnet": [("conv1", "conv"), ("prelu1", "prelu"), ("conv2", "conv"), ("prelu2", "prelu"), ("conv3", "conv"),
             ("prelu3", "prelu"), ("fc4", "dense"), ("prelu4", "prelu"), ("fc5_1", "dense"), ("fc5_2", "dense")],
    "onet": [("conv1", "conv"), ("prelu1", "prelu"), ("conv2", "conv"), ("prelu2", "prelu"), ("conv3", "conv"),
             ("prelu3", "prelu"), ("conv4", "conv"), ("prelu4", "prelu"), ("fc5", "dense"), ("prelu5", "prelu"),
             ("fc6_1", "dense"), ("fc6_2", "dense"), ("fc6_3", "dense")],
}
MODULES = {"pnet": PNet, "rnet": RNet, "onet": ONet}
INPUT_SIZES = {"pnet": 12, "rnet": 24, "onet": 48}


def params_from_arrays(network: str, arrays: list[np.ndarray]) -> dict:
    """Flax params of `network` from its Keras weight list; checked against the module's own shapes."""
    layers, out, position = LAYERS[network], {}, 0
    for name, kind in layers:
        if kind == "prelu":
            out[name] = {"alpha": np.asarray(arrays[position]).reshape(-1)}
            position += 1
        else:
            out[name] = {"kernel": np.asarray(arrays[position]), "bias": np.asarray(arrays[position + 1])}
            position += 2
    if position != len(arrays):
        raise ValueError(f"{network}: expected {position} weight arrays, got {len(arrays)}")
    size = INPUT_SIZES[network]
    expected = jax.eval_shape(MODULES[network]().init, jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
    for name, leaves in expected.items():
        for leaf, value in leaves.items():
            if tuple(out[name][leaf].shape) != tuple(value.shape):
                raise ValueError(f"{network}.{name}.{leaf}: expected shape {list(value.shape)}, "
                                 f"got {list(out[name][leaf].shape)}")
    return {"params": out}
