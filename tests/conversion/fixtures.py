"""The committed checkpoint fixtures of the conversion tests (written by make_fixtures.py).

Reading them needs no torch: the checkpoints are files, the expected weights are
regenerated from their numpy seed (and checked against the digest recorded when torch
wrote them), and the release's outputs were computed by torch once and stored as .npz.
"""

import collections
import json
import os

import numpy as np

from tests.conversion import make_fixtures
from tests.conversion import release_reference as ref

DATA = make_fixtures.DATA
IMAGENET_LIKE = make_fixtures.IMAGENET_LIKE
CIFAR_LIKE = make_fixtures.CIFAR_LIKE
TINY = make_fixtures.TINY
# The release's Phi and logits against TF's: relative max error, |got - want|_max /
# |want|_max. The reference is float64; float32 arithmetic (and a Phi quantised on a
# 2^-16 grid or finer) stays orders of magnitude below this.
RELATIVE_TOLERANCE = 1e-4
# The release's normalisation of pixels in [0, 255] (ImageNet's), as stated independently of
# irevnet_tf (its data/info.py holds the same numbers).
IMAGENET_MEAN_STD = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))

ReleaseFixture = collections.namedtuple(
    "ReleaseFixture", "path state arch metadata reference dropout_rate")


def release_pixels(images, mean=IMAGENET_MEAN_STD[0], std=IMAGENET_MEAN_STD[1]):
    """Pixels in [0, 255] units whose normalisation by the release's (ImageNet's) mean/std
    is `images`, the normalised inputs the release's torch model saw: a converted model
    carries that normalisation and takes pixels."""
    return (np.asarray(images, np.float64) * np.asarray(std) + np.asarray(mean)).astype(
        np.float32)


def path(name):
    """The fixture file `name` under tests/conversion/data; fails if it is not there."""
    full = os.path.join(DATA, name)
    if not os.path.isfile(full):
        raise FileNotFoundError(f"fixture {full} is missing: rerun "
                                "`python -m tests.conversion.make_fixtures` (needs torch).")
    return full


def release(name):
    """A reduced release checkpoint: its path, numpy state, architecture, reference outputs."""
    with open(path("release_fixtures.json"), encoding="utf-8") as handle:
        metadata = json.load(handle)[name]
    arch_name = metadata["architecture"]
    arch = make_fixtures.ARCHITECTURES[arch_name]
    state = ref.random_state_dict(ref.release_entries(arch), seed=metadata["seed"])
    if not metadata["counters"]:
        state = collections.OrderedDict(
            (k, v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    # The state is regenerated from its seed; the digest proves it is the state torch saved
    # (numpy's random streams are stable, but a change would otherwise look like a bug).
    assert make_fixtures.state_digest(state) == metadata["digest"], (
        f"the numpy state of fixture {name} differs from the one saved: rerun "
        "`python -m tests.conversion.make_fixtures`.")
    reference = None
    reference_path = os.path.join(DATA, f"release_{name}_reference.npz")
    if os.path.exists(reference_path):
        with np.load(reference_path) as data:
            reference = {key: data[key] for key in data.files if key != "metadata"}
    return ReleaseFixture(path(f"release_{name}.pth"), state, arch, metadata, reference,
                          make_fixtures.DROPOUT.get(arch_name, 0.0))


def refusal_state(name):
    """The numpy state a refusal fixture was written from (names and shapes matter)."""
    return make_fixtures.refusal_states()[name]


def full_listing_state():
    return make_fixtures.full_listing_state(DATA)


def expected_arrays(name):
    """An .npz of expected values: OrderedDict in the order of its `names` entry."""
    with np.load(path(name)) as data:
        return collections.OrderedDict((str(key), data[str(key)]) for key in data["names"])


def relative_max_error(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def assert_relative_close(got, want, tolerance=RELATIVE_TOLERANCE, what="values"):
    error = relative_max_error(got, want)
    assert error <= tolerance, f"{what}: relative max error {error:.3g} > {tolerance:g}"
