"""ABAW2 metrics against sklearn.metrics (F1, accuracy) and a direct CCC formula, sentinels excluded."""

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from pasn_jax.labels import AU_MISSING, AU_NAMES, EXPR_MISSING, EXPR_NAMES, VA_MISSING
from pasn_jax import metrics
from pasn_jax.metrics import MetricsInputError, abaw_metrics

N = 300
KEYS = {"au_f1", "au_tacc", "s_au", "expr_f1", "expr_tacc", "s_expr", "ccc_v", "ccc_a", "s_va",
        *(f"au_f1_{name}" for name in AU_NAMES), *(f"expr_f1_{name}" for name in EXPR_NAMES)}


def random_split(seed, n=N):
    """Predictions correlated with labels (so scores are far from trivial) and ~20% of each task unlabelled."""
    rng = np.random.default_rng(seed)
    au = rng.integers(0, 2, (n, 12))
    au_prob = np.clip(0.35 * au + rng.uniform(0, 0.65, (n, 12)), 0, 1)
    au[rng.random(n) < 0.2] = AU_MISSING  # whole frames without AU labels, as in Aff-Wild2
    expr = rng.integers(0, 7, n)
    expr_prob = rng.random((n, 7))
    expr_prob[np.arange(n), expr] += rng.random(n) * 0.8
    expr[rng.random(n) < 0.2] = EXPR_MISSING
    va = rng.uniform(-1, 1, (n, 2))
    va_pred = np.clip(0.6 * va + rng.normal(0, 0.3, (n, 2)) + 0.1, -1, 1)
    va[rng.random(n) < 0.2] = VA_MISSING
    return au_prob, au, expr_prob, expr, va_pred, va


def direct_ccc(x, y):
    """CCC = 2 cov / (var_x + var_y + (mu_x - mu_y)^2), population statistics, via np.cov(bias=True)."""
    cov = np.cov(x, y, bias=True)
    return 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (x.mean() - y.mean()) ** 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn_and_direct_ccc(seed):
    au_prob, au, expr_prob, expr, va_pred, va = random_split(seed)
    m = abaw_metrics(au_prob, au, expr_prob, expr, va_pred, va)
    assert set(m) == KEYS and all(isinstance(v, float) for v in m.values())

    rows = au[:, 0] != AU_MISSING
    per_au = [f1_score(au[rows, j], au_prob[rows, j] >= 0.5, zero_division=0) for j in range(12)]
    for j, name in enumerate(AU_NAMES):
        assert m[f"au_f1_{name}"] == pytest.approx(per_au[j], abs=1e-12)
    assert m["au_f1"] == pytest.approx(np.mean(per_au), abs=1e-12)
    tacc = accuracy_score(au[rows].ravel(), (au_prob[rows] >= 0.5).ravel())
    assert m["au_tacc"] == pytest.approx(tacc, abs=1e-12)
    assert m["s_au"] == pytest.approx(0.5 * np.mean(per_au) + 0.5 * tacc, abs=1e-12)

    rows = expr != EXPR_MISSING
    pred = expr_prob[rows].argmax(1)
    macro = f1_score(expr[rows], pred, labels=range(7), average="macro", zero_division=0)
    per_class = f1_score(expr[rows], pred, labels=range(7), average=None, zero_division=0)
    assert m["expr_f1"] == pytest.approx(macro, abs=1e-12)
    for c, name in enumerate(EXPR_NAMES):
        assert m[f"expr_f1_{name}"] == pytest.approx(per_class[c], abs=1e-12)
    acc = accuracy_score(expr[rows], pred)
    assert m["expr_tacc"] == pytest.approx(acc, abs=1e-12)
    assert m["s_expr"] == pytest.approx(0.67 * macro + 0.33 * acc, abs=1e-12)

    rows = va[:, 0] != VA_MISSING
    ccc_v = direct_ccc(va_pred[rows, 0], va[rows, 0])
    ccc_a = direct_ccc(va_pred[rows, 1], va[rows, 1])
    assert m["ccc_v"] == pytest.approx(ccc_v, abs=1e-12)
    assert m["ccc_a"] == pytest.approx(ccc_a, abs=1e-12)
    assert m["s_va"] == pytest.approx((ccc_v + ccc_a) / 2, abs=1e-12)
    assert 0.2 < m["s_va"] < 1 and 0.3 < m["s_expr"] < 1  # the correlated predictions are seen as such


