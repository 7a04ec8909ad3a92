"""Tests on the Keras backends other than the test process's TensorFlow, and across them
(most run each backend in a child process, since Keras reads KERAS_BACKEND once)."""
