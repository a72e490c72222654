"""Evaluation: predict a whole split with a checkpoint and score it with the ABAW2 metrics (paper §4.2).

`evaluate(config, workdir, step=None)` restores the latest (or the given) checkpoint of a workdir, predicts every
frame of the split, prints the ABAW table and writes `workdir/eval/<step>/metrics.json` and
`workdir/eval/<step>/predictions.csv` (one row per frame: video, frame, 12 AU probabilities, 7 EXPR
probabilities, valence, arousal, then the labels with their sentinels kept). The training loop's periodic
evaluation runs the same `Evaluator`.
"""

import csv
import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from pasn_jax import checkpointing, metrics, parallel, train_state
from pasn_jax.data import pipeline
from pasn_jax.data.labels import AU_NAMES, EXPR_NAMES
from pasn_jax.data.source import resolve_data_dir

PREDICTION_COLUMNS = (["video", "frame"] + [f"prob_{a}" for a in AU_NAMES] + [f"prob_{e}" for e in EXPR_NAMES]
                      + ["pred_valence", "pred_arousal"] + list(AU_NAMES) + ["expr", "valence", "arousal"])
_VIDEO_BYTES = 128  # video names travel between processes as fixed-width bytes


@dataclasses.dataclass(frozen=True)
class EvalResult:
    step: int
    split: str
    frames: int
    scores: dict  # abaw_metrics
    chance: dict  # chance_metrics


def _predict(model, variables, images):
    outputs = model.apply(variables, images, train=False)
    return {"au_prob": jax.nn.sigmoid(outputs["au"].astype(jnp.float32)),  # [B, 12]
            "expr_prob": jax.nn.softmax(outputs["expr"].astype(jnp.float32)),  # [B, 7]
            "va_pred": outputs["va"].astype(jnp.float32)}  # [B, 2]


class Evaluator:
    """Predicts a split on the mesh and scores it; every process runs it, process 0 writes the files."""

    def __init__(self, model, config, data_dir: str, mesh):
        self.config, self.data_dir, self.mesh = config, data_dir, mesh
        self.split = config.eval.split
        self.local_batch_size = parallel.per_process_batch_size(config.data.eval_batch_size, mesh)
        repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        self._predict = jax.jit(functools.partial(_predict, model), in_shardings=(repl, data), out_shardings=repl)

    def predict(self, variables) -> dict:
        """All frames of the split, in order: predictions, labels, video and frame as host numpy arrays."""
        parts = []
        for local in pipeline.eval_dataset(self.data_dir, batch_size=self.local_batch_size,
                                           image_size=self.config.data.image_size, split=self.split,
                                           shard_index=jax.process_index(), shard_count=jax.process_count()):
            images = parallel.global_batch({"image": local["image"]}, self.mesh)["image"]
            predictions = jax.device_get(self._predict(variables, images))
            host = {k: local[k] for k in ("au", "expr", "va", "frame", "valid")}
            names = np.asarray(local["video"], dtype=f"S{_VIDEO_BYTES}")
            host["video"] = names.view(np.uint8).reshape(-1, _VIDEO_BYTES)
            host = parallel.gather_to_host(host)
            keep = host.pop("valid").astype(bool)
            host["video"] = np.ascontiguousarray(host["video"]).view(f"S{_VIDEO_BYTES}")[:, 0].astype(str)
            parts.append({k: v[keep] for k, v in {**predictions, **host}.items()})
        p = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
        # Processes hold contiguous shares; put their interleaved batches back in stored (video, frame) order.
        order = np.lexsort((p["frame"], p["video"]))
        return {k: v[order] for k, v in p.items()}

    def run(self, variables, step: int, workdir: str | None = None) -> EvalResult:
        """Predicts, scores, and (process 0, with a workdir) writes eval/<step>/{metrics.json,predictions.csv};
        metrics.json holds the scores, and under "chance" those of trivial predictors on the same frames."""
        p = self.predict(variables)
        scores = metrics.abaw_metrics(p["au_prob"], p["au"], p["expr_prob"], p["expr"], p["va_pred"], p["va"])
        result = EvalResult(step=step, split=self.split, frames=len(p["frame"]),
                            scores={k: float(v) for k, v in scores.items()},
                            chance=metrics.chance_metrics(p["au"], p["expr"], p["va"]))
        if workdir is not None and jax.process_index() == 0:
            out_dir = os.path.join(workdir, "eval", str(step))
            os.makedirs(out_dir, exist_ok=True)
            write_predictions(os.path.join(out_dir, "predictions.csv"), p)
            _write_json(os.path.join(out_dir, "metrics.json"),
                        dict(step=step, split=self.split, frames=result.frames, **result.scores,
                             chance=result.chance))
        return result


def write_predictions(path: str, p: dict) -> None:
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
    """The arrays of a predictions.csv, as `Evaluator.predict` returns them."""
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


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def format_table(result: EvalResult) -> str:
    """The ABAW table of an evaluation, with the trivial predictors' scores beside it."""
    s, c = result.scores, result.chance
    zeros, ones, majority, mean = c["au_all_zeros"], c["au_all_ones"], c["expr_majority"], c["va_mean"]
    return "\n".join([
        f"ABAW2 metrics at step {result.step} on {result.split} ({result.frames} frames)",
        "         F1      TAcc    score          | chance",
        f"  AU     {s['au_f1']:.4f}  {s['au_tacc']:.4f}  S_AU   {s['s_au']:.4f}  | all-zeros F1 {zeros['au_f1']:.4f} "
        f"TAcc {zeros['au_tacc']:.4f}; all-ones F1 {ones['au_f1']:.4f} TAcc {ones['au_tacc']:.4f}",
        f"  EXPR   {s['expr_f1']:.4f}  {s['expr_tacc']:.4f}  S_EXPR {s['s_expr']:.4f}  | majority class F1 "
        f"{majority['expr_f1']:.4f} TAcc {majority['expr_tacc']:.4f}",
        f"  VA     CCC_V {s['ccc_v']:.4f}  CCC_A {s['ccc_a']:.4f}  S_VA {s['s_va']:.4f}  | mean prediction CCC_V "
        f"{mean['ccc_v']:.4f} CCC_A {mean['ccc_a']:.4f}",
    ])


def evaluate(config, workdir: str, step: int | None = None) -> EvalResult:
    """Restores a checkpoint of `workdir` (the latest, or `step`) and evaluates it on `config.eval.split`."""
    mesh = parallel.make_mesh()
    checkpointing.check_workdir_config(workdir, config, write=False)
    ckpt = checkpointing.Checkpointer(workdir, read_only=True)
    if step is None:
        step = ckpt.latest_step()
        if step is None:
            raise FileNotFoundError(f"{ckpt.directory}: no checkpoint to evaluate; train first (--mode=train)")
    model, optimizer, _ = train_state.make_model_and_optimizer(config)
    abstract = train_state.abstract_train_state(model, optimizer, config, parallel.replicated(mesh))
    state = ckpt.restore(step, abstract)
    ckpt.close()
    evaluator = Evaluator(model, config, resolve_data_dir(config.data), mesh)
    result = evaluator.run({"params": state.params, "batch_stats": state.batch_stats}, step, workdir)
    if jax.process_index() == 0:
        print(format_table(result), flush=True)
        print(f"wrote {os.path.join(workdir, 'eval', str(step))}/{{metrics.json,predictions.csv}}", flush=True)
    return result
