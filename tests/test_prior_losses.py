"""Prior losses (paper §3.2) against independent float64 numpy loops of the ArcFace / CosFace / FECNet formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pasn_jax import prior_losses
from pasn_jax.losses import LossInputError

TOL = 1e-4  # on logits of scale 64: float32 arccos / cos


def random_cosines(seed, batch=8, classes=5):
    """Cosines in (-0.99, 0.99), labels with two unknown rows (-1); row 0's target is below cos(pi - 0.5), so
    theta + m > pi there, row 1's target is near 1."""
    rng = np.random.default_rng(seed)
    cosine = rng.uniform(-0.99, 0.99, (batch, classes)).astype(np.float32)
    labels = rng.integers(0, classes, batch)
    labels[[2, 5]] = -1
    cosine[0, labels[0]] = -0.95
    cosine[1, labels[1]] = 0.98
    return cosine, labels


# Independent references, one entry at a time, written from the angle form of the papers' formulas.
def ref_arcface(cosine, labels, s, m):
    out = np.array(cosine, np.float64)
    for i, y in enumerate(labels):
        if y >= 0:
            theta = math.acos(float(cosine[i, y]))
            out[i, y] = math.cos(theta + m) if theta + m < math.pi else cosine[i, y] - m * math.sin(math.pi - m)
    return s * out


def ref_cosface(cosine, labels, s, m):
    out = np.array(cosine, np.float64)
    for i, y in enumerate(labels):
        if y >= 0:
            out[i, y] -= m
    return s * out


