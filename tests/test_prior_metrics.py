"""Prior metrics (paper §3.2) against an independent loop of insightface's 10-fold protocol; constructed triplets."""

import numpy as np
import pytest

from pasn_jax import prior_metrics


def ref_verification(e1, e2, issame, folds=10, thresholds=prior_metrics.DEFAULT_THRESHOLDS):
    """insightface eval/verification.py calculate_roc, one threshold at a time with tp/tn counts; folds as sklearn's
    KFold(shuffle=False) sizes them (the first N % folds folds one larger)."""
    e1 = e1 / np.sqrt(np.sum(e1 * e1, axis=1))[:, None]
    e2 = e2 / np.sqrt(np.sum(e2 * e2, axis=1))[:, None]
    dist = np.array([sum((a - b) ** 2 for a, b in zip(x, y)) for x, y in zip(e1, e2)])
    n = len(issame)

    def accuracy(threshold, idx):
        predict = dist[idx] < threshold
        actual = issame[idx]
        tp = np.sum(predict & actual)
        tn = np.sum(~predict & ~actual)
        return (tp + tn) / len(idx)

    sizes = [n // folds + (1 if k < n % folds else 0) for k in range(folds)]
    starts = np.cumsum([0] + sizes)
    accs, best_thresholds = [], []
    for k in range(folds):
        test = np.arange(starts[k], starts[k + 1])
        train = np.array([i for i in range(n) if not starts[k] <= i < starts[k + 1]])
        train_acc = [accuracy(t, train) for t in thresholds]
        best = thresholds[int(np.argmax(train_acc))]
        best_thresholds.append(best)
        accs.append(accuracy(best, test))
    return np.mean(accs), np.std(accs), np.mean(best_thresholds)


def random_pairs(seed, n, d=8, noise=0.8):
    """Half same pairs (second embedding = first + noise), half unrelated, in random order."""
    rng = np.random.default_rng(seed)
    e1 = rng.normal(size=(n, d))
    issame = rng.random(n) < 0.5
    e2 = np.where(issame[:, None], e1 + noise * rng.normal(size=(n, d)), rng.normal(size=(n, d)))
    return e1, e2, issame


@pytest.mark.parametrize("seed,n,folds", [(0, 53, 10), (1, 40, 10), (2, 31, 4)])
def test_verification_equals_independent_ten_fold_loop(seed, n, folds):
    e1, e2, issame = random_pairs(seed, n)
    result = prior_metrics.verification_accuracy(e1, e2, issame, folds=folds)
    acc, std, threshold = ref_verification(e1, e2, issame, folds)
    assert result["pairs"] == n
    np.testing.assert_allclose([result["accuracy"], result["accuracy_std"], result["threshold"]],
                               [acc, std, threshold], rtol=1e-12, atol=1e-12)
    assert 0.5 < result["accuracy"] < 1.0  # informative but imperfect data: the threshold search matters


def test_verification_separable_pairs_give_one():
    rng = np.random.default_rng(0)
    n, d = 40, 64
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0].T  # orthonormal rows
    e1 = basis[:n] * rng.uniform(0.5, 3.0, (n, 1))  # norms differ: normalisation must remove them
    issame = np.arange(n) % 2 == 0
    e2 = np.where(issame[:, None], e1 * 2.0, basis[(np.arange(n) + 1) % d])  # same: distance 0; different: 2
    result = prior_metrics.verification_accuracy(e1, e2, issame)
    assert result["accuracy"] == 1.0 and result["accuracy_std"] == 0.0 and result["pairs"] == n
    np.testing.assert_allclose(result["threshold"], 0.01)  # the first threshold with dist < threshold for same pairs


def test_verification_errors_name_the_argument():
    e1, e2, issame = random_pairs(0, 9)
    with pytest.raises(ValueError, match="issame"):
        prior_metrics.verification_accuracy(e1, e2, issame)  # 9 pairs < 10 folds
    with pytest.raises(ValueError, match="embeddings2"):
        prior_metrics.verification_accuracy(e1, e2[:, :4], issame, folds=3)
    with pytest.raises(ValueError, match="issame"):
        prior_metrics.verification_accuracy(e1, e2, issame[:-1], folds=3)
    with pytest.raises(ValueError, match="embeddings1"):
        prior_metrics.verification_accuracy(e1[0], e2[0], issame[:1], folds=3)
    with pytest.raises(ValueError, match="folds"):
        prior_metrics.verification_accuracy(e1, e2, issame, folds=1)


def test_triplet_accuracy_on_constructed_triplets():
    rng = np.random.default_rng(0)
    right = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0]])  # (0, 1) closest
    wrong_02 = np.array([[0.0, 0.0], [1.0, 0.0], [0.1, 0.0]])  # (0, 2) closest
    wrong_12 = np.array([[0.0, 0.0], [1.0, 0.0], [1.1, 0.0]])  # (1, 2) closest
    tie = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # d01 = d02: not strictly closest, counts as wrong
    triplets = np.stack([right] * 5 + [wrong_02] * 2 + [wrong_12] * 2 + [tie])  # 5 of 10
    triplets = triplets[rng.permutation(len(triplets))] + rng.normal(size=(1, 1, 2))  # order and shift: irrelevant
    triplets = np.concatenate([triplets, np.zeros((10, 3, 14))], axis=-1)  # D = 16
    assert prior_metrics.triplet_accuracy(triplets) == pytest.approx(0.5)
    assert prior_metrics.triplet_accuracy(np.stack([right, right, wrong_12])) == pytest.approx(2 / 3)
    # random embeddings: about chance
    assert abs(prior_metrics.triplet_accuracy(rng.normal(size=(3000, 3, 16))) - 1 / 3) < 0.04
    with pytest.raises(ValueError, match="embeddings"):
        prior_metrics.triplet_accuracy(np.zeros((4, 2, 16)))
    with pytest.raises(ValueError, match="embeddings"):
        prior_metrics.triplet_accuracy(np.zeros((0, 3, 16)))
