"""The per-frame predictions file (`predictions.csv`), one layout for every tool that predicts (`main` in eval and
predict mode, the ensemble, `pasn_jax.predict` on faces) and every tool that reads predictions (the ensemble, the
submission writer): one row per frame with the video, the frame number, the 12 AU probabilities, the 7 expression
probabilities, valence and arousal, then, where the frames are labelled, the labels with their sentinels kept.
Readers go by column name: a file may carry more columns (pasn_jax.predict adds the face's track, box and
landmarks, and rows of frames without a face, whose `status` is not `face`)."""

import csv
import io

import numpy as np

from pasn_jax import labels, paths
from pasn_jax.labels import AU_NAMES, EXPR_NAMES

PREDICTED_COLUMNS = (["video", "frame"] + [f"prob_{a}" for a in AU_NAMES] + [f"prob_{e}" for e in EXPR_NAMES]
                     + ["pred_valence", "pred_arousal"])
LABEL_COLUMNS = list(AU_NAMES) + ["expr", "valence", "arousal"]
PREDICTION_COLUMNS = PREDICTED_COLUMNS + LABEL_COLUMNS


def write_predictions(path: str, p: dict) -> None:
    """Writes the arrays of `p` (video, frame, au_prob, expr_prob, va_pred; with labels: au, expr, va) whole
    (pasn_jax/paths.py: a reader never sees half a file; local or on an object store)."""
    labelled = "au" in p
    with io.StringIO(newline="") as f:
        w = csv.writer(f)
        w.writerow(PREDICTION_COLUMNS if labelled else PREDICTED_COLUMNS)
        for i in range(len(p["frame"])):
            row = [p["video"][i], int(p["frame"][i])] + [
                repr(float(x)) for x in np.concatenate([p["au_prob"][i], p["expr_prob"][i], p["va_pred"][i]])]
            if labelled:
                row += [int(x) for x in p["au"][i]] + [int(p["expr"][i])] + [repr(float(x)) for x in p["va"][i]]
            w.writerow(row)
        paths.write_text(path, f.getvalue())


def read_predictions(path: str) -> dict:
    """The arrays of a predictions file, as the evaluator holds them (labels: sentinels where the file has none)."""
    rows = list(csv.reader(io.StringIO(paths.path(path).read_text(), newline="")))
    header = rows[0] if rows else []
    missing = [c for c in PREDICTED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: expected the columns {','.join(PREDICTED_COLUMNS)}; missing {','.join(missing)}")
    at = {name: i for i, name in enumerate(header)}
    rows = [r for r in rows[1:] if "status" not in at or r[at["status"]] == "face"]
    try:
        floats = lambda names: np.array([[float(r[at[n]]) for n in names] for r in rows],
                                        np.float32).reshape(len(rows), len(names))
        p = {"video": np.array([r[at["video"]] for r in rows], str),
             "frame": np.array([int(r[at["frame"]]) for r in rows], np.int64),
             "au_prob": floats([f"prob_{a}" for a in AU_NAMES]), "expr_prob": floats([f"prob_{e}" for e in EXPR_NAMES]),
             "va_pred": floats(["pred_valence", "pred_arousal"])}
        if all(c in at for c in LABEL_COLUMNS):
            p |= {"au": floats(AU_NAMES).astype(np.int64), "expr": np.array([int(r[at["expr"]]) for r in rows],
                                                                            np.int64),
                  "va": floats(["valence", "arousal"])}
        else:
            p |= {"au": np.full((len(rows), labels.NUM_AUS), labels.AU_MISSING, np.int64),
                  "expr": np.full(len(rows), labels.EXPR_MISSING, np.int64),
                  "va": np.full((len(rows), labels.NUM_VA), labels.VA_MISSING, np.float32)}
    except (ValueError, IndexError) as e:
        raise ValueError(f"{path}: a row that is not a frame's predictions ({e})") from None
    return p
