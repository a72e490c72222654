"""What the training loop reports: console lines and TensorBoard scalars (process 0), and the window of step metrics
between two log lines."""

import time

import jax
import numpy as np


class Logger:
    """Console (stdout) and TensorBoard (workdir/tb) logging on process 0."""

    def __init__(self, workdir: str):
        self._writer = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter
            self._writer = SummaryWriter(f"{workdir}/tb")

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(f"{prefix}/{k}", float(v), step)
            self._writer.flush()

    def images(self, step: int, images: dict, prefix: str) -> None:
        if self._writer is not None and images:
            for k, v in images.items():
                self._writer.add_image(f"{prefix}/{k}", v, step, dataformats="HWC")
            self._writer.flush()

    def info(self, msg: str) -> None:
        if jax.process_index() == 0:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def close(self):
        if self._writer is not None:
            self._writer.close()


class MetricsWindow:
    """The step metrics since the last log line. A step's metrics are fetched from the device one step late, when the
    next step has been dispatched, so that the host never waits for the step in flight. The metrics named in
    `counted` are also summed since the window was made (`<name>_total`)."""

    def __init__(self, counted: tuple[str, ...] = ()):
        self._fetched: list[dict] = []
        self._pending = None
        self.steps = 0
        self._start = time.perf_counter()
        self.totals = {f"{k}_total": 0 for k in counted}

    def push(self, step_metrics) -> dict | None:
        """Adds a dispatched step's metrics; returns the previous step's, now fetched (None at the first)."""
        fetched = self._fetch()
        self._pending = step_metrics
        self.steps += 1
        return fetched

    def _fetch(self) -> dict | None:
        if self._pending is None:
            return None
        fetched, self._pending = jax.device_get(self._pending), None
        self._fetched.append(fetched)
        for total in self.totals:
            self.totals[total] += int(fetched[total.removesuffix("_total")])
        return fetched

    def summary(self, batch_size: int) -> tuple[dict, dict, float]:
        """(mean of every metric over the window with images_per_s added, the last step's metrics, seconds per
        step), fetching the step in flight; the window is emptied."""
        self._fetch()
        elapsed = time.perf_counter() - self._start
        mean = {k: float(np.mean([m[k] for m in self._fetched])) for k in self._fetched[0]}
        mean["images_per_s"] = self.steps * batch_size / elapsed
        mean.update(self.totals)
        last, seconds_per_step = self._fetched[-1], elapsed / self.steps
        self._fetched.clear()
        self.steps = 0
        return mean, last, seconds_per_step

    def restart_clock(self) -> None:
        """Called after work that must not count in images/s (checkpoints, evaluations): restarts the clock when no
        step is waiting to be logged."""
        if self.steps == 0:
            self._start = time.perf_counter()
