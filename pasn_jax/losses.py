"""The paper's losses (eq. 1-7), masked per sample (ARCHITECTURE.md "Losses"). Pure jnp, jit-able.

Masks say which labels exist; labels under a False mask are never read (sentinels -1 / -5 are replaced before any
log or one-hot), and masked logits are replaced by 0 first, so a masked sample changes neither value nor gradient.
A task without a labelled sample in the batch contributes exactly 0 (and finite gradients).
All computation is float32 whatever the model's dtype.
"""

import jax
import jax.numpy as jnp

from pasn_jax.labels import NUM_AUS, NUM_EXPRS, TASKS

CCC_EPSILON = 1e-8


class LossInputError(ValueError):
    """An argument of a loss has the wrong shape; the message names it."""


def _check_shape(name: str, array, shape: tuple) -> None:
    if tuple(array.shape) != shape:
        raise LossInputError(f"{name}: expected shape {list(shape)}, got {list(array.shape)}")


def _masked_mean(per_sample, has_label):
    """Mean of per_sample [B] over the samples where has_label [B]; 0 when there is none."""
    count = jnp.sum(has_label)
    return jnp.sum(jnp.where(has_label, per_sample, 0.0)) / jnp.maximum(count, 1)


def _au_inputs(logits, labels, mask):
    batch = logits.shape[0]
    for name, array in (("logits", logits), ("labels", labels), ("mask", mask)):
        _check_shape(f"au {name}", array, (batch, NUM_AUS))
    mask = jnp.asarray(mask).astype(bool)
    scores = jnp.where(mask, logits.astype(jnp.float32), 0.0)  # [B, 12]
    positive = mask & (labels == 1)
    negative = mask & (labels == 0)
    return scores, positive, negative, mask


def _circle_per_sample(scores, positive, negative):
    """Eq. 1 per sample: log(1 + sum_{y=0} e^s) + log(1 + sum_{y=1} e^-s), each as logsumexp([0, ...])."""
    zeros = jnp.zeros(scores.shape[:1] + (1,), scores.dtype)
    neg = jnp.concatenate([zeros, jnp.where(negative, scores, -jnp.inf)], axis=-1)  # [B, 13]
    pos = jnp.concatenate([zeros, jnp.where(positive, -scores, -jnp.inf)], axis=-1)
    return jax.nn.logsumexp(neg, axis=-1) + jax.nn.logsumexp(pos, axis=-1)  # [B]


def _bce_per_sample(scores, positive, mask):
    """Eq. 2 per sample: mean over its labelled AUs of -[y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))]."""
    bce = jax.nn.softplus(scores) - jnp.where(positive, scores, 0.0)  # [B, 12], stable form
    return jnp.sum(jnp.where(mask, bce, 0.0), axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1)


def circle_loss(logits, labels, mask):
    """Multi-label circle loss (eq. 1), logits/labels/mask [B, 12], averaged over samples with >= 1 labelled AU."""
    scores, positive, negative, mask = _au_inputs(logits, labels, mask)
    return _masked_mean(_circle_per_sample(scores, positive, negative), jnp.any(mask, axis=-1))


def au_loss(logits, labels, mask):
    """AU loss (eq. 3) = circle loss (eq. 1) + mean binary cross entropy (eq. 2), over samples with labelled AUs."""
    scores, positive, negative, mask = _au_inputs(logits, labels, mask)
    per_sample = _circle_per_sample(scores, positive, negative) + _bce_per_sample(scores, positive, mask)
    return _masked_mean(per_sample, jnp.any(mask, axis=-1))


