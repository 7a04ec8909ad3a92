"""Trained-like batch-norm values for fresh models, in plain Keras (no backend's own API), so
that the benchmarks and the tests on every Keras backend randomise models the same way.

Fresh batch norms are the identity (gamma 1, beta 0, mean 0, variance 1), which hides
mistakes in their handling; `randomize_batch_norms` gives them values like a trained model's.
"""

import numpy as np


def randomize_batch_norms(model, seed=1, shift_std=0.1):
    """Random batch-norm gamma and moving variance in [0.5, 1.5], and beta and moving mean
    ~ N(0, shift_std^2), like a trained model's."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        name = variable.path.rsplit("/", 1)[-1]
        shape = tuple(variable.shape)
        if name in ("gamma", "moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, shape).astype(variable.dtype))
        elif name in ("beta", "moving_mean"):
            variable.assign(rng.normal(0.0, shift_std, shape).astype(variable.dtype))
