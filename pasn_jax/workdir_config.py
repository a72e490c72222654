"""A workdir and the config that made it: `config.json` is written on first use, and a config that cannot resume
(or evaluate) the workdir is refused with the keys that differ.

Layout of a workdir: `config.json`, `checkpoints/<step>/{state,data}` (Orbax, pasn_jax/checkpointing.py),
`tb/` (TensorBoard events), `eval/<step>/` (evaluation outputs; `eval/<step>/<split>/` for a split other than
the one training evaluates).
"""

import json

import jax
import ml_collections

from pasn_jax import paths

# Keys that may differ between runs sharing a workdir: they change how long or how the run proceeds and logs,
# not what the checkpoint holds or which data it continues on.
_RESUMABLE_KEYS = ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                   "max_nonfinite_in_a_row", "data.worker_count", "data.eval_batch_size", "eval.",
                   "data.synthetic.cache_dir", "model.weights.", "model.prior_from", "predict.",
                   "data.synthetic.test_videos",  # test videos come after train and val: they change neither
                   "model.kernels")  # how the towers' layers compute, not their parameters


# Keys added to the config after workdirs were made: a saved config without one had this value (when the current
# config has the key).
_ADDED_KEYS = {"task": "pasn", "data.skip_bad_records": False, "optim.name": "sgd", "data.fold": -1,
               "data.fold_seed": 0, "data.subjects": "", "data.sources": "", "init_from": "",
               "data.synthetic.expr_keep": 1.0}
# Groups of keys added later that matter only when another added key says so (the synthetic external sets are read
# only when data.sources names them): a saved config without them had the current values.
_ADDED_GROUPS = ("data.external.",)


class IncompatibleWorkdirError(ValueError):
    pass


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def check(workdir: str, config: ml_collections.ConfigDict, write: bool = True) -> None:
    """Refuses a config that cannot resume (or evaluate) this workdir; writes `workdir/config.json` on first use
    when `write`."""
    path = paths.path(workdir) / "config.json"
    current = _flatten(json.loads(config.to_json()))
    if path.exists():
        saved = ({k: v for k, v in _ADDED_KEYS.items() if k in current}
                 | {k: v for k, v in current.items() if k.startswith(_ADDED_GROUPS)}
                 | _flatten(json.loads(path.read_text())))
        differ = sorted(k for k in set(saved) | set(current)
                        if saved.get(k) != current.get(k) and not k.startswith(_RESUMABLE_KEYS))
        if differ:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ[:5])
            raise IncompatibleWorkdirError(
                f"{path}: this workdir was made by a different config ({shown}); "
                "use a new --workdir or the same config")
        return
    if write and jax.process_index() == 0:
        paths.makedirs(workdir)
        paths.write_text(path, config.to_json(indent=2))


def resolve_dtype(workdir: str, config: ml_collections.ConfigDict) -> str:
    """Sets `model.dtype` 'auto' to a dtype: the one the workdir was trained in when it was (so that a workdir is
    evaluated as it was trained, on any platform), else bfloat16 on a GPU/TPU and float32 on a CPU (parameters,
    optimizer state and losses stay float32). Returns a note for the log, or ''."""
    if config.model.dtype != "auto":
        return ""
    path = paths.path(workdir) / "config.json"
    platform = jax.default_backend()
    if path.exists():
        recorded = json.loads(path.read_text())["model"]["dtype"]
        config.model.dtype = recorded
        default = "float32" if platform == "cpu" else "bfloat16"
        return f"model.dtype auto: {recorded}, as this workdir was trained" + (
            f" (on {platform} a new run would use {default})" if recorded != default else "")
    config.model.dtype = "float32" if platform == "cpu" else "bfloat16"
    return f"model.dtype auto: {config.model.dtype} on {platform}"


def read(workdir: str) -> dict:
    """The config a workdir was made with (`config.json`), as a plain dict."""
    path = paths.path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {workdir} is not a workdir of pasn_jax.main")
    return {"task": _ADDED_KEYS["task"], **json.loads(path.read_text())}
