"""Installs irevnet_tf: `pip install -e .` (add `.[test]` for the test suite, `.[jax]` or
`.[torch]` to run Keras on JAX or PyTorch)."""

from setuptools import find_packages, setup

setup(
    name="irevnet_tf",
    version="0.1.0",
    description="i-RevNet (ICLR 2018), the exactly invertible deep network, in TensorFlow/Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["irevnet_tf", "irevnet_tf.*"]),
    package_data={"irevnet_tf": ["data/*.npz"]},
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3",
        "tensorflow-datasets",
        "numpy",
        "absl-py",
        # The analysis figures (labelled image panels, the separation plot).
        "matplotlib",
    ],
    extras_require={
        "plots": [],  # Kept so that `pip install irevnet_tf[plots]` still works.
        "serving": ["tensorflow-serving-api"],
        "tensorboard": ["tensorboard"],
        # scikit-learn is only an independent reference in the analysis tests. pytest-xdist
        # runs the tests on every core (pytest.ini): most tests keep one core busy (tracing,
        # child processes starting), so two workers halve the run on a 2-core machine.
        # TensorFlow only: the JAX and PyTorch runs of the backend-independent tests add
        # `.[jax]` or `.[torch]` (tests/conftest.py, .ci/run).
        "test": ["pytest", "pytest-timeout", "pytest-xdist", "matplotlib", "pillow",
                 "tensorflow-serving-api", "scikit-learn"],
        # Keras on JAX (KERAS_BACKEND=jax): the CPU build (jaxlib's default wheels).
        "jax": ["jax", "jaxlib"],
        # Keras on PyTorch (KERAS_BACKEND=torch). Pinned to the release whose CPU-only wheel
        # (2.13.0+cpu) the package index of the project's machines serves: an unpinned
        # `torch` resolves to the newest default wheel, the CUDA build with several GB of
        # CUDA libraries that CPU machines never use.
        "torch": ["torch==2.13.0"],
    },
)
