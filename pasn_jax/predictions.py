"""The per-frame predictions file (`predictions.csv`): one row per frame with the video, the frame number, the 12 AU
probabilities, the 7 expression probabilities, valence and arousal, then the labels with their sentinels kept."""

import csv
import os

import numpy as np

from pasn_jax.labels import AU_NAMES, EXPR_NAMES

PREDICTION_COLUMNS = (["video", "frame"] + [f"prob_{a}" for a in AU_NAMES] + [f"prob_{e}" for e in EXPR_NAMES]
                      + ["pred_valence", "pred_arousal"] + list(AU_NAMES) + ["expr", "valence", "arousal"])


def write_predictions(path: str, p: dict) -> None:
    """Writes the arrays of `p` (video, frame, au_prob, expr_prob, va_pred, au, expr, va) under a temporary name,
    then renames the file into place."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PREDICTION_COLUMNS)
        for i in range(len(p["frame"])):
            w.writerow([p["video"][i], int(p["frame"][i])]
                       + [repr(float(x)) for x in np.concatenate([p["au_prob"][i], p["expr_prob"][i], p["va_pred"][i]])]
                       + [int(x) for x in p["au"][i]] + [int(p["expr"][i])] + [repr(float(x)) for x in p["va"][i]])
    os.replace(tmp, path)


def read_predictions(path: str) -> dict:
    """The arrays of a predictions.csv, as the evaluator holds them."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != PREDICTION_COLUMNS:
        raise ValueError(f"{path}: expected the header {','.join(PREDICTION_COLUMNS)}")
    cols = {name: [r[i] for r in rows[1:]] for i, name in enumerate(rows[0])}
    floats = lambda names: np.array([[float(cols[n][i]) for n in names] for i in range(len(rows) - 1)],
                                    np.float32).reshape(len(rows) - 1, len(names))
    return {
        "video": np.array(cols["video"]), "frame": np.array(cols["frame"], np.int64),
        "au_prob": floats([f"prob_{a}" for a in AU_NAMES]), "expr_prob": floats([f"prob_{e}" for e in EXPR_NAMES]),
        "va_pred": floats(["pred_valence", "pred_arousal"]),
        "au": floats(AU_NAMES).astype(np.int64), "expr": np.array(cols["expr"], np.int64),
        "va": floats(["valence", "arousal"]),
    }
