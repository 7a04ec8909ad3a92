"""Tests on the Keras backends other than the test process's TensorFlow, and across them.

Two kinds (tests/conftest.py lists which run where):
- on the active backend, collected by every backend's run (`KERAS_BACKEND=tensorflow|jax|
  torch python -m pytest`): test_round_trips.py, test_fit.py, and each backend's
  memory-saving gradient (test_jax_gradient.py and test_jax_gradient_eager.py,
  test_torch_gradient.py, which skip themselves on the other backends);
- across backends, from the TensorFlow run: each backend in a child process, since Keras
  reads KERAS_BACKEND once per process (interchange, cross-backend Phi, JAX export, data
  parallelism, the TPU recipe).
"""
