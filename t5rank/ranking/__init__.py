"""Learning-to-rank in pure JAX: losses, metrics, lambda weights, transformations.

Functions follow Rax's call convention (``fn(scores, labels, *, where=None,
...)`` on ``[..., list_size]`` arrays), so code moves between Rax and
``t5rank.ranking`` by changing the import. This package imports only JAX and
NumPy. The public names are re-exported from :mod:`t5rank`.
"""
