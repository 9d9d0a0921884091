"""Which keyword arguments a ranking function takes, read from its signature.

Transformations and trainers pass optional arguments (`key`, `segments`,
`rank_fn`, `cutoff_fn`) only to functions that name them, so plain Rax-style
functions work unchanged. Functions wrapped with `functools.wraps` report
their wrapped signature; `functools.partial` keeps the rest of it.

>>> import functools
>>> def plain(scores, labels, *, where=None): ...
>>> def random(scores, labels, *, where=None, key=None): ...
>>> takes_argument(plain, "key"), takes_argument(random, "key")
(False, True)
>>> takes_argument(functools.partial(random, where=None), "key")
True
"""

from collections.abc import Callable
import inspect
from typing import Any


def takes_argument(fn: Callable[..., Any], name: str) -> bool:
  """True when `fn`'s signature names the parameter `name`.

  `**kwargs` does not count (the function may not use it), and a callable
  without a readable signature takes nothing.

  Args:
    fn: a loss, metric or other callable.
    name: the parameter name, e.g. "key".
  """
  try:
    parameters = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False
  return name in parameters
