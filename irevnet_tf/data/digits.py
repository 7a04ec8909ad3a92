"""The embedded default data set: 1,797 handwritten digits (8x8, 16 grey levels).

They are the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin and
Kaynak, 1998; CC BY 4.0), the copy that scikit-learn ships as `load_digits`, stored in
`digits.npz` so that the quickstart and the tests need no download and no extra package.
"""

import os

import numpy as np

from irevnet_tf import validation

_PATH = os.path.join(os.path.dirname(__file__), "digits.npz")
NUM_CLASSES = 10
MAX_VALUE = 16


def load_digits():
    """Returns `(images, labels)`: uint8 arrays of shape (1797, 8, 8) in [0, 16] and (1797,)."""
    with np.load(_PATH) as data:
        return data["images"], data["labels"].astype(np.int64)


def split_digits(holdout_fraction=0.2, seed=0):
    """A stratified split: `((train_images, train_labels), (holdout_images, holdout_labels))`.

    The same seed always gives the same split, so the held-out digits stay apart from
    training across runs and processes.
    """
    validation.check_number(holdout_fraction, "split_digits: `holdout_fraction`", 0.0, 1.0,
                            low_open=True, high_open=True)
    images, labels = load_digits()
    rng = np.random.default_rng(seed)
    holdout = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        holdout.extend(members[: int(round(holdout_fraction * len(members)))])
    mask = np.zeros(len(labels), bool)
    mask[holdout] = True
    return (images[~mask], labels[~mask]), (images[mask], labels[mask])
