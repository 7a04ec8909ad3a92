"""The conversion tests run without torch: importing it fails in every one of them.

The checkpoints they read were written once by make_fixtures.py; blocking torch here
keeps a test from quietly depending on it again on a machine where it is installed.
"""

import sys

import pytest


@pytest.fixture(autouse=True)
def _no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError.
