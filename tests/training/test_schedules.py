"""Learning-rate schedules against hand-derived values."""

import math

import keras
import numpy as np
import pytest

from irevnet_tf.training import schedules


def test_step_decay_is_the_papers_schedule():
    schedule = schedules.WarmupStepDecay(0.1, (160_000, 320_000, 480_000))
    for step, expected in [(0, 0.1), (159_999, 0.1), (160_000, 0.01), (319_999, 0.01),
                           (320_000, 0.001), (480_000, 1e-4), (599_999, 1e-4)]:
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_step_decay_with_warmup_and_factor():
    schedule = schedules.WarmupStepDecay(0.8, (10, 20), decay_factor=0.2, warmup_steps=4)
    expected = {0: 0.2, 1: 0.4, 2: 0.6, 3: 0.8, 4: 0.8, 9: 0.8, 10: 0.16, 20: 0.032}
    for step, value in expected.items():
        assert float(schedule(step)) == pytest.approx(value, rel=1e-5)


def test_cosine_decay_with_warmup():
    schedule = schedules.WarmupCosineDecay(1.0, total_steps=110, warmup_steps=10)
    for step in range(0, 130, 7):
        if step < 10:
            expected = (step + 1) / 10
        else:
            expected = 0.5 * (1 + math.cos(math.pi * min(step - 10, 100) / 100))
        assert float(schedule(step)) == pytest.approx(expected, abs=1e-6)


def test_cosine_needs_steps_after_warmup():
    with pytest.raises(ValueError, match="total_steps"):
        schedules.WarmupCosineDecay(0.1, total_steps=5, warmup_steps=5)


@pytest.mark.parametrize("schedule", [
    schedules.WarmupStepDecay(0.1, (3, 6), 0.5, 2),
    schedules.WarmupCosineDecay(0.1, 20, 3)])
def test_schedules_serialise(schedule):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    steps = np.arange(25)
    np.testing.assert_allclose([float(restored(s)) for s in steps],
                               [float(schedule(s)) for s in steps])
