"""Install t5rank: learning-to-rank fine-tuning for T5 in JAX (T5X plugin)."""

import setuptools

_DATA = [
  "seqio>=0.0.19,<0.1",
  "tensorflow>=2.16,<2.22",
  "tensorflow-text>=2.16,<2.22",
  "tensorflow-datasets>=4.9,<5",
  "gin-config>=0.5,<0.6",
  "sentencepiece>=0.1.99",
]

# The dependencies of T5X, AirIO and jestimator, from PyPI, at the versions this
# release is tested with. T5X, AirIO and jestimator themselves are not on PyPI:
# requirements-t5x.txt pins them to commits and installs them with --no-deps
# (their own requirements pull flax, optax, seqio and clu from GitHub HEAD):
#   pip install -e ".[t5x]" && pip install --no-deps -r requirements-t5x.txt
_T5X = [
  "jax==0.10.2",
  "jaxlib==0.10.2",
  "flax==0.12.8",
  "optax==0.2.8",
  "orbax-checkpoint==0.12.8",
  "chex==0.1.92",
  "seqio==0.0.20",
  "clu==0.0.12",
  "grain==0.2.12",
  "tensorflow==2.21.0",
  "tensorflow-text==2.21.1",
  "tensorflow-datasets==4.9.10",
  "tensorboard==2.21.0",
  "tensorstore==0.1.86",
  "fiddle==0.3.1",
  "gin-config==0.5.0",
  "absl-py>=1.4",
  "cached_property>=1.5",
  "jaxtyping>=0.2.25",
  "safetensors>=0.4",
]

# `t5rank-demo --compare`: the picture, per-query metrics and paired tests.
_COMPARE = ["matplotlib>=3.7", "ir-measures>=0.3.1", "scipy>=1.10"]

_TEST = [
  "pytest>=8",
  "pytest-xdist>=3.5",
  "hypothesis>=6.100",
  "pytrec-eval-terrier>=0.5.6",
  "ir-measures>=0.3.1",
  "matplotlib>=3.7",
  "rax==0.4.0",
  "ruff==0.17.6",
  # Hugging Face's T5 as an oracle for converted checkpoints (those tests skip
  # without it); torch is left to the platform (.ci/run takes the CPU build).
  "transformers>=4.40",
  "safetensors>=0.4",
]

setuptools.setup(
  name="t5rank",
  version="0.1.0",
  description="Learning-to-rank fine-tuning for T5 in JAX: ranking losses and "
  "metrics, seqio MS-MARCO tasks and T5X ranking models.",
  long_description=open("README.md", encoding="utf-8").read(),
  long_description_content_type="text/markdown",
  license="Apache 2.0",
  python_requires=">=3.11",
  # gin/ holds .gin files only (no __init__.py: a package named `gin` would
  # shadow gin-config); it installs as the data folder t5rank/gin, which
  # t5rank.main.gin_dir() finds with importlib.resources.
  packages=setuptools.find_packages(include=["t5rank", "t5rank.*"])
  + ["t5rank.tasks", "t5rank.gin"],
  package_dir={"t5rank.tasks": "tasks", "t5rank.gin": "gin"},
  package_data={
    "t5rank.gin": ["*.gin", "**/*.gin"],
    "t5rank.data": ["demo_corpus/*"],
  },
  include_package_data=True,
  install_requires=[
    "jax>=0.4.30,<0.11",
    "jaxlib>=0.4.30,<0.11",
    "numpy>=1.26",
  ],
  extras_require={
    "data": _DATA,
    "t5x": _DATA + _T5X,
    "compare": _COMPARE,
    "test": _TEST,
  },
  entry_points={
    "console_scripts": [
      "t5rank-train = t5rank.main:train",
      "t5rank-eval = t5rank.main:evaluate",
      "t5rank-demo = t5rank.main:demo",
      "t5rank-convert = t5rank.convert:main",
      "t5rank-rerank = t5rank.rerank:main",
    ],
  },
  classifiers=[
    "Intended Audience :: Science/Research",
    "License :: OSI Approved :: Apache Software License",
    "Programming Language :: Python :: 3",
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
    "Topic :: Text Processing :: Indexing",
  ],
)
