"""How long a job has left: durations as 12m05s, and a progress line with an ETA for conversions."""

import sys
import time

PROGRESS_SECONDS = 10.0  # a long job prints where it is at most this often


def duration(seconds: float) -> str:
    """12m05s, or 1h02m past an hour."""
    seconds = int(max(seconds, 0))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Prints `<what>: done/total (percent), rate, ETA` at most every `every` seconds, and once at the end when it
    printed before (a conversion of a few seconds stays quiet)."""

    def __init__(self, what: str, total: int, *, every: float = PROGRESS_SECONDS, out=None):
        self.what, self.total, self.every, self.out = what, total, every, out or sys.stderr
        self.start = self.last = time.perf_counter()
        self.done, self.printed = 0, False

    def _line(self, now: float) -> str:
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (f"{self.what}: {self.done}/{self.total} records ({100 * self.done / max(1, self.total):.0f}%), "
                f"{rate:.0f} records/s, ETA {duration(eta)}")

    def step(self, count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self.last >= self.every:
            print(self._line(now), file=self.out, flush=True)
            self.last, self.printed = now, True

    def finish(self) -> None:
        if self.printed:
            print(f"{self.what}: {self.done} records in {duration(time.perf_counter() - self.start)}",
                  file=self.out, flush=True)
