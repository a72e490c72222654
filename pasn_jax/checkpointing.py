"""One Orbax `CheckpointManager` saving the train state and the grain iterator together, and the workdir guard.

Layout of a workdir: `config.json` (the config that made it), `checkpoints/<step>/{state,data}` (Orbax; `data`
holds one grain iterator state per process), `tb/` (TensorBoard events), `eval/<step>/` (evaluation outputs).
Restarting in the same workdir resumes from the latest step with the identical next batch; a workdir made by an
incompatible config is refused.
"""

import json
import os

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp

# Keys that may differ between runs sharing a workdir: they change how long or how the run proceeds and logs,
# not what the checkpoint holds or which data it continues on.
_RESUMABLE_KEYS = ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                   "max_nonfinite_in_a_row", "data.worker_count", "data.eval_batch_size", "eval.",
                   "data.synthetic.cache_dir", "model.weights.")


# Keys added to the config after workdirs were made: a saved config without one had this value.
_ADDED_KEYS = {"task": "pasn"}


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


def check_workdir_config(workdir: str, config: ml_collections.ConfigDict, write: bool = True) -> None:
    """Refuses a config that cannot resume (or evaluate) this workdir; writes `workdir/config.json` on first use
    when `write`."""
    path = os.path.join(workdir, "config.json")
    current = _flatten(json.loads(config.to_json()))
    if os.path.exists(path):
        with open(path) as f:
            saved = _ADDED_KEYS | _flatten(json.load(f))
        differ = sorted(k for k in set(saved) | set(current)
                        if saved.get(k) != current.get(k) and not k.startswith(_RESUMABLE_KEYS))
        if differ:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ[:5])
            raise IncompatibleWorkdirError(
                f"{path}: this workdir was made by a different config ({shown}); "
                "use a new --workdir or the same config")
        return
    if write and jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(config.to_json(indent=2))
        os.replace(tmp, path)


class Checkpointer:
    """Train state + data iterator, saved and restored together under `workdir/checkpoints`."""

    def __init__(self, workdir: str, *, keep: int = 3, async_save: bool = True, read_only: bool = False):
        # A run killed mid-save leaves a *.orbax-checkpoint-tmp folder: the next writer removes it.
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                               enable_async_checkpointing=async_save,
                                               cleanup_tmp_directories=not read_only)
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, data_iterator) -> None:
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator)))

    def restore(self, step: int, abstract_state, data_iterator=None):
        """Restores the state (onto the shardings of `abstract_state`) and, if given, the iterator in place."""
        if step not in self._manager.all_steps():
            raise FileNotFoundError(f"{self.directory}: no checkpoint at step {step} "
                                    f"(available: {self.all_steps() or 'none'})")
        items = dict(state=ocp.args.StandardRestore(abstract_state))
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        return self._manager.restore(step, args=ocp.args.Composite(**items)).state

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
