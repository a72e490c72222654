"""What the training loop reports: console lines and TensorBoard scalars (process 0), and the window of step metrics
between two log lines."""

import time

import jax
import jax.numpy as jnp


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


fetches = 0  # calls of `fetch` in this process (a test holds the steady-state loop to one per log line)


def fetch(tree):
    """Device values -> host numpy: the training loop's one fetch point, counted in `fetches`."""
    global fetches
    fetches += 1
    return jax.device_get(tree)


_MAXIMA = ("nonfinite_in_a_row", "preempt")  # also kept as their maximum over the window


@jax.jit
def _accumulate(window, step_metrics):
    """The window's sums, maxima and last step's metrics with one more step's metrics added (on the device)."""
    if window is None:
        sums = jax.tree.map(lambda v: v.astype(jnp.float32), step_metrics)
        maxima = {k: step_metrics[k] for k in _MAXIMA}
    else:
        sums = jax.tree.map(lambda total, v: total + v.astype(jnp.float32), window["sums"], step_metrics)
        maxima = {k: jnp.maximum(window["maxima"][k], step_metrics[k]) for k in _MAXIMA}
    return {"sums": sums, "maxima": maxima, "last": step_metrics}


class MetricsWindow:
    """The step metrics since the last log line, summed on the device as the steps are dispatched: the host never
    waits for a step, and brings the window over once per log line (`summary`). The metrics named in `counted` are
    also summed since the window was made (`<name>_total`)."""

    def __init__(self, counted: tuple[str, ...] = ()):
        self._window = None
        self.steps = 0
        self._start = time.perf_counter()
        self.totals = {f"{k}_total": 0 for k in counted}

    def push(self, step_metrics) -> None:
        """Adds a dispatched step's metrics (device arrays) to the window, without waiting for them."""
        self._window = _accumulate(self._window, step_metrics)
        self.steps += 1

    def summary(self, batch_size: int) -> tuple[dict, dict, float]:
        """(mean of every metric over the window with images_per_s, the totals and the window's maxima
        `max_<name>` added, the last step's metrics, seconds per step), in one fetch; the window is emptied."""
        window = fetch(self._window)
        elapsed = time.perf_counter() - self._start
        mean = {k: float(v) / self.steps for k, v in window["sums"].items()}
        for total in self.totals:
            self.totals[total] += int(round(float(window["sums"][total.removesuffix("_total")])))
        mean["images_per_s"] = self.steps * batch_size / elapsed
        mean.update(self.totals)
        mean.update({f"max_{k}": float(v) for k, v in window["maxima"].items()})
        last, seconds_per_step = window["last"], elapsed / self.steps
        self._window, self.steps = None, 0
        return mean, last, seconds_per_step

    def restart_clock(self) -> None:
        """Called after work that must not count in images/s (checkpoints, evaluations): restarts the clock when no
        step is waiting to be logged."""
        if self.steps == 0:
            self._start = time.perf_counter()
