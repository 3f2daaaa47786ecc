"""The step-count rules (step_rules.py) against tables worked out by hand from each formula (issue 13, part 1)."""

from __future__ import annotations

import pytest

from v2vz_engine.step_rules import cross_replace_cutoff, first_null_step, null_lr

# steps -> replaced steps at cross_replace 0.8. published: int(0.8 * (steps + 1)); nearest: round(0.8 * steps).
CUTOFF_08 = {
    1: (1, 1),  # int(1.6) = 1; round(0.8) = 1
    2: (2, 2),  # int(2.4); round(1.6)
    3: (3, 2),  # int(3.2); round(2.4)
    4: (4, 3),  # int(4.0); round(3.2)
    5: (4, 4),  # int(4.8); round(4.0)
    8: (7, 6),  # int(7.2); round(6.4)
    9: (8, 7),  # int(8.0); round(7.2)  (method.md: 0.8 of 9 -> 8, where rounding gives 7)
    10: (8, 8),  # int(8.8); round(8.0)
    13: (11, 10),  # int(11.2); round(10.4)
    50: (40, 40),  # int(40.8); round(40.0)
}


@pytest.mark.parametrize("steps", sorted(CUTOFF_08))
def test_cross_replace_cutoff_follows_each_formula(steps: int) -> None:
    published, nearest = CUTOFF_08[steps]
    assert cross_replace_cutoff(0.8, steps, "published") == published
    assert cross_replace_cutoff(0.8, steps, "nearest") == nearest


def test_the_published_cutoff_never_passes_the_last_step_and_refine_uses_its_own_fraction() -> None:
    assert [cross_replace_cutoff(1.0, s, "published") for s in (1, 5, 50)] == [1, 5, 50]  # int(steps + 1), capped
    assert [cross_replace_cutoff(0.4, s, "published") for s in (5, 9, 10, 50)] == [2, 4, 4, 20]  # int(0.4 (s+1))
    assert [cross_replace_cutoff(0.4, s, "nearest") for s in (5, 9, 10, 50)] == [2, 4, 4, 20]
    assert cross_replace_cutoff(0.0, 50, "published") == 0
    with pytest.raises(ValueError, match="cutoff rule"):
        cross_replace_cutoff(0.8, 10, "floor")  # type: ignore[arg-type]


# steps -> first step with the optimized null at null_start 0.5: the smallest i that is not < steps * 0.5.
FIRST_NULL_05 = {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 9: 5, 10: 5, 25: 13, 50: 25}


@pytest.mark.parametrize("steps", sorted(FIRST_NULL_05))
def test_first_null_step_is_the_published_ceiling(steps: int) -> None:
    assert first_null_step(0.5, steps) == FIRST_NULL_05[steps]
    assert all(i < steps * 0.5 for i in range(first_null_step(0.5, steps)))  # the published "" condition
    assert not first_null_step(0.5, steps) < steps * 0.5


def test_first_null_step_at_the_edges() -> None:
    assert first_null_step(0.0, 50) == 0  # the default: the optimized nulls at every step
    assert first_null_step(1.0, 7) == 7  # never
    assert first_null_step(0.5, 5) == 3 and round(0.5 * 5) == 2  # where banker's rounding went wrong


@pytest.mark.parametrize(
    ("step", "steps", "published", "scaled"),
    [
        (0, 50, 1e-2, 1e-2),
        (25, 50, 0.75e-2, 0.75e-2),  # equal at the published 50 steps ...
        (49, 50, 0.51e-2, 0.51e-2),
        (9, 10, 0.91e-2, 0.55e-2),  # ... not at 10: 1 - 9/100 against 1 - 9/20
        (4, 10, 0.96e-2, 0.8e-2),
        (99, 200, 0.01e-2, 0.7525e-2),
        (150, 200, 0.0, 0.625e-2),  # past 100 steps the published decay would be negative: it stops at 0
    ],
)
def test_null_text_learning_rate_follows_each_formula(step: int, steps: int, published: float, scaled: float) -> None:
    assert null_lr(1e-2, step, steps, "published") == pytest.approx(published, abs=1e-15)
    assert null_lr(1e-2, step, steps, "steps") == pytest.approx(scaled, abs=1e-15)
    with pytest.raises(ValueError, match="learning-rate decay"):
        null_lr(1e-2, step, steps, "linear")  # type: ignore[arg-type]
