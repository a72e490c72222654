"""One Orbax `CheckpointManager` saving the train state (`workdir/checkpoints/<step>/state`) and a record of the
data position (`data`: the train stream's position is the step, pasn_jax/data/train_stream.py, so no iterator
state is needed and a workdir resumes with any number of input workers or devices, from any copy of the data).

The folder is local, on a shared disk or on an object store (`gs://`, pasn_jax/paths.py). Restarting in the same
workdir resumes from the latest step with the identical next batch. Restoring is one decision for all processes:
process 0 names the step, every process restores it, and all learn each other's outcome. A checkpoint that is
recognisably damaged (files missing or truncated, metadata unreadable) is moved aside (renamed, never deleted) and
the one before it is used; any other error (permission, network, memory) stops the run and leaves every checkpoint
as it was. A save that fails is one error naming the last committed checkpoint, which it leaves intact.

Inference (evaluation, Predictor, the ensemble, tower weights, init_from) restores only the parameters and batch
statistics, onto the devices it has (`read_variables`), whatever the topology that wrote them.
"""

import json
import os
from collections.abc import Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from pasn_jax import faults, paths, workdir_config

VARIABLES = ("params", "batch_stats")  # what inference restores


def read_variables(workdir: str, step: int | None = None, sharding=None) -> tuple[dict, int]:
    """({'params', 'batch_stats'}, step) of a workdir's checkpoint (the latest by default), read without building its
    model and without the optimizer state: each array restored onto `sharding` (None: host numpy arrays, on this
    process's first device on the way), whatever the devices that wrote it."""
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{ckpt.directory}: no checkpoint; train this workdir first (--mode=train)")
        variables = ckpt.restore_variables(step, sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
    finally:
        ckpt.close()
    return (jax.tree.map(np.asarray, variables) if sharding is None else variables), step


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


RESTORED, DAMAGED, FAILED = range(3)  # a process's outcome of restoring a step, gathered by all

# tensorstore's status codes for bytes that are gone or cut short (a missing or truncated array file or manifest)
_DAMAGE_CODES = ("DATA_LOSS", "OUT_OF_RANGE", "NOT_FOUND")


def damaged(error: BaseException) -> bool:
    """True when `error` (or an error it came from) says a checkpoint's files are damaged: a file missing or cut
    short, metadata that does not parse, an item absent. Anything else (permission, network, memory, a model of
    another shape) is not the checkpoint's fault."""
    while error is not None:
        if isinstance(error, (FileNotFoundError, json.JSONDecodeError)):
            return True
        if isinstance(error, KeyError) and "was not found in the checkpoint" in str(error):
            return True
        if isinstance(error, ValueError) and str(error).startswith(_DAMAGE_CODES):
            return True
        error = error.__cause__ or error.__context__
    return False


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"


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
        folder = paths.join(workdir, "checkpoints")
        self.directory = folder if paths.is_remote(folder) else os.path.abspath(folder)
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
        """The newest step whose folder is complete (on an object store: holds Orbax's commit marker)."""
        folder = paths.path(self.directory)
        if not folder.exists():
            return None
        remote = paths.is_remote(self.directory)
        return max((int(p.name) for p in folder.iterdir()
                    if p.name.isdigit() and (not remote or (p / "commit_success.txt").exists())), default=None)

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

    def _check_step(self, step: int) -> None:
        if step not in self._manager.all_steps():
            raise FileNotFoundError(f"{self.directory}: no checkpoint at step {step} "
                                    f"(available: {self.all_steps() or 'none'})")
        if faults.armed("restore_error"):
            raise PermissionError(13, "Permission denied (injected)", f"{self.directory}/{step}")
        # The tree's metadata first: without it Orbax reports a pytree mismatch rather than a missing file.
        metadata = paths.path(self.directory, str(step), "state", "_METADATA")
        if not metadata.is_file():
            raise FileNotFoundError(f"{metadata}: missing")
        json.loads(metadata.read_text())  # JSONDecodeError when cut short

    def restore(self, step: int, abstract_state):
        """Restores the state of `step` onto the shardings of `abstract_state`. Read by Orbax's item handler, which
        holds no barrier: a process that fails here returns at once, and restore_latest's processes agree after."""
        self._check_step(step)
        handler = ocp.StandardCheckpointHandler()
        try:
            return handler.restore(paths.path(self.directory, str(step), "state"),
                                   args=ocp.args.StandardRestore(abstract_state))
        finally:
            handler.close()

    def restore_variables(self, step: int, sharding) -> dict:
        """{'params', 'batch_stats'} of `step` onto `sharding` (each array whole on its devices), the optimizer
        state left unread: shapes and dtypes from the checkpoint's metadata, not from the sharding that wrote it."""
        self._check_step(step)
        folder = paths.path(self.directory, str(step), "state")
        handler = ocp.PyTreeCheckpointHandler()
        try:
            tree = handler.metadata(folder).tree
            target = {k: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree[k])
                      for k in VARIABLES}
            return handler.restore(folder, args=ocp.args.PyTreeRestore(
                item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
        finally:
            handler.close()

    def restore_latest(self, abstract_state, log) -> tuple[object, int] | None:
        """(state, step) of the newest checkpoint that restores, or None when there is none; one decision for all
        processes. Process 0 names the step; every process restores it; all learn every outcome. Damaged on any
        process (`damaged`): reported with `log` in one line, moved aside (renamed `<step>.unreadable-<n>`, never
        deleted, so that the next save of that step does not collide with it) and the one before tried; all
        damaged -> CheckpointError. Any other error on any process: CheckpointError, every checkpoint left as it
        was."""
        moved = []
        while (step := self._agreed(self.latest_step())) is not None:
            state, error = None, None
            try:
                state = self.restore(step, abstract_state)
            except Exception as e:  # Orbax, tensorstore and file errors of many kinds
                error = e
            outcome = RESTORED if error is None else DAMAGED if damaged(error) else FAILED
            outcomes = self._gathered(outcome)
            if set(outcomes) == {RESTORED}:
                return state, step
            where = f"{self.directory}/{step}"
            if FAILED in outcomes:
                kept = "not a damaged checkpoint: every checkpoint is left as it was; fix the cause and run again"
                if outcome == FAILED:
                    raise CheckpointError(f"{where}: restoring failed ({_reason(error)}); {kept}") from error
                others = ", ".join(str(i) for i, o in enumerate(outcomes) if o == FAILED)
                raise CheckpointError(f"{where}: restoring failed on process {others} (its error says why); {kept}")
            aside = self._move_aside(step)
            moved.append(aside)
            why = _reason(error) if error is not None else "damaged as another process read it"
            log(f"{where}: checkpoint does not restore ({why}); moved aside to {aside}, trying the one before")
        if moved:
            raise CheckpointError(f"{self.directory}: no checkpoint restores (moved aside: {', '.join(moved)}); "
                                  f"use a new --workdir or restore one by hand")
        return None

    @staticmethod
    def _agreed(step: int | None) -> int | None:
        """Process 0's `step`, on every process."""
        if jax.process_count() == 1:
            return step
        agreed = int(multihost_utils.broadcast_one_to_all(np.int64(-1 if step is None else step)))
        return None if agreed < 0 else agreed

    @staticmethod
    def _gathered(outcome: int) -> list[int]:
        """Every process's `outcome`, in process order."""
        if jax.process_count() == 1:
            return [outcome]
        return [int(x) for x in np.ravel(multihost_utils.process_allgather(np.int32(outcome)))]

    def _move_aside(self, step: int) -> str:
        """Renames checkpoint `step` out of the manager's sight (process 0; the others wait) and reopens it."""
        folder = paths.path(self.directory, str(step))
        n = 0
        if jax.process_index() == 0:
            while folder.with_name(f"{step}.unreadable-{n}").exists():
                n += 1
            folder.rename(folder.with_name(f"{step}.unreadable-{n}"))
        if jax.process_count() > 1:
            n = int(multihost_utils.broadcast_one_to_all(np.int64(n)))
            multihost_utils.sync_global_devices(f"pasn_jax: checkpoint {step} moved aside")
        self._manager.close()
        self._manager = self._open()
        return f"{self.directory}/{step}.unreadable-{n}"

    def close(self) -> None:
        self.wait()
        self._manager.close()
