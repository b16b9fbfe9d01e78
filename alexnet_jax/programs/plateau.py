"""Plateaus: of the validation error, where §5 divides the learning rate by 10, and of the
training loss at chance, which gets a warning.

`after_evaluation` is the §5 rule's bookkeeping (the best error and the count of
evaluations without improvement, which the checkpoint's `meta` carries across a resume);
train.py applies the division.

`ChanceLoss` warns about a run that has not started to learn: its training loss has stayed
at chance, within 1% of ln(num_classes), for a long stretch.

With the paper's init (§5: N(0, 0.01) weights, biases of 1 in conv2, conv4, conv5, fc6 and
fc7) a narrow net's loss can sit at ln(num_classes) for good: on Imagenette's `cpu` net
98% of fc7's ReLUs died within two epochs and the loss never left ln 10 in 40
(experiments/results/imagenette/). The warning names that likely cause, where the README
discusses it, and the command that shows a run's dead ReLUs; it never stops training.
`train.py` calls `ChanceLoss.check` at every log step.
"""
from __future__ import annotations

import math

from absl import logging

TOLERANCE = 0.01     # "at chance": within 1% of ln(num_classes)
MIN_STEPS = 1000     # how long the loss must stay there before the warning
README_SECTION = "Results, \"The paper's initialisation\""


def after_evaluation(meta: dict, error: float, patience: int) -> tuple[dict, bool]:
  """(meta updated with this evaluation's `error`, whether to divide the learning rate):
  yes at the `patience`-th evaluation in a row that does not beat the best."""
  best = meta["best_eval_error"]
  if best is None or error < best:
    return {**meta, "best_eval_error": error, "bad_evals": 0}, False
  bad = meta["bad_evals"] + 1
  if bad < patience:
    return {**meta, "bad_evals": bad}, False
  return {**meta, "bad_evals": 0}, True


class ChanceLoss:
  """Follows the logged training loss; warns once per stretch at chance of MIN_STEPS."""

  def __init__(self, num_classes: int, init_scheme: str = "paper", min_steps: int | None = None,
               diagnose: str = ""):
    """`diagnose`: a command the warning names that measures the run's layers."""
    self.num_classes, self.chance = num_classes, math.log(num_classes)
    self.init_scheme, self.diagnose = init_scheme, diagnose
    self.min_steps = MIN_STEPS if min_steps is None else min_steps
    self.since: int | None = None   # the first log step of the current stretch at chance
    self.warned = False

  def check(self, step: int, loss: float) -> str | None:
    """The warning (also logged) when the stretch at chance reaches min_steps, else None."""
    if abs(loss - self.chance) > TOLERANCE * self.chance:
      self.since, self.warned = None, False
      return None
    if self.since is None:
      self.since = step
    if self.warned or step - self.since < self.min_steps:
      return None
    self.warned = True
    if self.init_scheme in ("paper", "caffe"):
      cause = (f"the init: with the {self.init_scheme} init's N(0, 0.01) weights and positive "
               "biases a narrow net's signal drowns in the biases, and fc7's ReLUs can die "
               "for good; --config.model.init_scheme=torch starts at once")
    else:
      cause = "the learning rate (too high, or too low to move the init)"
    message = (
        f"the training loss has stayed within {TOLERANCE:.0%} of ln({self.num_classes})"
        f" = {self.chance:.3f}, chance, from step {self.since} to {step}: the net has not "
        f"started to learn. The likely cause is {cause} (README: {README_SECTION}). "
        + (f"`{self.diagnose}` shows each layer's signal and dead ReLUs. " if self.diagnose
           else "") + "Training goes on.")
    logging.warning(message)
    return message
