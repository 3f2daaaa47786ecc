"""The hand-written DDIM schedule against the method's formulas and diffusers' own DDIM step."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from v2vz_engine.models import SCHEDULER_CONFIG
from v2vz_engine.schedule import DdimSchedule


def make(steps: int = 50) -> tuple[DdimSchedule, DDIMScheduler]:
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    return DdimSchedule.from_scheduler(scheduler, steps), scheduler


def test_published_timesteps_and_alphas():
    schedule, scheduler = make(50)
    assert schedule.timesteps[:3] == (981, 961, 941)
    assert schedule.timesteps[-1] == 1
    assert schedule.steps == 50 and schedule.stride == 20
    # set_alpha_to_one=False: the alpha before the last step is alphas_cumprod[0], not 1.
    assert schedule.alpha_prev(1) == float(scheduler.alphas_cumprod[0])
    assert schedule.alpha_prev(981) == float(scheduler.alphas_cumprod[961])
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    expected = torch.cumprod(1 - betas, 0)
    assert abs(schedule.alpha(981) - float(expected[981])) < 1e-6


def test_step_matches_diffusers_ddim():
    schedule, scheduler = make(50)
    torch.manual_seed(0)
    z, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    for t in (981, 501, 21, 1):
        ours = schedule.step(eps, t, z)
        theirs = scheduler.step(eps, t, z, eta=0.0).prev_sample
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_inverse_step_follows_the_method_formula():
    schedule, scheduler = make(50)
    torch.manual_seed(1)
    z, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = 21
    a_prev, a_t = float(scheduler.alphas_cumprod[1]), float(scheduler.alphas_cumprod[21])
    x0 = (z - (1 - a_prev) ** 0.5 * eps) / a_prev**0.5
    expected = a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps
    torch.testing.assert_close(schedule.inverse_step(eps, t, z), expected)


def test_step_undoes_inverse_step_with_the_same_noise():
    schedule, _ = make(10)
    torch.manual_seed(2)
    z, eps = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.randn(2, 4, 8, 8, dtype=torch.float64)
    for t in schedule.timesteps:
        torch.testing.assert_close(schedule.step(eps, t, schedule.inverse_step(eps, t, z)), z)
