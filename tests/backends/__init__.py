"""Tests across Keras backends: each runs TensorFlow, JAX and PyTorch in child processes."""
