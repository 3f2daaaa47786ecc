"""How fractions of the schedule become step indices and step sizes: ours and the published code's.

Three settings of the method are written as fractions or decays of the step count. The published code turns them
into steps with formulas of its own (method.md sections 2 and 4); where ours differ, `--preset published` uses the
published ones (docs/method-differences.md says why the default keeps its own). Each rule is a pure function of
integers and floats so that a test can hold it to a table of step counts worked out from the formula.
"""

from __future__ import annotations

import math
from typing import Literal

CutoffRule = Literal["nearest", "published"]
LrDecay = Literal["steps", "published"]


def cross_replace_cutoff(fraction: float, steps: int, rule: CutoffRule = "nearest") -> int:
    """How many of the first edit steps use the source's cross-attention maps.

    "nearest": round(fraction * steps), the step count closest to the fraction asked for.
    "published": int(fraction * (steps + 1)), what the published code computes (0.8 of 9 steps -> 8, not 7);
    capped at `steps` since there are no more steps to replace.
    """
    if rule == "published":
        return min(steps, int(fraction * (steps + 1)))
    if rule == "nearest":
        return round(fraction * steps)
    raise ValueError(f"unknown cross-replace cutoff rule {rule!r}")


def first_null_step(null_start: float, steps: int) -> int:
    """The first edit step that uses the inversion's null embedding; earlier steps use the plain "" embedding.

    The published code uses "" while `i < steps * null_start` (null_uncond_ratio = -0.5): the first step with the
    null is the smallest i >= steps * null_start, i.e. the ceiling (3 of 5 steps at 0.5, where Python's banker's
    rounding would give 2). Both presets use this rule: rounding had no reason of its own.
    """
    return math.ceil(steps * null_start)


def null_lr(base: float, step: int, steps: int, rule: LrDecay = "steps") -> float:
    """Adam's learning rate for the null embedding of edit step `step` (0-based).

    "published": base * (1 - step / 100) whatever the step count, as published (at more than 100 steps this would
    turn negative; it stops at 0 there, which Adam accepts and which leaves the null where it is).
    "steps": base * (1 - step / (2 * steps)): the same decay to about half by the last step at any step count
    (equal to the published rule at its 50 steps).
    """
    if rule == "published":
        return base * max(0.0, 1 - step / 100)
    if rule == "steps":
        return base * (1 - step / (2 * steps))
    raise ValueError(f"unknown null-text learning-rate decay {rule!r}")
