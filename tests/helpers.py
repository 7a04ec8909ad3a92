"""Shared test utilities: randomised weights and batch-norm statistics, weight extraction."""

import numpy as np


def randomize_batch_norms(model, seed=0):
    """Gives every batch norm non-trivial gamma, beta and moving statistics, like a trained
    model (fresh ones are the identity, which would hide mistakes in their handling)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        path = variable.path
        shape = tuple(variable.shape)
        if path.endswith("gamma"):
            variable.assign(rng.uniform(0.5, 1.5, shape))
        elif path.endswith("beta"):
            variable.assign(rng.uniform(-0.5, 0.5, shape))
        elif path.endswith("moving_mean"):
            variable.assign(rng.uniform(-0.3, 0.3, shape))
        elif path.endswith("moving_variance"):
            variable.assign(rng.uniform(0.5, 2.0, shape))


def bottleneck_weights(bottleneck):
    """The numpy weights of a Bottleneck, in the layout tests/reference.py expects."""
    def norm(layer):
        return tuple(np.array(v, np.float64) for v in (
            layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))

    weights = {
        "conv1": np.array(bottleneck.conv1.kernel, np.float64),
        "bn1": norm(bottleneck.bn1),
        "conv2": np.array(bottleneck.conv2.kernel, np.float64),
        "bn2": norm(bottleneck.bn2),
        "conv3": np.array(bottleneck.conv3.kernel, np.float64),
    }
    if bottleneck.preact_bn is not None:
        weights["preact_bn"] = norm(bottleneck.preact_bn)
    return weights
