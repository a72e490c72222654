"""Losses (paper eq. 1-7) against independent float64 numpy computations of the paper's formulas, masking, edges."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pasn_jax import losses
from pasn_jax.labels import AU_MISSING, EXPR_MISSING, VA_MISSING

B = 16
TOL = 1e-5


def random_batch(seed, batch=B):
    """Model outputs and labels with about a quarter of each task's labels missing (sentinels in place)."""
    rng = np.random.default_rng(seed)
    au_mask = rng.random((batch, 12)) > 0.25
    au_mask[0] = False  # one sample with no AU label at all
    expr_mask = rng.random(batch) > 0.25
    va_mask = rng.random(batch) > 0.25
    return {
        "outputs": {"au": rng.normal(0, 2, (batch, 12)).astype(np.float32),
                    "expr": rng.normal(0, 2, (batch, 7)).astype(np.float32),
                    "va": np.tanh(rng.normal(0, 1, (batch, 2))).astype(np.float32)},
        "batch": {"au": np.where(au_mask, rng.integers(0, 2, (batch, 12)), AU_MISSING),
                  "au_mask": au_mask,
                  "expr": np.where(expr_mask, rng.integers(0, 7, batch), EXPR_MISSING),
                  "expr_mask": expr_mask,
                  "va": np.where(va_mask[:, None], rng.uniform(-1, 1, (batch, 2)), VA_MISSING).astype(np.float32),
                  "va_mask": va_mask},
    }


# Independent references, written from the paper's equations one sample at a time.
def ref_circle(s, y):
    """Eq. 1 for one sample's labelled AUs."""
    s = s.astype(np.float64)
    return np.log(1 + np.sum(np.exp(s[y == 0]))) + np.log(1 + np.sum(np.exp(-s[y == 1])))


def ref_bce(s, y):
    """Eq. 2 for one sample's labelled AUs (1/12 -> 1/#labelled)."""
    p = 1 / (1 + np.exp(-s.astype(np.float64)))
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def ref_au(logits, labels, mask, with_bce):
    values = [ref_circle(s[m], y[m]) + (ref_bce(s[m], y[m]) if with_bce else 0.0)
              for s, y, m in zip(logits, labels, mask) if m.any()]
    return np.mean(values) if values else 0.0


def ref_expr(logits, labels, mask, lam=0.9):
    """Eq. 4 with its weights normalised: -(lam log z_e + sum_{i != e} (1 - lam) / 6 log z_i)."""
    values = []
    for s, e, m in zip(logits.astype(np.float64), labels, mask):
        if m:
            log_z = s - np.log(np.sum(np.exp(s)))
            values.append(-(lam * log_z[e] + sum((1 - lam) / 6 * log_z[i] for i in range(7) if i != e)))
    return np.mean(values) if values else 0.0


