"""Readable training progress: one line per T5X stats period, with time left.

T5X writes a train summary every ``stats_period`` steps as one long line of
every metric. `ReportProgress` is a T5X train action (T5X calls it after each
stats period with that summary) that logs the few numbers a person watching
the run wants::

  step 200/600 (33%): loss 0.8123, 6.10 steps/s, about 1m 06s left

The rate behind "left" is the wall clock since the first report (so it counts
evaluations and checkpoints as well as steps; the first report, which holds
compilation, uses T5X's own steps/s). Bind it in a run's gin file; T5X calls
train actions only when metrics are computed in the train loop's thread::

  train_script.train:
    stats_period = 50
    concurrent_metrics = False
    actions = {'TRAIN': [@t5rank.models.progress.ReportProgress()]}
  t5rank.models.progress.ReportProgress.total_steps = %TRAIN_STEPS
"""

from collections.abc import Callable
from collections.abc import Mapping
import time
from typing import Any

from absl import logging
from t5x import trainer as trainer_lib


def _value(metric: Any) -> float | None:
  """A float from a summary entry (a clu value with `.value`, or a number)."""
  value = getattr(metric, "value", metric)
  try:
    return float(value)
  except (TypeError, ValueError):
    return None


def format_seconds(seconds: float) -> str:
  """Seconds as minutes and seconds, or hours and minutes when long.

  >>> format_seconds(66.2), format_seconds(7300), format_seconds(4)
  ('1m 06s', '2h 01m', '0m 04s')
  """
  seconds = max(0, int(round(seconds)))
  if seconds >= 3600:
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
  return f"{seconds // 60}m {seconds % 60:02d}s"


class ReportProgress(trainer_lib.BaseAction):
  """Logs step, loss, steps/s and time left after each stats period.

  Attributes:
    total_steps: the run's last step (`TRAIN_STEPS`).
    log: where the line goes (absl's `logging.info` by default).
  """

  def __init__(
    self, total_steps: int, log: Callable[..., None] = logging.info
  ) -> None:
    if not isinstance(total_steps, int) or total_steps < 1:
      raise ValueError(
        f"ReportProgress: total_steps={total_steps!r}; expected a positive int "
        "(bind it to %TRAIN_STEPS)"
      )
    self.total_steps = total_steps
    self.log = log
    self._start: tuple[float, int] | None = None

  def run(
    self,
    train_state: Any,
    metrics_by_task: Mapping[str, Mapping[str, Any]],
  ) -> bool:
    """Logs one line; never asks T5X to stop."""
    step = int(train_state.step)
    now = time.time()
    metrics = metrics_by_task.get("train", {})
    loss = _value(metrics.get("loss"))
    steps_per_second = _value(metrics.get("timing/steps_per_second"))
    if self._start is not None and step > self._start[1]:
      rate = (step - self._start[1]) / max(now - self._start[0], 1e-9)
    else:
      rate = steps_per_second
      self._start = (now, step)
    parts = [
      f"step {step}/{self.total_steps} ({100 * step // self.total_steps}%)"
    ]
    if loss is not None:
      parts.append(f"loss {loss:.4f}")
    if steps_per_second is not None:
      parts.append(f"{steps_per_second:.2f} steps/s")
    if rate and step < self.total_steps:
      left = format_seconds((self.total_steps - step) / rate)
      parts.append(f"about {left} left")
    self.log("%s", ": ".join([parts[0], ", ".join(parts[1:])]).rstrip(": "))
    return False
