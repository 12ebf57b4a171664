"""Installs tfvae. `pip install .` for the package, `pip install ".[test]"` for the tests,
`pip install ".[benchmark]"` for the PyTorch reference of `benchmarks/run.py`."""

from setuptools import find_packages, setup

# The tested set: these versions install together on Python 3.11 (November 2026).
REQUIRES = [
    "tensorflow==2.21.*",
    "keras>=3.15.1,<4",
    # TFP imports tf-keras; the [tf] extra installs it. tfvae itself never uses it.
    "tensorflow-probability[tf]==0.25.*",
    "tensorflow-datasets==4.9.*",
    # tensorflow-datasets 4.9.10 needs it and does not declare it.
    "importlib_resources",
    # TensorFlow 2.21 no longer pulls in TensorBoard.
    "tensorboard",
    # LiteRT runs the exported .tflite files (tf.lite.Interpreter is deprecated).
    "ai-edge-litert==2.3.*",
    "matplotlib",
    "scikit-learn",
    "numpy",
]

EXTRAS = {
    # nbclient, nbformat and ipykernel execute the notebooks in the suite; hypothesis
    # drives the property tests of the losses; psutil measures memory growth.
    "test": [
        "pytest>=8",
        "ruff>=0.6",
        "nbclient",
        "nbformat",
        "ipykernel",
        "hypothesis>=6",
        "psutil",
    ],
    # The PyTorch reference of benchmarks/run.py (a CPU build). tfvae never imports it.
    "benchmark": ["torch==2.13.0"],
}

setup(
    name="tfvae",
    version="0.1.0",
    description="Variational autoencoders on Keras 3 and TensorFlow Probability",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfvae", "tfvae.*"]),
    python_requires=">=3.10",
    install_requires=REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tfvae=tfvae.cli:main"]},
    license="Apache-2.0",
)