def ref_ccc(x, y):
    """Eq. 5 in its correlation form: 2 rho sd_x sd_y / (sd_x^2 + sd_y^2 + (mu_x - mu_y)^2)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    rho = np.corrcoef(x, y)[0, 1]
    return 2 * rho * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def ref_va(pred, labels, mask):
    return 2 - ref_ccc(pred[mask, 0], labels[mask, 0]) - ref_ccc(pred[mask, 1], labels[mask, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_loss_equals_numpy_reference(seed):
    d = random_batch(seed)
    out, batch = d["outputs"], d["batch"]
    np.testing.assert_allclose(losses.circle_loss(out["au"], batch["au"], batch["au_mask"]),
                               ref_au(out["au"], batch["au"], batch["au_mask"], False), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(losses.au_loss(out["au"], batch["au"], batch["au_mask"]),
                               ref_au(out["au"], batch["au"], batch["au_mask"], True), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(losses.expr_loss(out["expr"], batch["expr"], batch["expr_mask"]),
                               ref_expr(out["expr"], batch["expr"], batch["expr_mask"]), rtol=TOL, atol=TOL)
    m = batch["va_mask"]
    np.testing.assert_allclose(losses.ccc(out["va"][:, 0], batch["va"][:, 0], m),
                               ref_ccc(out["va"][m, 0], batch["va"][m, 0]), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(losses.va_loss(out["va"], batch["va"], m), ref_va(out["va"], batch["va"], m),
                               rtol=TOL, atol=TOL)


def test_expr_smoothing_parameter_and_au_loss_is_circle_plus_bce():
    d = random_batch(3)
    out, batch = d["outputs"], d["batch"]
    np.testing.assert_allclose(losses.expr_loss(out["expr"], batch["expr"], batch["expr_mask"], smoothing=0.7),
                               ref_expr(out["expr"], batch["expr"], batch["expr_mask"], lam=0.7), rtol=TOL)
    # all 12 AUs labelled: eq. 2 exactly as printed (1/12 sum)
    labels = (np.arange(B * 12).reshape(B, 12) % 3 == 0).astype(np.int64)
    mask = np.ones((B, 12), bool)
    circle = np.mean([ref_circle(s, y) for s, y in zip(out["au"], labels)])
    p = 1 / (1 + np.exp(-out["au"].astype(np.float64)))
    bce = np.mean(-np.sum(labels * np.log(p) + (1 - labels) * np.log(1 - p), axis=1) / 12)
    np.testing.assert_allclose(losses.au_loss(out["au"], labels, mask), circle + bce, rtol=TOL)


def test_multitask_total_is_weighted_sum_of_references():
    d = random_batch(4)
    out, batch = d["outputs"], d["batch"]
    total, per_task = jax.jit(losses.multitask_loss)(out, batch)
    expected = {"au": ref_au(out["au"], batch["au"], batch["au_mask"], True),
                "expr": ref_expr(out["expr"], batch["expr"], batch["expr_mask"]),
                "va": ref_va(out["va"], batch["va"], batch["va_mask"])}
    for task in losses.TASKS:
        np.testing.assert_allclose(per_task[task], expected[task], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(total, sum(expected.values()), rtol=TOL)
    weights = {"au": 0.5, "va": 3.0}
    weighted, _ = losses.multitask_loss(out, batch, weights=weights)
    np.testing.assert_allclose(weighted, 0.5 * expected["au"] + expected["expr"] + 3.0 * expected["va"], rtol=TOL)
    with pytest.raises(losses.LossInputError, match="weights"):
        losses.multitask_loss(out, batch, weights={"pose": 1.0})


def test_masked_samples_change_nothing():
    d = random_batch(5)
    out, batch = d["outputs"], d["batch"]
    total, per_task = losses.multitask_loss(out, batch)
    grads = jax.grad(lambda o: losses.multitask_loss(o, batch)[0])(out)
    # Scramble everything under a False mask: huge logits, inf / NaN, labels other than the sentinels.
    out2 = {k: v.copy() for k, v in out.items()}
    batch2 = {k: v.copy() for k, v in batch.items()}
    out2["au"][~batch["au_mask"]] = 1e4
    out2["au"][0, :3] = [np.inf, -np.inf, np.nan]
    out2["expr"][~batch["expr_mask"]] = np.nan
    out2["va"][~batch["va_mask"]] = 0.99
    batch2["au"][~batch["au_mask"]] = 1
    batch2["expr"][~batch["expr_mask"]] = 6
    batch2["va"][~batch["va_mask"]] = 1.0
    total2, per_task2 = losses.multitask_loss(out2, batch2)
    np.testing.assert_allclose(total2, total, rtol=1e-6)
    for task in losses.TASKS:
        np.testing.assert_allclose(per_task2[task], per_task[task], rtol=1e-6)
    grads2 = jax.grad(lambda o: losses.multitask_loss(o, batch2)[0])(out2)
    for task in losses.TASKS:
        np.testing.assert_allclose(grads2[task], grads[task], rtol=1e-5, atol=1e-7)
    # and masked entries get exactly zero gradient
    assert np.all(np.asarray(grads["au"])[~batch["au_mask"]] == 0)
    assert np.all(np.asarray(grads["expr"])[~batch["expr_mask"]] == 0)
    assert np.all(np.asarray(grads["va"])[~batch["va_mask"]] == 0)


def _all_finite(tree):
    return all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(tree))


def test_tasks_without_labels_contribute_exactly_zero():
    d = random_batch(6)
    out, batch = d["outputs"], d["batch"]
    empty = dict(batch, au_mask=np.zeros_like(batch["au_mask"]), au=np.full_like(batch["au"], AU_MISSING),
                 expr_mask=np.zeros_like(batch["expr_mask"]), expr=np.full_like(batch["expr"], EXPR_MISSING))
    total, per_task = losses.multitask_loss(out, empty)
    assert float(per_task["au"]) == 0.0 and float(per_task["expr"]) == 0.0
    np.testing.assert_allclose(total, ref_va(out["va"], batch["va"], batch["va_mask"]), rtol=TOL)
    none = dict(empty, va_mask=np.zeros_like(batch["va_mask"]), va=np.full_like(batch["va"], VA_MISSING))
    total, per_task = losses.multitask_loss(out, none)
    assert float(total) == 0.0 and all(float(v) == 0.0 for v in per_task.values())
    grads = jax.grad(lambda o: losses.multitask_loss(o, none)[0])(out)
    assert _all_finite(grads) and all(np.all(np.asarray(g) == 0) for g in grads.values())


@pytest.mark.parametrize("case", ["one_labelled", "constant_labels", "constant_predictions", "both_constant_equal",
                                  "none_labelled"])
def test_ccc_edge_cases_are_finite_with_finite_gradients(case):
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, B).astype(np.float32)
    y = rng.uniform(-1, 1, B).astype(np.float32)
    mask = np.ones(B, bool)
    if case == "one_labelled":
        mask[1:] = False
    elif case == "constant_labels":
        y[:] = 0.3
    elif case == "constant_predictions":
        x[:] = -0.2
    elif case == "both_constant_equal":
        x[:] = 0.5
        y[:] = 0.5
    else:
        mask[:] = False
    value, grad = jax.value_and_grad(losses.ccc)(x, y, mask)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # no labelled sample, one, or a constant side: the covariance is 0, so CCC is 0 in every case
    assert abs(float(value)) < 1e-6
    pred = np.stack([x, x], axis=1)
    labels = np.stack([y, y], axis=1)
    loss, grad = jax.value_and_grad(losses.va_loss)(pred, labels, mask)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    expected_loss = 0.0 if case == "none_labelled" else 2.0  # 0 without labels, else 2 - 0 - 0
    assert float(loss) == pytest.approx(expected_loss, abs=1e-5)


def test_au_and_expr_edge_cases_are_finite():
    logits = np.array([[80.0] * 6 + [-80.0] * 6, [0.0] * 12], np.float32)
    labels = np.array([[0] * 6 + [1] * 6, [1] * 12])  # confidently wrong; all-positive sample
    mask = np.ones((2, 12), bool)
    value, grad = jax.value_and_grad(losses.au_loss)(logits, labels, mask)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # circle: log(1 + 6 e^80) twice for sample 0 (logsumexp, no overflow), log(1 + 12) for sample 1
    circle_0 = 2 * (80 + np.log(6) + np.log1p(np.exp(-80) / 6))
    np.testing.assert_allclose(losses.circle_loss(logits, labels, mask), (circle_0 + np.log(13)) / 2, rtol=TOL)
    expr_logits = np.array([[1e3, -1e3, 0, 0, 0, 0, 0]], np.float32)
    value, grad = jax.value_and_grad(losses.expr_loss)(expr_logits, np.array([1]), np.array([True]))
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_bfloat16_outputs_are_computed_in_float32():
    d = random_batch(8)
    out16 = {k: jnp.asarray(v, jnp.bfloat16) for k, v in d["outputs"].items()}
    out32 = {k: np.asarray(v.astype(jnp.float32)) for k, v in out16.items()}
    total16, _ = losses.multitask_loss(out16, d["batch"])
    total32, _ = losses.multitask_loss(out32, d["batch"])
    assert total16.dtype == jnp.float32
    np.testing.assert_allclose(total16, total32, rtol=1e-6)


def test_wrong_shapes_name_the_argument():
    with pytest.raises(losses.LossInputError, match=r"au mask: expected shape \[4, 12\]"):
        losses.au_loss(np.zeros((4, 12)), np.zeros((4, 12)), np.ones((4, 11), bool))
    with pytest.raises(losses.LossInputError, match="va mask"):
        losses.va_loss(np.zeros((4, 2)), np.zeros((4, 2)), np.ones((4, 2), bool))


def test_bp4d_frames_missing_au25_au26_train_only_their_ten_labelled_aus():
    """BP4D has no AU25/AU26 (-1 per AU, not per row; pasn_jax/data/bp4d.py): on a batch mixing such frames with
    Aff-Wild2 frames, the AU loss equals the reference over each frame's labelled AUs, the masked logits get no
    gradient, and the masks come from the -1s of each AU (pipeline.label_arrays)."""
    from pasn_jax.data import pipeline
    rng = np.random.default_rng(5)
    au = rng.integers(0, 2, (8, 12))
    au[:4, 10:] = AU_MISSING  # four BP4D frames: AU25, AU26 unknown
    mask = np.stack([pipeline.label_arrays({"au": a, "expr": 0, "va": [0.0, 0.0]})["au_mask"] for a in au])
    assert mask[:4, :10].all() and not mask[:4, 10:].any() and mask[4:].all()
    logits = rng.normal(0, 2, (8, 12)).astype(np.float32)
    got = float(losses.au_loss(jnp.asarray(logits), jnp.asarray(au), jnp.asarray(mask)))
    np.testing.assert_allclose(got, ref_au(logits, au, mask.astype(bool), with_bce=True), rtol=TOL)
    grad = jax.grad(lambda x: losses.au_loss(x, jnp.asarray(au), jnp.asarray(mask)))(jnp.asarray(logits))
    assert np.all(np.asarray(grad)[:4, 10:] == 0) and np.all(np.asarray(grad)[4:, 10:] != 0)
