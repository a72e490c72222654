"""Metrics of the PASN prior (paper §3.2), in numpy.

- verification_accuracy: face verification (f_id) with the standard LFW 10-fold protocol as insightface's
  eval/verification.py computes it (calculate_roc / calculate_accuracy).
- triplet_accuracy: FEC triplet prediction accuracy of the expression embedding (Vemulapalli & Agarwala 2019).
"""

import numpy as np

DEFAULT_THRESHOLDS = np.arange(0, 4, 0.01)


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm, rows of zeros kept at zero (sklearn.preprocessing.normalize)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm == 0, 1.0, norm)


def verification_accuracy(embeddings1, embeddings2, issame, *, folds=10, thresholds=DEFAULT_THRESHOLDS) -> dict:
    """LFW-style verification accuracy of N pairs (embeddings1[i], embeddings2[i]), issame[i] True for a same-identity
    pair: embeddings are L2-normalised, dist = squared Euclidean distance (in [0, 4]), a pair is predicted "same"
    when dist < threshold. The pairs are split into `folds` consecutive folds (sklearn KFold, no shuffling: the
    first N % folds folds hold one pair more); for each fold the threshold with the best accuracy on the other
    folds (the first such in `thresholds`) is applied to the fold.

    Returns {"accuracy": mean fold accuracy, "accuracy_std": their population std, "threshold": mean of the chosen
    thresholds, "pairs": N}. ValueError naming the argument for mismatched shapes, folds < 2 or N < folds.
    """
    embeddings1 = np.asarray(embeddings1, np.float64)
    embeddings2 = np.asarray(embeddings2, np.float64)
    issame = np.asarray(issame)
    thresholds = np.asarray(thresholds, np.float64)
    if embeddings1.ndim != 2:
        raise ValueError(f"embeddings1: expected shape [N, D], got {list(embeddings1.shape)}")
    if embeddings2.shape != embeddings1.shape:
        raise ValueError(f"embeddings2: expected shape {list(embeddings1.shape)} (that of embeddings1), "
                         f"got {list(embeddings2.shape)}")
    pairs = embeddings1.shape[0]
    if issame.shape != (pairs,):
        raise ValueError(f"issame: expected shape [{pairs}], got {list(issame.shape)}")
    if thresholds.ndim != 1 or thresholds.size == 0:
        raise ValueError(f"thresholds: expected a non-empty 1-D array, got shape {list(thresholds.shape)}")
    if int(folds) != folds or folds < 2:
        raise ValueError(f"folds: expected an integer >= 2, got {folds}")
    if pairs < folds:
        raise ValueError(f"issame: {pairs} pairs, fewer than folds = {folds}")
    issame = issame.astype(bool)
    dist = np.sum((_l2_normalise(embeddings1) - _l2_normalise(embeddings2)) ** 2, axis=1)  # [N]
    correct = (dist[None, :] < thresholds[:, None]) == issame[None, :]  # [T, N]
    accuracies, chosen = [], []
    for test in np.array_split(np.arange(pairs), int(folds)):
        train = np.ones(pairs, bool)
        train[test] = False
        best = int(np.argmax(correct[:, train].mean(axis=1)))
        chosen.append(thresholds[best])
        accuracies.append(correct[best, test].mean())
    return {"accuracy": float(np.mean(accuracies)), "accuracy_std": float(np.std(accuracies)),
            "threshold": float(np.mean(chosen)), "pairs": int(pairs)}


def triplet_accuracy(embeddings) -> float:
    """FEC triplet prediction accuracy: the fraction of triplets [N, 3, D] whose closest pair by Euclidean distance
    among (0, 1), (0, 2), (1, 2) is (0, 1), faces 0 and 1 being the annotated most similar pair (strictly closer:
    a tie counts as wrong). Chance is 1/3. ValueError naming `embeddings` for a bad shape or N = 0."""
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 3 or embeddings.shape[1] != 3 or embeddings.shape[0] == 0:
        raise ValueError(f"embeddings: expected shape [N > 0, 3, D], got {list(embeddings.shape)}")
    d01 = np.linalg.norm(embeddings[:, 0] - embeddings[:, 1], axis=-1)
    d02 = np.linalg.norm(embeddings[:, 0] - embeddings[:, 2], axis=-1)
    d12 = np.linalg.norm(embeddings[:, 1] - embeddings[:, 2], axis=-1)
    return float(np.mean((d01 < d02) & (d01 < d12)))
