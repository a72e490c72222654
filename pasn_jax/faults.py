"""Fault injection for the reliability tests (tests/test_faults.py, tests/test_restore.py): the environment variable
PASN_JAX_FAULT = `POINT:N` makes the process die by SIGKILL (or, for `save_error` and `restore_error`, fail its write
or read) the N-th time (1-based) it reaches POINT; `POINT:N@P` arms it in process P only (a host-local fault).
Points: `start` (training about to run its first step of this process, before any new checkpoint), `step` (a step
dispatched, its computation in flight), `async_save` (a checkpoint being written in the background), `after_save`
(a checkpoint committed), `eval` (inside an evaluation), `save_error` (a checkpoint write that fails midway),
`restore_error` (a checkpoint read refused: permission denied). Unset in normal runs: one dictionary lookup per
point.
"""

import os
import signal

import jax

_counts: dict[str, int] = {}


def armed(point: str) -> bool:
    """True the N-th time `point` is reached when PASN_JAX_FAULT is `point:N` (in process P for `point:N@P`)."""
    spec = os.environ.get("PASN_JAX_FAULT")
    if not spec:
        return False
    name, _, count = spec.partition(":")
    count, _, process = count.partition("@")
    if name != point or (process and int(process) != jax.process_index()):
        return False
    _counts[point] = _counts.get(point, 0) + 1
    return _counts[point] == int(count or 1)


def kill() -> None:
    """Dies at once (SIGKILL: no handler, no cleanup, like a lost machine)."""
    os.kill(os.getpid(), signal.SIGKILL)


def kill_if_armed(point: str) -> None:
    """Dies at once when `point` is armed."""
    if armed(point):
        kill()
