"""Fresh Python processes for tests: one environment recipe and free local ports.

A child Python must import this checkout's irevnet_tf (not another installed copy), run with
TensorFlow quiet and on the CPU, and not inherit a multi-worker TF_CONFIG from the parent's
environment; every test that starts one takes its environment from `python_env`.
"""

import importlib.util
import os
import socket

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def python_env(pythonpath=None, **extra):
    """`os.environ` for a child Python: this checkout first on PYTHONPATH (or exactly
    `pythonpath` if given, e.g. "" for a process that must not see the checkout), TensorFlow
    logging at level 2, no GPU, no TF_CONFIG; then `extra` (a value of None removes the
    variable)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = (os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
                         if pythonpath is None else pythonpath)
    env.pop("TF_CONFIG", None)
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def require_backends(*backends):
    """Skips the calling test unless every Keras backend named is installed (TensorFlow
    always is): on a fresh `pip install -e ".[test]"` the cross-backend tests skip, naming
    the extra to install. Under CI (`CI=true`, set by the CI runner; .ci/run installs
    `.[test,jax,torch]`) a missing backend fails instead, so that CI cannot pass by skipping."""
    missing = [name for name in backends
               if name != "tensorflow" and importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = (f"needs the Keras backend(s) {', '.join(missing)}: "
               f"pip install -e '.[{','.join(missing)}]'")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_ports(count):
    """`count` distinct local TCP ports that were free a moment ago (all bound at once, so
    they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port():
    return free_ports(1)[0]