def test_sentinel_rows_change_nothing():
    au_prob, au, expr_prob, expr, va_pred, va = random_split(3)
    m = abaw_metrics(au_prob, au, expr_prob, expr, va_pred, va)
    rng = np.random.default_rng(4)
    # arbitrary predictions on unlabelled frames, plus 50 extra unlabelled frames
    au_prob2, expr_prob2, va_pred2 = au_prob.copy(), expr_prob.copy(), va_pred.copy()
    au_prob2[au == AU_MISSING] = rng.random(np.sum(au == AU_MISSING))
    expr_prob2[expr == EXPR_MISSING] = rng.random((np.sum(expr == EXPR_MISSING), 7))
    va_pred2[va == VA_MISSING] = rng.uniform(-1, 1, np.sum(va == VA_MISSING))
    extra = 50
    m2 = abaw_metrics(np.concatenate([au_prob2, rng.random((extra, 12))]),
                      np.concatenate([au, np.full((extra, 12), AU_MISSING)]),
                      np.concatenate([expr_prob2, rng.random((extra, 7))]),
                      np.concatenate([expr, np.full(extra, EXPR_MISSING)]),
                      np.concatenate([va_pred2, rng.uniform(-1, 1, (extra, 2))]),
                      np.concatenate([va, np.full((extra, 2), VA_MISSING)]))
    assert m2 == m


def test_hand_computed_small_case():
    # 4 frames; frame 3 has no AU label, frame 0 no EXPR label, frame 1 only valence.
    au = np.array([[1] * 12, [0] * 12, [1] * 6 + [0] * 6, [AU_MISSING] * 12])
    au_prob = np.array([[0.9] * 12, [0.2] * 12, [0.7] * 12, [0.9] * 12])
    # AU1..AU10 (first 6): TP, TN, TP -> F1 1; last 6: TP, TN, FP -> F1 2/3
    expr = np.array([EXPR_MISSING, 4, 4, 0])
    expr_prob = np.eye(7)[[3, 4, 0, 0]]  # predictions 4, 0, 0 on the labelled frames
    va = np.array([[0.5, -0.5], [0.1, VA_MISSING], [-0.3, 0.2], [VA_MISSING, VA_MISSING]])
    va_pred = np.array([[0.5, -0.5], [0.1, 0.9], [-0.3, 0.2], [0.0, 0.0]])
    m = abaw_metrics(au_prob, au, expr_prob, expr, va_pred, va)
    assert m["au_f1_AU1"] == 1.0 and m["au_f1_AU26"] == pytest.approx(2 / 3)
    assert m["au_f1"] == pytest.approx((6 * 1 + 6 * 2 / 3) / 12)
    assert m["au_tacc"] == pytest.approx(30 / 36)
    # EXPR: labels 4, 4, 0 vs predictions 4, 0, 0: F1 Happiness 2/3, Neutral 2/3, others 0 (no label, no pred)
    assert m["expr_f1_Happiness"] == pytest.approx(2 / 3) and m["expr_f1_Neutral"] == pytest.approx(2 / 3)
    assert m["expr_f1"] == pytest.approx(4 / 3 / 7)
    assert m["expr_tacc"] == pytest.approx(2 / 3)
    assert m["ccc_v"] == pytest.approx(1.0) and m["ccc_a"] == pytest.approx(1.0)  # perfect on labelled values


def test_task_without_labels_gives_nan_and_degenerate_ccc_gives_zero():
    au_prob, au, expr_prob, expr, va_pred, va = random_split(5, n=20)
    m = abaw_metrics(au_prob, np.full_like(au, AU_MISSING), expr_prob, np.full_like(expr, EXPR_MISSING),
                     va_pred, np.full_like(va, VA_MISSING))
    assert set(m) == KEYS and all(math.isnan(v) for v in m.values())
    va_const = np.full_like(va, 0.25)
    m = abaw_metrics(au_prob, au, expr_prob, expr, va_const, va_const)  # 0 / 0: no agreement is measurable
    assert m["ccc_v"] == 0.0 and m["ccc_a"] == 0.0
    one = np.full_like(va, VA_MISSING)
    one[0] = [0.3, -0.2]
    m = abaw_metrics(au_prob, au, expr_prob, expr, va_pred, one)
    assert m["ccc_v"] == 0.0 and m["ccc_a"] == 0.0


