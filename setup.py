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

# T5X, AirIO and jestimator are not published on PyPI; they install from their
# public repositories. Their other needs come from PyPI in versions known to work.
_T5X = [
    "t5x @ git+https://github.com/google-research/t5x",
    "airio @ git+https://github.com/google/airio",
    "jestimator @ git+https://github.com/google-research/jestimator",
    "flax>=0.10,<0.13",
    "optax>=0.2.4,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "chex>=0.1.87",
    "clu>=0.0.12",
    "grain>=0.2.12",
    "tensorstore>=0.1.70",
    "fiddle>=0.3.1",
    "jaxtyping",
    "cached_property",
    "tensorboard>=2.16,<2.22",
]

_TEST = [
    "pytest>=8",
    "pytest-xdist>=3.5",
    "hypothesis>=6.100",
    "pytrec-eval-terrier>=0.5.6",
    "ir-measures>=0.3.1",
    "rax==0.4.0",
]

setuptools.setup(
    name="t5rank",
    version="0.1.0",
    description="Learning-to-rank fine-tuning for T5 in JAX: ranking losses and "
    "metrics, seqio MS-MARCO tasks and T5X ranking models.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache 2.0",
    python_requires=">=3.10",
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
        "test": _TEST,
    },
    entry_points={
        "console_scripts": [
            "t5rank-train = t5rank.main:train",
            "t5rank-eval = t5rank.main:evaluate",
            "t5rank-demo = t5rank.main:demo",
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
