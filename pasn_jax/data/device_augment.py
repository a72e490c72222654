"""The device half of training augmentation: a train batch reaches the devices as uint8 pixels, already cropped and
resized on the host (pasn_jax/data/pipeline.py), with each image's horizontal flip and colour-jitter factors drawn
there from the stream's random numbers; here, inside the jitted step, they are applied and the pixels normalised to
the networks' input, (x/255 - 0.5)/0.5 in float32. Evaluation images are normalised on the host, as before.

Batch fields: image uint8 [..., S, S, 3], flip bool [...], jitter float32 [..., 3] (brightness, contrast,
saturation factors; 1 = unchanged).
"""

import jax.numpy as jnp
import numpy as np

GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as PIL's "L" conversion
AUGMENT_FIELDS = ("flip", "jitter")


def no_augmentation(shape: tuple[int, ...]) -> dict:
    """The host's flip and jitter fields of images that are left as they are, for leading shape `shape`."""
    return {"flip": np.zeros(shape, np.bool_), "jitter": np.ones(shape + (3,), np.float32)}


def augment(images, flip, jitter):
    """uint8 [..., S, S, 3] -> float32 in [-1, 1]: mirrored where `flip`, then brightness b, contrast c around the
    mean grey m and saturation t towards the per-pixel grey g, clipped once at the end (torchvision's ColorJitter
    order, without hue): out = t c b x + (1 - t) c b g(x) + (1 - c) m, with m = b mean(g(x)), normalised."""
    x = images.astype(jnp.float32)
    x = jnp.where(flip[..., None, None, None], x[..., ::-1, :], x)
    b, c, t = (jitter[..., i, None, None].astype(jnp.float32) for i in range(3))  # [..., 1, 1]
    grey = x @ jnp.asarray(GREY, jnp.float32)  # [..., S, S]
    mean = b * jnp.mean(grey, axis=(-2, -1), keepdims=True)
    grey = grey * ((1 - t) * c * b / 127.5) + ((1 - c) * mean / 127.5 - 1.0)
    x = x * (t * c * b / 127.5)[..., None] + grey[..., None]
    return jnp.clip(x, -1.0, 1.0)


def prepare(batch: dict) -> dict:
    """A train batch as the loss sees it: uint8 images augmented and normalised (`augment`), the flip and jitter
    fields dropped; a batch whose images are already float (normalised on the host) passes unchanged."""
    if "image" not in batch or batch["image"].dtype != jnp.uint8:
        return batch
    rest = {k: v for k, v in batch.items() if k not in AUGMENT_FIELDS}
    return rest | {"image": augment(batch["image"], batch["flip"], batch["jitter"])}