def test_unlabelled_au_column_is_nan_and_left_out_of_the_mean():
    au_prob, au, expr_prob, expr, va_pred, va = random_split(6)
    au[:, 10:] = AU_MISSING  # e.g. a BP4D-only split: no AU25 / AU26 labels
    m = abaw_metrics(au_prob, au, expr_prob, expr, va_pred, va)
    assert math.isnan(m["au_f1_AU25"]) and math.isnan(m["au_f1_AU26"])
    assert m["au_f1"] == pytest.approx(np.mean([m[f"au_f1_{name}"] for name in AU_NAMES[:10]]))
    rows = au[:, 0] != AU_MISSING
    assert m["au_tacc"] == pytest.approx(accuracy_score(au[rows, :10].ravel(), (au_prob[rows, :10] >= 0.5).ravel()))


def test_wrong_shapes_name_the_argument():
    au_prob, au, expr_prob, expr, va_pred, va = random_split(7, n=10)
    with pytest.raises(MetricsInputError, match=r"expr: expected shape \[10\]"):
        abaw_metrics(au_prob, au, expr_prob, expr[:9], va_pred, va)
    with pytest.raises(MetricsInputError, match="au_prob"):
        abaw_metrics(au_prob[:, :11], au, expr_prob, expr, va_pred, va)


def test_chance_metrics_are_those_of_the_trivial_predictors():
    au = np.array([[1, 0] + [0] * 10, [1, 1] + [-1] * 10, [0, 0] + [0] * 10, [-1] * 12])
    expr = np.array([2, 2, 5, -1])
    va = np.array([[0.5, 0.1], [-0.5, 0.3], [0.0, -5.0], [-5.0, -5.0]])
    chance = metrics.chance_metrics(au, expr, va)
    # All zeros: every F1 is 0; TAcc = negatives / labelled decisions = (26 - 3) / 26.
    assert chance["au_all_zeros"]["au_f1"] == 0.0
    assert chance["au_all_zeros"]["au_tacc"] == pytest.approx(23 / 26)
    # All ones: AU1 F1 = 2*2/(3+2) = 0.8, AU2 = 2*1/(3+1) = 0.5, the other 10 AUs (no positive) 0.
    assert chance["au_all_ones"]["au_f1"] == pytest.approx((0.8 + 0.5) / 12)
    assert chance["au_all_ones"]["au_tacc"] == pytest.approx(3 / 26)
    # Majority class 2 (Disgust): F1 of class 2 = 2*2/(3+2), others 0; TAcc 2/3.
    assert chance["expr_majority"]["expr_f1"] == pytest.approx(0.8 / 7)
    assert chance["expr_majority"]["expr_tacc"] == pytest.approx(2 / 3)
    # A constant prediction has no covariance with the labels.
    assert chance["va_mean"]["ccc_v"] == 0.0 and chance["va_mean"]["ccc_a"] == 0.0


def test_frames_missing_some_aus_are_scored_on_the_others():
    """BP4D-style rows (AU25, AU26 = -1, the rest labelled) count for the ten AUs they label and not for the two
    they lack: per-AU F1 equals sklearn's over the rows labelling that AU."""
    au_prob, au, expr_prob, expr, va_pred, va = random_split(4)
    au[:100, 10:] = AU_MISSING
    scores = abaw_metrics(au_prob, au, expr_prob, expr, va_pred, va)
    for j, name in enumerate(AU_NAMES):
        rows = au[:, j] != AU_MISSING
        assert scores[f"au_f1_{name}"] == pytest.approx(f1_score(au[rows, j], au_prob[rows, j] >= 0.5))
    labelled = au != AU_MISSING
    assert scores["au_tacc"] == pytest.approx(np.mean((au_prob >= 0.5)[labelled] == (au == 1)[labelled]))