def ref_cross_entropy(logits, labels):
    values = [-(row[y] - np.log(np.sum(np.exp(row - row.max()))) - row.max())
              for row, y in zip(np.asarray(logits, np.float64), labels) if y >= 0]
    return np.mean(values) if values else 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_margin_logits_equal_numpy_loops(seed):
    cosine, labels = random_cosines(seed)
    assert cosine[0, labels[0]] < math.cos(math.pi - 0.5)  # the theta + m > pi branch is exercised
    np.testing.assert_allclose(prior_losses.arcface_logits(cosine, labels, scale=64.0, margin=0.5),
                               ref_arcface(cosine, labels, 64.0, 0.5), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(prior_losses.arcface_logits(cosine, labels, scale=30.0, margin=0.3),
                               ref_arcface(cosine, labels, 30.0, 0.3), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(prior_losses.cosface_logits(cosine, labels, scale=64.0, margin=0.35),
                               ref_cosface(cosine, labels, 64.0, 0.35), rtol=TOL, atol=TOL)
    # either side of cos(pi - m): cos(theta + m) reaches -1, the fallback starts at cos(pi - m) - m sin(pi - m)
    edge = math.cos(math.pi - 0.5)
    at = np.array([[edge + 1e-4, 0.0], [edge - 1e-4, 0.0]], np.float32)
    np.testing.assert_allclose(prior_losses.arcface_logits(at, np.array([0, 0]), scale=1.0, margin=0.5)[:, 0],
                               [-1.0, edge - 1e-4 - 0.5 * math.sin(math.pi - 0.5)], atol=2e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_margin_softmax_loss_equals_numpy_cross_entropy(seed):
    cosine, labels = random_cosines(seed)
    np.testing.assert_allclose(prior_losses.margin_softmax_loss(cosine, labels),
                               ref_cross_entropy(ref_arcface(cosine, labels, 64.0, 0.5), labels), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(prior_losses.margin_softmax_loss(cosine, labels, kind="cosface"),
                               ref_cross_entropy(ref_cosface(cosine, labels, 64.0, 0.35), labels), rtol=TOL,
                               atol=TOL)
    np.testing.assert_allclose(prior_losses.margin_softmax_loss(cosine, labels, kind="arcface", scale=16.0,
                                                                margin=0.2),
                               ref_cross_entropy(ref_arcface(cosine, labels, 16.0, 0.2), labels), rtol=TOL, atol=TOL)
    jitted = jax.jit(prior_losses.margin_softmax_loss, static_argnames=("kind", "scale", "margin"))
    np.testing.assert_allclose(jitted(cosine, labels), prior_losses.margin_softmax_loss(cosine, labels), rtol=1e-6)


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_unknown_labels_change_neither_value_nor_gradient(kind):
    cosine, labels = random_cosines(3)
    known = labels >= 0
    loss_fn = jax.value_and_grad(lambda c, y: prior_losses.margin_softmax_loss(c, y, kind=kind))
    value, grad = loss_fn(cosine, labels)
    poisoned = cosine.copy()
    poisoned[~known] = np.nan  # anything in an unknown row
    value2, grad2 = loss_fn(poisoned, labels)
    value3, grad3 = loss_fn(cosine[known], labels[known])
    assert np.isfinite(value2) and np.all(np.isfinite(grad2))
    np.testing.assert_allclose(value2, value, rtol=1e-6)
    np.testing.assert_allclose(value3, value, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad2)[known], np.asarray(grad3), rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(grad)[~known] == 0) and np.all(np.asarray(grad2)[~known] == 0)
    # no known label at all: exactly 0, zero gradients
    value4, grad4 = loss_fn(cosine, np.full_like(labels, -1))
    assert float(value4) == 0.0 and np.all(np.asarray(grad4) == 0)


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_gradients_finite_at_cosine_plus_minus_one(kind):
    cosine = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [1.0, 1.0, -1.0]], np.float32)
    labels = np.array([0, 0, 2])  # targets at +1, -1, -1; non-targets at +-1
    value, grad = jax.value_and_grad(lambda c: prior_losses.margin_softmax_loss(c, labels, kind=kind))(cosine)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    logits = (prior_losses.arcface_logits if kind == "arcface" else prior_losses.cosface_logits)(cosine, labels)
    ref = (ref_arcface(cosine, labels, 64.0, 0.5) if kind == "arcface" else ref_cosface(cosine, labels, 64.0, 0.35))
    np.testing.assert_allclose(logits, ref, atol=0.05)  # clipping at 1 - 1e-7 moves cos(theta + m) by ~2e-4
    grad_logits = jax.jacobian(lambda c: prior_losses.arcface_logits(c, labels))(cosine)
    assert np.all(np.isfinite(grad_logits))


def test_normalise_and_cosine_logits():
    value, grad = jax.value_and_grad(lambda x: jnp.sum(prior_losses.normalise(x)))(jnp.zeros((2, 16)))
    assert np.all(np.asarray(value) == 0) and np.all(np.isfinite(grad))
    jac = jax.jacobian(prior_losses.normalise)(jnp.zeros(4))
    assert np.all(np.isfinite(jac))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(prior_losses.normalise(x), x / np.linalg.norm(x, axis=-1, keepdims=True), rtol=1e-5)
    w = rng.normal(size=(6, 3)).astype(np.float32)
    ref = np.array([[xi @ wj / np.linalg.norm(xi) / np.linalg.norm(wj) for wj in w.T] for xi in x])
    np.testing.assert_allclose(prior_losses.cosine_logits(x, w), ref, rtol=1e-5, atol=1e-6)


def test_input_errors_name_the_argument():
    cosine, labels = random_cosines(0)
    with pytest.raises(LossInputError, match="kind"):
        prior_losses.margin_softmax_loss(cosine, labels, kind="sphereface")
    with pytest.raises(LossInputError, match="labels"):
        prior_losses.margin_softmax_loss(cosine, labels[:-1])
    with pytest.raises(LossInputError, match="labels"):
        prior_losses.arcface_logits(cosine, labels.astype(np.float32))
    with pytest.raises(LossInputError, match="cosine"):
        prior_losses.cosface_logits(cosine[0], labels)
    with pytest.raises(ValueError, match="weights"):
        prior_losses.cosine_logits(np.zeros((2, 4)), np.zeros((5, 3)))
    with pytest.raises(LossInputError, match="embeddings"):
        prior_losses.fec_triplet_loss(np.zeros((2, 2, 4)), np.array([1, 2]))
    with pytest.raises(LossInputError, match="triplet_type"):
        prior_losses.fec_triplet_loss(np.zeros((2, 3, 4)), np.array([1, 4]))
    with pytest.raises(LossInputError, match="mask"):
        prior_losses.fec_triplet_loss(np.zeros((2, 3, 4)), np.array([1, 2]), mask=np.ones(3, bool))


def fec_example():
    """Three triplets on a line (D = 2), one of each type, with squared distances worked out by hand."""
    embeddings = np.array([
        [[0.0, 0.0], [0.3, 0.0], [0.5, 0.0]],  # d12 = 0.09, d13 = 0.25, d23 = 0.04
        [[0.0, 0.0], [0.2, 0.0], [0.0, 0.5]],  # d12 = 0.04, d13 = 0.25, d23 = 0.29
        [[0.0, 0.0], [0.6, 0.0], [0.0, 0.4]],  # d12 = 0.36, d13 = 0.16, d23 = 0.52
    ], np.float32)
    # type 1 (delta 0.1): max(0, 0.09 - 0.25 + 0.1) + max(0, 0.09 - 0.04 + 0.1) = 0 + 0.15
    # type 2 (delta 0.2): max(0, 0.04 - 0.25 + 0.2) + max(0, 0.04 - 0.29 + 0.2) = 0 + 0
    # type 3 (delta 0.2): max(0, 0.36 - 0.16 + 0.2) + max(0, 0.36 - 0.52 + 0.2) = 0.4 + 0.04
    return embeddings, np.array([1, 2, 3]), np.array([0.15, 0.0, 0.44])


def test_fec_triplet_loss_hand_computed():
    embeddings, types, per_triplet = fec_example()
    np.testing.assert_allclose(prior_losses.fec_triplet_loss(embeddings, types), per_triplet.mean(), atol=1e-6)
    # the margin follows the type: triplet 0 as two-class (delta 0.2): 0.04 + 0.25; triplet 2 as one-class: 0.3 + 0
    np.testing.assert_allclose(prior_losses.fec_triplet_loss(embeddings[:1], np.array([2])), 0.29, atol=1e-6)
    np.testing.assert_allclose(prior_losses.fec_triplet_loss(embeddings[2:], np.array([1])), 0.3, atol=1e-6)
    np.testing.assert_allclose(prior_losses.fec_triplet_loss(embeddings, types, margins=(0.0, 0.0, 0.0)),
                               (0.05 + 0.0 + 0.2) / 3, atol=1e-6)
    jitted = jax.jit(prior_losses.fec_triplet_loss)
    np.testing.assert_allclose(jitted(embeddings, types), per_triplet.mean(), atol=1e-6)


def test_fec_triplet_loss_masking():
    embeddings, types, per_triplet = fec_example()
    mask = np.array([True, False, True])
    assert per_triplet[1] == 0.0  # so the masked mean below is (0.15 + 0.44) / 2, not (0.15 + 0 + 0.44) / 3
    poisoned = embeddings.copy()
    poisoned[1] = np.nan
    types_poisoned = types.copy()
    types_poisoned[1] = 0  # an invalid type under a False mask is never read
    loss_fn = jax.value_and_grad(prior_losses.fec_triplet_loss)
    value, grad = loss_fn(poisoned, types_poisoned, mask=mask)
    np.testing.assert_allclose(value, (0.15 + 0.44) / 2, atol=1e-6)
    assert np.all(np.asarray(grad)[1] == 0) and np.all(np.isfinite(grad))
    value2, grad2 = loss_fn(embeddings[mask], types[mask])
    np.testing.assert_allclose(value2, value, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad)[mask], grad2, atol=1e-6)
    # no triplet, and all embeddings equal (the DLN start): 0 / finite gradients
    value3, grad3 = loss_fn(embeddings, types, mask=np.zeros(3, bool))
    assert float(value3) == 0.0 and np.all(np.asarray(grad3) == 0)
    value4, grad4 = loss_fn(np.zeros((2, 3, 16), np.float32), np.array([1, 3]))
    np.testing.assert_allclose(value4, (0.2 + 0.4) / 2, atol=1e-6)
    assert np.all(np.isfinite(grad4))