def expr_loss(logits, labels, mask, smoothing=0.9):
    """Soft cross entropy (eq. 4) as label smoothing: target `smoothing` on the true class and
    (1 - smoothing) / 6 on each other class; logits [B, 7], labels [B] (int), mask [B]; mean over labelled samples."""
    batch = logits.shape[0]
    _check_shape("expr logits", logits, (batch, NUM_EXPRS))
    _check_shape("expr labels", labels, (batch,))
    _check_shape("expr mask", mask, (batch,))
    mask = jnp.asarray(mask).astype(bool)
    log_probs = jax.nn.log_softmax(jnp.where(mask[:, None], logits.astype(jnp.float32), 0.0), axis=-1)
    one_hot = jax.nn.one_hot(jnp.where(mask, labels, 0), NUM_EXPRS)  # [B, 7]
    target = one_hot * smoothing + (1.0 - one_hot) * (1.0 - smoothing) / (NUM_EXPRS - 1)
    return _masked_mean(-jnp.sum(target * log_probs, axis=-1), mask)


def ccc(x, y, mask):
    """Concordance correlation coefficient (eq. 5) of x [B] and y [B] over the masked samples, population statistics:
    2 cov / (var_x + var_y + (mu_x - mu_y)^2 + eps). 0 with no labelled sample; 0 with one, or with both inputs
    constant and equal; finite gradients in all of these."""
    batch = x.shape[0]
    for name, array in (("x", x), ("y", y), ("mask", mask)):
        _check_shape(f"ccc {name}", array, (batch,))
    mask = jnp.asarray(mask).astype(bool)
    count = jnp.maximum(jnp.sum(mask), 1)
    x = jnp.where(mask, x.astype(jnp.float32), 0.0)
    y = jnp.where(mask, y.astype(jnp.float32), 0.0)
    mu_x = jnp.sum(x) / count
    mu_y = jnp.sum(y) / count
    dx = jnp.where(mask, x - mu_x, 0.0)
    dy = jnp.where(mask, y - mu_y, 0.0)
    covariance = jnp.sum(dx * dy) / count
    var_x = jnp.sum(dx * dx) / count
    var_y = jnp.sum(dy * dy) / count
    return 2.0 * covariance / (var_x + var_y + (mu_x - mu_y) ** 2 + CCC_EPSILON)


def va_loss(pred, labels, mask):
    """VA loss (eq. 6) = 2 - CCC(valence) - CCC(arousal); pred/labels [B, 2], mask [B]; 0 with no labelled sample."""
    batch = pred.shape[0]
    _check_shape("va pred", pred, (batch, 2))
    _check_shape("va labels", labels, (batch, 2))
    _check_shape("va mask", mask, (batch,))
    has_label = jnp.any(jnp.asarray(mask).astype(bool))
    loss = 2.0 - ccc(pred[:, 0], labels[:, 0], mask) - ccc(pred[:, 1], labels[:, 1], mask)
    return jnp.where(has_label, loss, 0.0)


def multitask_loss(outputs, batch, *, smoothing=0.9, weights=None):
    """Total loss (eq. 7): sum over tasks of weight * task loss for the tasks with >= 1 labelled sample (the others
    are 0), a sample counting only in the tasks it has labels for.

    outputs: the model's {'au': [B, 12], 'expr': [B, 7], 'va': [B, 2]}; batch: au, au_mask, expr, expr_mask, va,
    va_mask (labels keep their sentinels where masked); weights: optional {task: float}, default 1 each.
    Returns (total, {'au': .., 'expr': .., 'va': ..}) as float32 scalars.
    """
    weights = {task: 1.0 for task in TASKS} | dict(weights or {})
    unknown = set(weights) - set(TASKS)
    if unknown:
        raise LossInputError(f"weights: unknown tasks {sorted(unknown)}, expected a subset of {list(TASKS)}")
    per_task = {
        "au": au_loss(outputs["au"], batch["au"], batch["au_mask"]),
        "expr": expr_loss(outputs["expr"], batch["expr"], batch["expr_mask"], smoothing),
        "va": va_loss(outputs["va"], batch["va"], batch["va_mask"]),
    }
    total = sum(weights[task] * per_task[task] for task in TASKS)
    return total, per_task
