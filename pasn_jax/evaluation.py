"""What every task's evaluator shares: predicting a whole split on the mesh in every process, and the result and
files of an evaluation (`workdir/eval/<step>/`, or `workdir/eval/<step>/<split>/` for a split other than the one the
workdir evaluates while training)."""

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence

import jax
import numpy as np

from pasn_jax import faults, parallel, paths, workdir_config

_STRING_BYTES = 128  # string fields (video names) travel between processes as fixed-width bytes


@dataclasses.dataclass(frozen=True)
class EvalResult:
    step: int
    split: str
    frames: int  # examples scored
    scores: dict  # the task's metrics (logged to TensorBoard under eval/)
    chance: dict  # the same metrics of trivial predictors on the same examples
    images: dict = dataclasses.field(default_factory=dict)  # name -> uint8 [H, W, 3], logged to TensorBoard


def eval_dir(workdir: str, step: int, split: str | None = None) -> str:
    """`workdir/eval/<step>/` for the split the workdir evaluates while training (its config.json's eval.split),
    `workdir/eval/<step>/<split>/` for another: scoring the training split (`--mode=eval --config.eval.split=train`)
    never replaces the held-out scores of that step."""
    folder = paths.join(workdir, "eval", step)
    held_out = split is None or split == workdir_config.read(workdir)["eval"].get("split")
    return folder if held_out else paths.join(folder, split)


def predict_split(predict: Callable, variables, batches: Iterable[dict], mesh, host_keys: Sequence[str]) -> dict:
    """Runs `predict(variables, images)` (jitted over the mesh, replicated output) on every batch of this process's
    share of a split and returns, in every process, the predictions and the `host_keys` fields of all processes'
    examples whose `valid` is True, as host numpy arrays (batches in process order; string fields as str). The
    predictions stay on the devices until the last batch is dispatched, then come over in one fetch; the host
    fields of all processes in one gather."""
    predictions, local = [], []
    for number, batch in enumerate(batches):
        if number == 1:
            faults.kill_if_armed("eval")
        images = parallel.global_batch({"image": batch["image"]}, mesh)["image"]
        predictions.append(predict(variables, images))
        local.append({key: np.asarray(batch[key]) for key in (*host_keys, "valid")})
    predictions = jax.device_get(predictions)
    host, strings = {}, []
    for key in local[0]:
        value = np.stack([part[key] for part in local])  # [batches, local batch, ...]
        if value.dtype.kind in "US":
            strings.append(key)
            value = value.astype(f"S{_STRING_BYTES}").view(np.uint8).reshape(value.shape + (_STRING_BYTES,))
        host[key] = value
    # All processes' [batches, local batch, ...], stacked by process, in the predictions' order: batch by batch,
    # each batch in process order.
    shapes = {k: v.shape for k, v in host.items()}
    host = {k: np.swapaxes(v.reshape((-1,) + shapes[k]), 0, 1).reshape((-1,) + shapes[k][2:])
            for k, v in parallel.gather_to_host(host).items()}
    keep = host.pop("valid").astype(bool)
    for key in strings:
        host[key] = np.ascontiguousarray(host[key]).view(f"S{_STRING_BYTES}")[..., 0].astype(str)
    merged = {k: np.concatenate([p[k] for p in predictions]) for k in predictions[0]}
    return {k: v[keep] for k, v in {**merged, **host}.items()}


def write_json(path: str, obj) -> None:
    """Writes `obj` as JSON whole (pasn_jax/paths.py: a reader never sees half a file)."""
    paths.write_text(path, json.dumps(obj, indent=2))
