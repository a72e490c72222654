"""Losses of the PASN prior (paper §3.2), trained in two stages. Pure jnp, jit-able, float32 computation.

1. The face-recognition tower f_id: an additive margin softmax over identity labels, ArcFace (Deng et al. 2019,
   s = 64, m = 0.5) or CosFace (Wang et al. 2018, s = 64, m = 0.35), with insightface's arcface_torch
   CombinedMarginLoss semantics (m1, m2, m3) = (1, m, 0) and (1, 0, m).
2. The disentangled expression embedding (DLN, Emb = f_expr - f_id -> 16-d, L2-normalised): FECNet's triplet loss
   (Vemulapalli & Agarwala 2019) on FEC expression-similarity triplets.

In the losses, masked rows (identity label < 0, or a False triplet mask) are replaced by 0 before any arccos or
one-hot, so they change neither value nor gradient; with no unmasked row a loss is exactly 0 with zero gradients.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from pasn_jax.losses import LossInputError
from pasn_jax.models.layers import cosine_logits, normalise  # noqa: F401 (part of this module's API)

ARCFACE_SCALE, ARCFACE_MARGIN = 64.0, 0.5
COSFACE_SCALE, COSFACE_MARGIN = 64.0, 0.35
MARGIN_KINDS = ("arcface", "cosface")
DEFAULT_MARGINS = {"arcface": ARCFACE_MARGIN, "cosface": COSFACE_MARGIN}
ARCCOS_EPSILON = 1e-7  # cosines are clipped to [-1 + eps, 1 - eps] before arccos: finite gradient at +-1
FEC_MARGINS = (0.1, 0.2, 0.2)  # delta for one-class, two-class and three-class triplets


def _check_rank(name: str, array, rank: int, shape_doc: str) -> None:
    if jnp.ndim(array) != rank:
        raise LossInputError(f"{name}: expected shape {shape_doc}, got {list(jnp.shape(array))}")


def _check_shape(name: str, array, shape: tuple) -> None:
    if tuple(jnp.shape(array)) != shape:
        raise LossInputError(f"{name}: expected shape {list(shape)}, got {list(jnp.shape(array))}")


def _check_int(name: str, array) -> None:
    if not jnp.issubdtype(jnp.asarray(array).dtype, jnp.integer):
        raise LossInputError(f"{name}: expected an integer array, got dtype {jnp.asarray(array).dtype}")


def _margin_inputs(cosine, labels):
    """float32 cosine [B, C], the known rows (label >= 0) [B], and the target one-hot [B, C] (False in unknown rows)."""
    _check_rank("cosine", cosine, 2, "[B, C]")
    _check_shape("labels", labels, jnp.shape(cosine)[:1])
    _check_int("labels", labels)
    known = jnp.asarray(labels) >= 0
    cosine = jnp.asarray(cosine, jnp.float32)
    target = jax.nn.one_hot(jnp.where(known, labels, 0), cosine.shape[1], dtype=bool) & known[:, None]
    return cosine, known, target


def arcface_logits(cosine, labels, *, scale=ARCFACE_SCALE, margin=ARCFACE_MARGIN):
    """ArcFace logits (Deng et al. 2019, eq. 3) as insightface's CombinedMarginLoss with (m1, m2, m3) = (1, m, 0):
    s * cos(theta_y + m) for the target class where theta_y + m < pi, i.e. where cos(theta_y) > cos(pi - m), and
    s * (cos(theta_y) - m sin(pi - m)) elsewhere (keeps the target logit monotonic in theta); other classes s cos.

    cosine [B, C] in [-1, 1]; labels [B] int, < 0 for unknown (such a row gets no margin, as in insightface);
    returns [B, C] float32. The cosine is clipped to [-1 + 1e-7, 1 - 1e-7] before arccos so the
    gradient stays finite at +-1.
    """
    cosine, _, target = _margin_inputs(cosine, labels)
    clipped = jnp.clip(cosine, -1.0 + ARCCOS_EPSILON, 1.0 - ARCCOS_EPSILON)
    with_margin = jnp.where(cosine > math.cos(math.pi - margin), jnp.cos(jnp.arccos(clipped) + margin),
                            cosine - math.sin(math.pi - margin) * margin)
    return scale * jnp.where(target, with_margin, cosine)


def cosface_logits(cosine, labels, *, scale=COSFACE_SCALE, margin=COSFACE_MARGIN):
    """CosFace logits (Wang et al. 2018, LMCL): s * (cos(theta_y) - m) for the target class, s * cos(theta_j) for
    the others; cosine [B, C], labels [B] int (< 0 unknown: no margin) -> [B, C] float32."""
    cosine, _, target = _margin_inputs(cosine, labels)
    return scale * jnp.where(target, cosine - margin, cosine)


def margin_softmax_loss(cosine, labels, *, kind="arcface", scale=64.0, margin=None):
    """Mean cross entropy -log softmax(margin logits)_y over the rows with labels >= 0 (0 when there is none).

    cosine [B, C]; labels [B] int (< 0 unknown); kind "arcface" (margin default 0.5) or "cosface" (default 0.35).
    """
    if kind not in MARGIN_KINDS:
        raise LossInputError(f"kind: expected one of {list(MARGIN_KINDS)}, got {kind!r}")
    margin = DEFAULT_MARGINS[kind] if margin is None else margin
    cosine, known, target = _margin_inputs(cosine, labels)
    cosine = jnp.where(known[:, None], cosine, 0.0)  # unknown rows: no value, no gradient, no NaN leaking in
    logits_fn = arcface_logits if kind == "arcface" else cosface_logits
    logits = logits_fn(cosine, labels, scale=scale, margin=margin)
    per_row = jax.nn.logsumexp(logits, axis=-1) - jnp.sum(jnp.where(target, logits, 0.0), axis=-1)
    count = jnp.sum(known)
    return jnp.sum(jnp.where(known, per_row, 0.0)) / jnp.maximum(count, 1)


def fec_triplet_loss(embeddings, triplet_type, margins=FEC_MARGINS, mask=None):
    """FECNet triplet loss (Vemulapalli & Agarwala 2019, eq. 1), mean over the (masked) triplets, 0 with none:

        l = max(0, |e1 - e2|^2 - |e1 - e3|^2 + delta) + max(0, |e1 - e2|^2 - |e2 - e3|^2 + delta)

    embeddings [B, 3, D]: faces 0 and 1 are the annotated most similar pair, 2 the odd one out; triplet_type [B] int
    in 1..3 (one-, two-, three-class triplet) selects delta = margins[type - 1]; mask [B] bool, default all True.
    Squared distances (no sqrt): finite gradients when embeddings coincide. A type outside 1..3 under the mask is
    an error when triplet_type is concrete (under jit it is clipped into 1..3).
    """
    _check_rank("embeddings", embeddings, 3, "[B, 3, D]")
    batch = jnp.shape(embeddings)[0]
    _check_shape("embeddings", embeddings, (batch, 3, jnp.shape(embeddings)[2]))
    _check_shape("triplet_type", triplet_type, (batch,))
    _check_int("triplet_type", triplet_type)
    if len(margins) != 3:
        raise LossInputError(f"margins: expected 3 values (one-, two-, three-class), got {len(margins)}")
    mask = jnp.ones((batch,), bool) if mask is None else mask
    _check_shape("mask", mask, (batch,))
    if not isinstance(triplet_type, jax.core.Tracer) and not isinstance(mask, jax.core.Tracer):
        types = np.asarray(triplet_type)[np.asarray(mask).astype(bool)]
        if np.any((types < 1) | (types > 3)):
            raise LossInputError(f"triplet_type: expected values in 1..3, got {sorted(set(types.tolist()))}")
    mask = jnp.asarray(mask).astype(bool)
    e = jnp.where(mask[:, None, None], jnp.asarray(embeddings, jnp.float32), 0.0)
    delta = jnp.asarray(margins, jnp.float32)[jnp.clip(jnp.where(mask, triplet_type, 1) - 1, 0, 2)]
    d12 = jnp.sum((e[:, 0] - e[:, 1]) ** 2, axis=-1)
    d13 = jnp.sum((e[:, 0] - e[:, 2]) ** 2, axis=-1)
    d23 = jnp.sum((e[:, 1] - e[:, 2]) ** 2, axis=-1)
    per_triplet = jax.nn.relu(d12 - d13 + delta) + jax.nn.relu(d12 - d23 + delta)
    return jnp.sum(jnp.where(mask, per_triplet, 0.0)) / jnp.maximum(jnp.sum(mask), 1)
