"""Resident-set-size probes (Linux /proc) for measuring the peak memory of one piece of work.

The peak is read from the kernel's own high-water mark `VmHWM` after resetting it (writing
"5" to /proc/self/clear_refs, Linux >= 4.0): exact, and it costs nothing while the work runs.
Where that file cannot be written (some sandboxes), a thread samples `VmRSS` instead, which
can miss peaks shorter than its interval.

Freed memory that the C allocator keeps for reuse still counts as resident, so before a
measurement `release_free_memory` asks glibc to return it (`malloc_trim`); otherwise a
previous step's peak would already be part of the baseline and the measured step would
seem to need nothing.
"""

import contextlib
import ctypes
import threading
import time

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_bytes(field):
    with open(_STATUS, encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"{_STATUS} has no {field} line; a Linux /proc is needed.")


def current_rss_bytes():
    """The process's resident set size now."""
    return _status_bytes("VmRSS")


def peak_rss_bytes():
    """The process's peak resident set size since start or the last `reset_peak_rss`."""
    return _status_bytes("VmHWM")


def reset_peak_rss():
    """Resets `VmHWM` to the current RSS; returns False where the kernel does not allow it."""
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def release_free_memory():
    """Returns memory that glibc holds for reuse to the kernel; False without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


class _RSSSampler:
    """Samples VmRSS in a daemon thread and keeps the maximum."""

    def __init__(self, interval_seconds):
        self.interval_seconds = interval_seconds
        self.peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_bytes())
            time.sleep(self.interval_seconds)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())


class PeakMemory:
    """What `measure_peak` found: RSS before, peak RSS during, and how the peak was read."""

    def __init__(self):
        self.baseline_bytes = None
        self.peak_bytes = None
        self.method = None

    @property
    def increase_bytes(self):
        """Peak RSS during the work minus RSS just before it."""
        return self.peak_bytes - self.baseline_bytes


@contextlib.contextmanager
def measure_peak(method="hwm", sample_interval_seconds=0.001):
    """Context manager measuring the peak RSS of its body.

    Args:
        method: "hwm" (kernel high-water mark, falling back to sampling where it cannot be
            reset) or "sample" (a sampling thread).
        sample_interval_seconds: the sampling thread's interval.

    Yields a `PeakMemory`, filled in when the body ends.
    """
    if method not in ("hwm", "sample"):
        raise ValueError(f"measure_peak: `method` must be 'hwm' or 'sample', got {method!r}.")
    result = PeakMemory()
    release_free_memory()
    if method == "hwm" and reset_peak_rss():
        result.method = "hwm"
        result.baseline_bytes = current_rss_bytes()
        yield result
        result.peak_bytes = max(peak_rss_bytes(), result.baseline_bytes)
        return
    result.method = "sample"
    result.baseline_bytes = current_rss_bytes()
    with _RSSSampler(sample_interval_seconds) as sampler:
        yield result
    result.peak_bytes = sampler.peak
