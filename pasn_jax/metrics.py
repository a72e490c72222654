"""ABAW2 metrics over a whole split (paper §4.2, ARCHITECTURE.md "Metrics"), in numpy.

- AU: a decision is sigmoid probability >= 0.5; F1 = mean over AUs of binary F1 (positive class 1); TAcc = accuracy
  over all labelled (frame, AU) decisions; S_AU = 0.5 F1 + 0.5 TAcc.
- EXPR: prediction = argmax; F1 = macro F1 over all 7 classes; TAcc = accuracy; S_EXPR = 0.67 F1 + 0.33 TAcc.
- VA: CCC with population statistics (ddof 0) per dimension; S_VA = (CCC_V + CCC_A) / 2.

Conventions (sklearn's `zero_division=0`): an F1 whose precision and recall are both undefined is 0. Sentinels
(-1 AU/EXPR, -5 VA) are excluded per label. A task with no labelled frame gives NaN for all its keys (no score
exists; 0 would look like one). An AU never labelled gives NaN for its own F1 and is left out of the AU F1 mean.
A CCC whose denominator is 0 (one frame, or constant and equal predictions and labels) is 0.
"""

import numpy as np

from pasn_jax.labels import (AU_MISSING, AU_NAMES, EXPR_MISSING, EXPR_NAMES, NUM_AUS, NUM_EXPRS, VA_MISSING,
                                  VA_NAMES)

AU_THRESHOLD = 0.5
S_AU_WEIGHTS = (0.5, 0.5)  # (F1, TAcc)
S_EXPR_WEIGHTS = (0.67, 0.33)


class MetricsInputError(ValueError):
    """An argument of abaw_metrics has the wrong shape; the message names it."""


def _array(name: str, value, shape: tuple) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != shape:
        raise MetricsInputError(f"{name}: expected shape {list(shape)}, got {list(array.shape)}")
    return array


def binary_f1(pred: np.ndarray, label: np.ndarray) -> float:
    """F1 of the positive class of boolean arrays; 0 when there is no positive prediction nor label."""
    true_pos = np.sum(pred & label)
    denominator = np.sum(pred) + np.sum(label)
    return float(2 * true_pos / denominator) if denominator else 0.0


def concordance_cc(pred: np.ndarray, label: np.ndarray) -> float:
    """CCC (eq. 5) with population statistics; 0 when the denominator is 0."""
    pred = pred.astype(np.float64)
    label = label.astype(np.float64)
    covariance = np.mean((pred - pred.mean()) * (label - label.mean()))
    denominator = pred.var() + label.var() + (pred.mean() - label.mean()) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else 0.0


def au_metrics(au_prob, au) -> dict[str, float]:
    """au_prob [N, 12] sigmoid probabilities, au [N, 12] labels (0/1, -1 missing) -> au_f1, au_tacc, s_au, au_f1_AU*."""
    labelled = au != AU_MISSING  # [N, 12]
    decisions = au_prob >= AU_THRESHOLD
    positives = au == 1
    per_au = {f"au_f1_{name}": binary_f1(decisions[labelled[:, j], j], positives[labelled[:, j], j])
              if labelled[:, j].any() else float("nan") for j, name in enumerate(AU_NAMES)}
    if not labelled.any():
        return {"au_f1": float("nan"), "au_tacc": float("nan"), "s_au": float("nan"), **per_au}
    f1 = float(np.nanmean(list(per_au.values())))
    tacc = float(np.mean(decisions[labelled] == positives[labelled]))
    return {"au_f1": f1, "au_tacc": tacc, "s_au": S_AU_WEIGHTS[0] * f1 + S_AU_WEIGHTS[1] * tacc, **per_au}


def expr_metrics(expr_prob, expr) -> dict[str, float]:
    """expr_prob [N, 7] class scores, expr [N] labels (-1 missing) -> expr_f1, expr_tacc, s_expr, expr_f1_<class>."""
    labelled = expr != EXPR_MISSING
    if not labelled.any():
        return {key: float("nan") for key in ("expr_f1", "expr_tacc", "s_expr",
                                                *(f"expr_f1_{name}" for name in EXPR_NAMES))}
    pred = np.argmax(expr_prob[labelled], axis=-1)
    label = expr[labelled]
    per_class = {f"expr_f1_{name}": binary_f1(pred == c, label == c) for c, name in enumerate(EXPR_NAMES)}
    f1 = float(np.mean(list(per_class.values())))
    tacc = float(np.mean(pred == label))
    return {"expr_f1": f1, "expr_tacc": tacc, "s_expr": S_EXPR_WEIGHTS[0] * f1 + S_EXPR_WEIGHTS[1] * tacc,
            **per_class}


def va_metrics(va_pred, va) -> dict[str, float]:
    """va_pred [N, 2], va [N, 2] (valence, arousal; -5 missing) -> ccc_v, ccc_a, s_va."""
    values = []
    for dim in range(len(VA_NAMES)):
        labelled = ~np.isclose(va[:, dim], VA_MISSING)
        values.append(concordance_cc(va_pred[labelled, dim], va[labelled, dim]) if labelled.any()
                      else float("nan"))
    return {"ccc_v": values[0], "ccc_a": values[1], "s_va": (values[0] + values[1]) / 2}


def abaw_metrics(au_prob, au, expr_prob, expr, va_pred, va) -> dict[str, float]:
    """All ABAW2 metrics of a split as one flat dict (keys: au_f1, au_tacc, s_au, expr_f1, expr_tacc, s_expr, ccc_v,
    ccc_a, s_va, au_f1_AU1 .. au_f1_AU26, expr_f1_Neutral .. expr_f1_Surprise); N frames, sentinels excluded."""
    n = np.shape(au_prob)[0] if np.ndim(au_prob) else 0
    return {
        **au_metrics(_array("au_prob", au_prob, (n, NUM_AUS)), _array("au", au, (n, NUM_AUS))),
        **expr_metrics(_array("expr_prob", expr_prob, (n, NUM_EXPRS)), _array("expr", expr, (n,))),
        **va_metrics(_array("va_pred", va_pred, (n, 2)), _array("va", va, (n, 2))),
    }


def chance_metrics(au, expr, va) -> dict[str, dict[str, float]]:
    """The scores of trivial predictors on a split's own labels, to read the model's scores against: every AU
    absent (all zeros) or present (all ones), the split's most frequent expression for every frame (majority),
    and the split's mean valence/arousal for every frame (mean prediction)."""
    au, expr, va = np.asarray(au), np.asarray(expr), np.asarray(va)
    labelled_expr = expr[expr != EXPR_MISSING]
    majority = np.bincount(labelled_expr, minlength=NUM_EXPRS).argmax() if labelled_expr.size else 0
    labelled_va = ~np.isclose(va, VA_MISSING)
    means = [va[labelled_va[:, d], d].mean() if labelled_va[:, d].any() else 0.0 for d in range(len(VA_NAMES))]
    pick = lambda scores, keys: {k: scores[k] for k in keys}
    return {
        "au_all_zeros": pick(au_metrics(np.zeros(au.shape), au), ("au_f1", "au_tacc", "s_au")),
        "au_all_ones": pick(au_metrics(np.ones(au.shape), au), ("au_f1", "au_tacc", "s_au")),
        "expr_majority": pick(expr_metrics(np.eye(NUM_EXPRS)[np.full(len(expr), majority)], expr),
                              ("expr_f1", "expr_tacc", "s_expr")),
        "va_mean": va_metrics(np.broadcast_to(np.array(means), va.shape), va),
    }
