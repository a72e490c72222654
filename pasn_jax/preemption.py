"""Preemption (what a scheduler does before it stops a job): the first SIGTERM, SIGINT or SIGUSR1 (SLURM's
`--signal=USR1@90`) asks the training loop to checkpoint the current step and exit; a second one ends the process
at once (the signal's default action).

A single process stops at the step it is at. With several processes only some receive the signal: each process
feeds its flag into every train step (a `preempt` field of the batch), the step reduces it over all devices, and
every process reads the result with the step metrics of the next log line (pasn_jax/train_log.py): all agree on
the step they save.
"""

import os
import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Preempted(Exception):
    """Training stopped on request at `step` after committing a checkpoint of it to `path`."""

    def __init__(self, step: int, path: str, signal_name: str):
        super().__init__(f"preempted ({signal_name}): checkpoint of step {step} written to {path}; run the same "
                         f"command to resume")
        self.step, self.path = step, path


class PreemptionRequest:
    """Signal handlers for SIGNALS while the loop runs (a context manager): `requested` turns True at the first
    signal; the second restores the default action and raises the signal again."""

    def __init__(self):
        self.requested, self.signal_name, self._previous = False, "", {}

    def _handle(self, signum, frame):
        if self.requested:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested, self.signal_name = True, signal.Signals(signum).name

    def __enter__(self):
        for s in SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False
