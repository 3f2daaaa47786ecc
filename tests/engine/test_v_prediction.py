"""SD 2.x-style v-prediction (schedule.py): the step converts v to the clean latent and the noise exactly, a
zero-terminal-SNR schedule with trailing timesteps steps without dividing by its zero alpha, and the whole method runs
on the built-in `tiny-v` with the source branch exactly the clip's own under direct inversion."""

from __future__ import annotations

import pytest
import torch

from v2vz.api.job import EditOptions
from v2vz_engine.models import SCHEDULER_CONFIG, ddim_of, load_model
from v2vz_engine.pipeline import VideoEditPipeline
from v2vz_engine.schedule import DdimSchedule

SOURCE, TARGET = "a rabbit on grass", "a tiger on grass"


@pytest.fixture(scope="module")
def pipeline_v(model_cache) -> VideoEditPipeline:
    return VideoEditPipeline(load_model("tiny-v", "cpu", model_cache))


def test_a_v_step_is_the_epsilon_step_of_the_same_prediction():
    """v and eps describe one prediction: v = sqrt(a) eps - sqrt(1-a) x0. Steps from either agree."""
    eps_schedule = DdimSchedule.from_scheduler(ddim_of(SCHEDULER_CONFIG), 10)
    v_schedule = DdimSchedule.from_scheduler(ddim_of({**SCHEDULER_CONFIG, "prediction_type": "v_prediction"}), 10)
    assert v_schedule.timesteps == eps_schedule.timesteps  # SD 2.x 768 keeps SD's own spacing and offset
    z, eps = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.randn(2, 4, 8, 8, dtype=torch.float64)
    t = eps_schedule.timesteps[3]
    a = eps_schedule.alpha(t)
    x0 = (z - (1 - a) ** 0.5 * eps) / a**0.5
    v = a**0.5 * eps - (1 - a) ** 0.5 * x0
    assert torch.allclose(v_schedule.step(v, t, z), eps_schedule.step(eps, t, z), atol=1e-12)
    back = v_schedule.inverse_step(v, t, z)
    a_prev = eps_schedule.alpha_prev(t)
    x0_prev = a_prev**0.5 * z - (1 - a_prev) ** 0.5 * v  # converted at the latent's own level, as diffusers does
    assert torch.allclose(back, a**0.5 * x0_prev + (1 - a) ** 0.5 * (a_prev**0.5 * v + (1 - a_prev) ** 0.5 * z))


def test_a_zero_terminal_snr_schedule_steps_from_pure_noise(pipeline_v):
    schedule = DdimSchedule.from_scheduler(pipeline_v.model.scheduler, 10)
    assert pipeline_v.model.prediction_type == "v_prediction"
    assert schedule.timesteps[0] == 999 and schedule.alpha(999) == 0.0  # trailing, rescaled to zero SNR
    assert schedule.alpha_prev(schedule.timesteps[0]) == schedule.alpha(schedule.timesteps[1])
    z, v = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    stepped = schedule.step(v, 999, z)
    assert torch.isfinite(stepped).all()


@pytest.mark.parametrize("inversion", ["direct", "null-text"])
def test_the_method_runs_on_a_v_prediction_model(pipeline_v, clip_frames, inversion):
    options = EditOptions(steps=4, inversion=inversion)
    z0 = pipeline_v.encode_frames(clip_frames, options)
    inverted, _ = pipeline_v.invert(z0, SOURCE, options)
    sampled = pipeline_v.sample(inverted, SOURCE, TARGET, options, keep_source=True)
    assert torch.isfinite(sampled.latents).all()
    if inversion == "direct":
        assert torch.equal(sampled.latents[:4], z0)  # the source branch is the clip's own, exactly
    else:  # at zero terminal SNR z_T holds nothing of the clip but the model's prediction: only finite is promised
        assert inverted.nulls is not None and inverted.nulls.shape[0] == 4
    edited = pipeline_v.decode_latents(sampled.latents[4:])
    assert edited.shape == clip_frames.shape
    assert EditOptions.preset("published").replace(steps=2).validate() is None  # the published preset applies too
