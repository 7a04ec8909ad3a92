"""Installs irevnet_tf: `pip install -e .` (add `.[test]` for the test suite)."""

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
        # scikit-learn is only an independent reference in the analysis tests.
        "test": ["pytest", "pytest-timeout", "matplotlib", "pillow", "tensorflow-serving-api",
                 "scikit-learn"],
    },
)
