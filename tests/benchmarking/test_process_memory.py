"""Tests of the RSS probes: a known allocation must show up in the measured peak."""

import numpy as np
import pytest

from irevnet_tf.benchmarking import process_memory

MIB = 1024 * 1024


def test_current_and_peak_rss_are_plausible():
    current = process_memory.current_rss_bytes()
    assert 10 * MIB < current < 64 * 1024 * MIB
    assert process_memory.peak_rss_bytes() >= current


@pytest.mark.parametrize("method", ["hwm", "sample"])
def test_peak_sees_a_freed_allocation(method):
    """256 MiB written and freed inside the body: the peak includes it, the end does not."""
    with process_memory.measure_peak(method, sample_interval_seconds=0.0005) as peak:
        block = np.ones(256 * MIB // 8)  # touches every page
        block.sum()
        del block
    assert peak.method in ("hwm", "sample")
    assert 240 * MIB <= peak.increase_bytes <= 400 * MIB, peak.increase_bytes / MIB
    assert process_memory.current_rss_bytes() < peak.baseline_bytes + 64 * MIB


def test_measure_peak_rejects_unknown_method():
    with pytest.raises(ValueError, match="method"):
        with process_memory.measure_peak("guess"):
            pass
