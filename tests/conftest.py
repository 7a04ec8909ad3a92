"""Test set-up: the Keras backend, which tests run on it, quiet TensorFlow, two logical CPU
devices (for MirroredStrategy), fixed seeds.

Backends, in the manner of Keras' and keras-hub's own suites: the test run uses the Keras
backend that `KERAS_BACKEND` names (tensorflow by default), and the same test command runs
on each:

    python -m pytest                          # TensorFlow: every test
    KERAS_BACKEND=jax python -m pytest        # JAX: the backend-independent tests
    KERAS_BACKEND=torch python -m pytest      # PyTorch: the backend-independent tests

The backend-independent tests are the modules under `BACKEND_INDEPENDENT` (paths relative to
tests/). They use `keras.ops` and numpy only (`keras.ops.convert_to_numpy`, the numpy float64
reference of tests/reference.py), never TensorFlow, so they import and run on any backend.
On JAX and PyTorch nothing else is collected (`pytest_ignore_collect`): the other modules
test TensorFlow's own paths (SavedModel, tf.data, TensorFlow Serving, `tf.distribute`,
the trainer) and import TensorFlow at module level, which a JAX or PyTorch process must not
need, or (the rest of tests/backends) run every backend in child processes from the
TensorFlow run. The few checks inside a backend-independent module that need TensorFlow's own API
(e.g. `tf.function`, `tf.GradientTape`) carry `tests.helpers.tensorflow_only`, a `skipif`
on the backend, and import TensorFlow inside the test.

Every collected test in those modules also gets the `backend_independent` marker, so
`python -m pytest -m "backend_independent and not slow"` runs on TensorFlow exactly the
tests that the JAX and PyTorch runs collect.

Only on TensorFlow is TensorFlow imported here (for the logical-device split). On the other
backends the run behaves as if TensorFlow were not installed (`sys.modules["tensorflow"] =
None`, so `import tensorflow` raises ImportError): a backend-independent test that needs it
fails, and Keras' own optional uses of it (`keras.utils.set_random_seed` seeds TensorFlow
too when it can import it, 7 s here) are skipped as on a machine without it.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()

# Modules (or directories) of tests that run on every Keras backend, relative to tests/.
BACKEND_INDEPENDENT = (
    "backends/test_round_trips.py",
    "backends/test_fit.py",
    # Backend-specific, skipped (at module level) on the other backends' runs.
    "backends/test_jax_gradient.py",
    "backends/test_jax_gradient_eager.py",
    "backends/test_torch_gradient.py",
    "layers/test_layer_base.py",
    "layers/test_psi.py",
    "layers/test_injective_pad.py",
    "layers/test_fixed_point.py",
)

_TESTS = pathlib.Path(__file__).resolve().parent


def _relative(path):
    try:
        return pathlib.Path(path).resolve().relative_to(_TESTS)
    except ValueError:
        return None


def is_backend_independent(path):
    """Whether `path` (a test module or directory) is, or lies under, a backend-independent
    entry."""
    relative = _relative(path)
    if relative is None:
        return False
    return any(relative == pathlib.Path(entry) or pathlib.Path(entry) in relative.parents
               for entry in BACKEND_INDEPENDENT)


def _leads_to_backend_independent(path):
    """Whether directory `path` holds a backend-independent entry (tests/ itself does)."""
    relative = _relative(path)
    return relative is not None and any(
        relative == pathlib.Path(".") or relative in pathlib.Path(entry).parents
        for entry in BACKEND_INDEPENDENT)


def pytest_ignore_collect(collection_path, config):
    if BACKEND == "tensorflow":
        return None
    if collection_path.name == "conftest.py" and collection_path.parent == _TESTS:
        return None
    if is_backend_independent(collection_path):
        return None
    if collection_path.is_dir() and _leads_to_backend_independent(collection_path):
        return None
    if collection_path.is_file() and collection_path.parent == _TESTS and (
            not collection_path.name.startswith("test_")):
        return None  # tests/__init__.py, reference.py: imported, not collected.
    return True


def pytest_collection_modifyitems(config, items):
    for item in items:
        if is_backend_independent(item.path):
            item.add_marker(pytest.mark.backend_independent)


def pytest_report_header(config):
    return f"Keras backend: {BACKEND}"


# Workers of `-n auto` (pytest.ini): one per core the process may use, at most 4. Each worker
# holds a TensorFlow (or JAX, PyTorch) runtime of 1-3 GB and some tests start child
# processes of their own; more workers than 4 would trade memory for little (the longest
# test files then set the run's length).
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # Not on Linux.
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


if BACKEND != "tensorflow":
    if "tensorflow" in sys.modules:
        raise RuntimeError(f"tests/conftest.py: TensorFlow was imported before the {BACKEND} "
                           f"test run started; nothing on this backend may need it.")
    sys.modules["tensorflow"] = None
else:
    import tensorflow as tf

    # Two logical CPUs let MirroredStrategy run two replicas without a GPU. This must happen
    # before anything initialises the devices.
    _cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass


@pytest.fixture(autouse=True)
def _seed_and_reset():
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    keras.config.set_floatx("float32")
    keras.mixed_precision.set_global_policy("float32")
