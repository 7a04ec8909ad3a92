"""Progress lines for long work: how much is done, how fast, how long is left.

Training reports each loop (`irevnet_tf.training.progress`); evaluation and the analyses use
`WorkProgress`, which logs lines in the same shape:

    evaluation at step 180: 2048/10000 images (20.5%)  412.3 images/s  19s left

Kept outside `training/` so that the analyses need not import the trainer.
"""

import time

from absl import logging


def format_duration(seconds):
    """`1h05m`, `3m07s` or `42s`."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class WorkProgress:
    """Logs `what: done/total unit (percent)  rate unit/s  time left` as work advances.

    Args:
        what: the work's name, first on each line.
        total: units of work in all (e.g. images).
        unit: the units' name.
        min_interval: seconds between lines (the last update always logs), so that fast
            work stays quiet and slow work speaks at a steady pace.
        clock: time source (for tests).
    """

    def __init__(self, what, total, unit="images", min_interval=10.0, clock=time.perf_counter):
        self.what, self.total, self.unit = what, int(total), unit
        self.min_interval = min_interval
        self._clock = clock
        self._start = self._last = clock()
        self.lines = 0

    def restart(self):
        """Starts the clock again (when the work begins later than the reporter's creation)."""
        self._start = self._last = self._clock()

    def update(self, done, detail=""):
        """Reports that `done` units are finished; returns the line logged, or None."""
        now = self._clock()
        if done < self.total and now - self._last < self.min_interval:
            return None
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = done / elapsed
        left = (self.total - done) / rate if rate > 0 else 0.0
        percent = 100.0 * done / max(self.total, 1)
        # Slow units read better as seconds each than as a fraction per second.
        speed = (f"{rate:.1f} {self.unit}/s" if rate >= 1 or not done
                 else f"{elapsed / done:.1f} s each")
        line = (f"{self.what}: {done}/{self.total} {self.unit} ({percent:.1f}%)  "
                f"{speed}  {format_duration(left)} left"
                + (f"  {detail}" if detail else ""))
        logging.info("%s", line)
        self.lines += 1
        return line
