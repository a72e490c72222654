"""One Orbax `CheckpointManager` saving the train state (`workdir/checkpoints/<step>/state`) and a record of the
data position (`data`: the train stream's position is the step, pasn_jax/data/train_stream.py, so no iterator
state is needed and a workdir resumes with any number of input workers or devices, from any copy of the data).

Restarting in the same workdir resumes from the latest step with the identical next batch. A checkpoint that does
not restore is moved aside (renamed, never deleted) and the one before it is used; a save that fails is one error
naming the last committed checkpoint, which it leaves intact.
"""

import os
from collections.abc import Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from pasn_jax import faults, workdir_config



def read_variables(workdir: str, step: int | None = None) -> tuple[dict, int]:
    """({'params', 'batch_stats'} as host numpy arrays, step) of a workdir's checkpoint (the latest by default),
    read without building its model."""
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{ckpt.directory}: no checkpoint; train this workdir first")
        state = ckpt.restore(step, None)
    finally:
        ckpt.close()
    return {k: jax.tree.map(np.asarray, state[k]) for k in ("params", "batch_stats")}, step


def read_trained(workdir: str, build_model) -> tuple[ml_collections.ConfigDict, object, dict, int]:
    """(config, model, variables, step) of a workdir's latest checkpoint: its recorded config (dtype resolved as
    trained), the model `build_model(config)` makes of it and the variables of `read_variables`."""
    config = ml_collections.ConfigDict(workdir_config.read(workdir))
    workdir_config.resolve_dtype(workdir, config)
    variables, step = read_variables(workdir)
    return config, build_model(config), variables, step


def variables_like(workdir: str, abstract: Mapping) -> tuple[dict, int]:
    """(variables, step) of a workdir's latest checkpoint, checked against `abstract` (shapes of the variables a
    model expects: {'params', 'batch_stats'}): a missing or extra leaf, or one of another shape, is a ValueError
    naming it (the workdir was trained with another model)."""
    variables, step = read_variables(workdir)
    want = {jax.tree_util.keystr(p): leaf.shape for p, leaf in jax.tree_util.tree_leaves_with_path(abstract)}
    have = {jax.tree_util.keystr(p): np.shape(leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(variables)}
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            raise ValueError(f"config.init_from: {workdir} (step {step}) holds another model: {key} is "
                             f"{have.get(key, 'absent')} there, this config's model needs {want.get(key, 'none')}")
    return jax.tree.map(lambda leaf, like: np.asarray(leaf, like.dtype), variables, abstract), step


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, or none that restores; the message names the folder and step."""


class InjectedWriteFailure:
    """An object no checkpoint can write: put in a save's data record, it makes the save fail midway (the state
    item written, the data item not), as a full disk or a lost file system would (pasn_jax/faults.py)."""


class Checkpointer:
    """Train state + the data stream's position, saved and restored together under `workdir/checkpoints`."""

    def __init__(self, workdir: str, *, keep: int = 3, async_save: bool = True, read_only: bool = False):
        # A run killed mid-save leaves a *.orbax-checkpoint-tmp folder: the next writer removes it.
        # Reading: Orbax's own read_only mode warns on every open, so a reader is a manager that writes nothing
        # (no folder created, nothing deleted or cleaned, never asked to save).
        self._options = ocp.CheckpointManagerOptions(max_to_keep=None if read_only else keep, create=not read_only,
                                                     save_interval_steps=0 if read_only else 1,
                                                     enable_async_checkpointing=async_save and not read_only,
                                                     cleanup_tmp_directories=not read_only)
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self._manager = self._open()
        self._pending = None  # the step being written in the background

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(self.directory, options=self._options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def _failed(self, error: Exception) -> CheckpointError:
        step, self._pending = self._pending, None
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return CheckpointError(f"{self.directory}: writing the checkpoint of step {step} failed ({reason}); the "
                               f"last committed checkpoint, step {self._committed()}, is intact")

    def _committed(self) -> int | None:
        steps = [int(n) for n in os.listdir(self.directory) if n.isdigit()] if os.path.isdir(self.directory) else []
        return max(steps, default=None)

    def wait(self) -> None:
        """Waits for a save in flight to commit; a failed one raises CheckpointError."""
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            raise self._failed(e) from None
        self._pending = None

    def save(self, step: int, state) -> None:
        """Starts writing the state at `step` (in the background); an earlier save in flight is finished first."""
        self.wait()
        data = {"stream_position": int(step)}
        if faults.armed("save_error"):
            data["written"] = InjectedWriteFailure()
        self._pending = step
        try:
            self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                             data=ocp.args.JsonSave(data)))
        except Exception as e:
            raise self._failed(e) from None
        faults.kill_if_armed("async_save")
        if faults.armed("after_save"):
            self.wait()
            faults.kill()

    def restore(self, step: int, abstract_state):
        """Restores the state of `step` onto the shardings of `abstract_state` (None: as saved, a nested dict)."""
        if step not in self._manager.all_steps():
            raise FileNotFoundError(f"{self.directory}: no checkpoint at step {step} "
                                    f"(available: {self.all_steps() or 'none'})")
        return self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state))).state

    def restore_latest(self, abstract_state, log) -> tuple[object, int] | None:
        """(state, step) of the newest checkpoint that restores, or None when there is none. One that does not
        restore is reported with `log` in one line and moved aside (renamed `<step>.unreadable-<n>`, never deleted,
        so that the next save of that step does not collide with it); all unreadable -> CheckpointError."""
        moved = []
        while (step := self.latest_step()) is not None:
            try:
                return self.restore(step, abstract_state), step
            except Exception as e:  # Orbax, grain and file errors of many kinds
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                aside = self._move_aside(step)
                moved.append(aside)
                log(f"{self.directory}/{step}: checkpoint does not restore ({type(e).__name__}: {reason}); moved "
                    f"aside to {aside}, trying the one before")
        if moved:
            raise CheckpointError(f"{self.directory}: no checkpoint restores (moved aside: {', '.join(moved)}); "
                                  f"use a new --workdir or restore one by hand")
        return None

    def _move_aside(self, step: int) -> str:
        """Renames checkpoint `step` out of the manager's sight (process 0; the others wait) and reopens it."""
        folder = os.path.join(self.directory, str(step))
        n = 0
        while os.path.exists(f"{folder}.unreadable-{n}"):
            n += 1
        if jax.process_index() == 0:
            os.rename(folder, f"{folder}.unreadable-{n}")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"pasn_jax: checkpoint {step} moved aside")
        self._manager.close()
        self._manager = self._open()
        return f"{folder}.unreadable-{n}"

    def close(self) -> None:
        self.wait()
        self._manager.close()
