"""Tests of the T5X train action that logs readable progress."""

import types

import pytest

pytest.importorskip("t5x")

from t5rank.models import progress  # noqa: E402


class _Clock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def _state(step):
  return types.SimpleNamespace(step=step)


def _summary(loss, steps_per_second):
  scalar = lambda v: types.SimpleNamespace(value=v)  # clu's Scalar
  return {
    "train": {
      "loss": scalar(loss),
      "timing/steps_per_second": scalar(steps_per_second),
    }
  }


def test_one_line_per_report_with_step_loss_speed_and_time_left(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(progress.time, "time", clock)
  lines = []
  action = progress.ReportProgress(600, log=lambda fmt, msg: lines.append(msg))
  # The first report (after compiling) takes T5X's rate: 500 steps at 5/s.
  assert action.run(_state(100), _summary(1.25, 5.0)) is False
  # Then the wall clock since the first report: 100 steps in 50 s -> 2/s,
  # evaluations included; 400 steps left -> 200 s.
  clock.now += 50
  action.run(_state(200), _summary(0.75, 4.0))
  clock.now += 200
  action.run(_state(600), _summary(0.5, 4.0))
  assert lines == [
    "step 100/600 (16%): loss 1.2500, 5.00 steps/s, about 1m 40s left",
    "step 200/600 (33%): loss 0.7500, 4.00 steps/s, about 3m 20s left",
    "step 600/600 (100%): loss 0.5000, 4.00 steps/s",
  ]


def test_missing_metrics_leave_their_part_out():
  lines = []
  action = progress.ReportProgress(10, log=lambda fmt, msg: lines.append(msg))
  action.run(_state(5), {})
  assert lines == ["step 5/10 (50%)"]


@pytest.mark.parametrize("total", [0, -3, 2.5, None])
def test_total_steps_must_be_a_positive_int(total):
  with pytest.raises(ValueError, match="total_steps"):
    progress.ReportProgress(total)


def test_module_doctests_pass():
  import doctest  # pylint: disable=g-import-not-at-top

  result = doctest.testmod(progress)
  assert result.attempted and not result.failed
