"""FlowEdit on latents (v2vz_engine.flowedit) against an independent oracle written here from the paper's algorithm.

The oracle has its own loop, its own classifier-free guidance (two transformer calls, not one batched call) and
takes its schedule from diffusers' FlowMatchEulerDiscreteScheduler, so it shares no code with the engine; both
call the same tiny, randomly initialised diffusers WanTransformer3DModel and draw noise from generators with the
same seed in the order the engine documents.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

from v2vz.api.errors import Cancelled
from v2vz_engine.flowedit import (
    FlowEditSettings,
    blend_outside,
    draw_step_noise,
    flow_sigmas,
    flow_timesteps,
    flowedit,
    flowedit_plan,
    flowedit_start,
    flowedit_step,
    velocity,
)

SHAPE = (1, 16, 3, 6, 8)  # (B, C, F, h, w)
TEXT = (1, 7, 32)  # (B, tokens, text_dim)
TOLERANCE = 1e-4  # float noise of batched versus separate transformer calls over a few steps (seen: ~1e-6)


@pytest.fixture(scope="module")
def transformer() -> WanTransformer3DModel:
    torch.manual_seed(0)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
    )
    return model.eval()


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {
        "source": torch.randn(SHAPE, generator=gen),
        "source_text": torch.randn(TEXT, generator=gen),
        "target_text": torch.randn(TEXT, generator=gen),
        "negative_text": torch.randn(TEXT, generator=gen),
    }


@torch.no_grad()
def oracle_flowedit(model, x_src, src_text, tar_text, neg_text, settings: FlowEditSettings, seed: int):
    """FlowEdit as the paper writes it (Algorithm 1 plus the n_min sampling tail), step by step."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=settings.shift)
    scheduler.set_timesteps(settings.steps)
    sigmas, timesteps = scheduler.sigmas, scheduler.timesteps
    generator = torch.Generator().manual_seed(seed)
    T, n_max, n_min, n_avg = settings.steps, settings.n_max, settings.n_min, settings.n_avg

    def guided(x, i, text, scale):
        t = timesteps[i].expand(x.shape[0])
        cond = model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        uncond = model(hidden_states=x, timestep=t, encoder_hidden_states=neg_text, return_dict=False)[0]
        return uncond + scale * (cond - uncond)

    z_edit = x_src.clone()
    x_tar = None
    for i in range(T):
        if T - i > n_max:  # the first T - n_max steps are skipped
            continue
        t_i, t_next = sigmas[i], sigmas[i + 1]
        if T - i > n_min:
            v_delta = torch.zeros_like(x_src)
            for _ in range(n_avg):
                noise = torch.randn(x_src.shape, generator=generator)
                z_src = (1 - t_i) * x_src + t_i * noise
                z_tar = z_edit + z_src - x_src
                v_tar = guided(z_tar, i, tar_text, settings.target_guidance)
                v_src = guided(z_src, i, src_text, settings.source_guidance)
                v_delta += (v_tar - v_src) / n_avg
            z_edit = z_edit + (t_next - t_i) * v_delta
        else:
            if i == T - n_min:  # SDEdit-style: the coupled point with fresh noise
                noise = torch.randn(x_src.shape, generator=generator)
                x_tar = z_edit + ((1 - t_i) * x_src + t_i * noise) - x_src
            x_tar = x_tar + (t_next - t_i) * guided(x_tar, i, tar_text, settings.target_guidance)
    return z_edit if n_min == 0 else x_tar


def run_engine(transformer, inputs, settings, seed, **kwargs):
    return flowedit(
        transformer,
        inputs["source"],
        inputs["source_text"],
        inputs["target_text"],
        inputs["negative_text"],
        settings,
        torch.Generator().manual_seed(seed),
        **kwargs,
    )


ORACLE_CASES = {
    "n_avg1_nmin0_full": FlowEditSettings(steps=6, n_max=6, n_min=0, n_avg=1, source_guidance=2.5, target_guidance=6),
    "n_avg3_nmin2": FlowEditSettings(steps=7, n_max=5, n_min=2, n_avg=3, source_guidance=3.0, target_guidance=7.5),
    "n_max_below_steps": FlowEditSettings(steps=10, n_max=4, n_min=0, n_avg=2, source_guidance=1.5, target_guidance=5),
}


@pytest.mark.parametrize("name", list(ORACLE_CASES))
def test_flowedit_agrees_with_the_oracle(transformer, inputs, name):
    settings = ORACLE_CASES[name]
    ours = run_engine(transformer, inputs, settings, seed=7)
    theirs = oracle_flowedit(
        transformer,
        inputs["source"],
        inputs["source_text"],
        inputs["target_text"],
        inputs["negative_text"],
        settings,
        seed=7,
    )
    assert ours.shape == inputs["source"].shape and ours.dtype == inputs["source"].dtype
    torch.testing.assert_close(ours, theirs, rtol=0, atol=TOLERANCE)
    # The comparison can fail: the edit moves the latents well beyond the tolerance, and other noise changes it.
    assert (ours - inputs["source"]).abs().max() > 100 * TOLERANCE
    other_noise = run_engine(transformer, inputs, settings, seed=8)
    assert (other_noise - theirs).abs().max() > 100 * TOLERANCE


@pytest.mark.parametrize("n_avg", [1, 2])
def test_source_equal_to_target_returns_the_source_exactly(transformer, inputs, n_avg):
    """Same prompt and guidance: the coupled points coincide bit for bit (z_tar = z_src + (z - x_src) with z = x_src),
    the two velocities come from identical calls, so the step is dt * 0 and z never leaves x_src."""
    settings = FlowEditSettings(steps=8, n_max=6, n_min=0, n_avg=n_avg, source_guidance=4.0, target_guidance=4.0)
    text = inputs["source_text"]
    result = flowedit(
        transformer,
        inputs["source"],
        text,
        text.clone(),
        inputs["negative_text"],
        settings,
        torch.Generator().manual_seed(3),
    )
    assert torch.equal(result, inputs["source"])


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"n_min": 5, "n_max": 5}, "n_min"),
        ({"n_min": 6, "n_max": 5}, "n_min"),
        ({"n_max": 51}, "n_max"),
        ({"n_min": -1}, "n_min"),
        ({"n_avg": 0}, "n_avg"),
        ({"n_avg": 33}, "n_avg"),
        ({"source_guidance": 0.5}, "source guidance"),
        ({"target_guidance": 31.0}, "target guidance"),
        ({"target_guidance": float("nan")}, "target guidance"),
        ({"steps": 0, "n_max": 0}, "steps"),
        ({"steps": 1001}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"shift": 0.0}, "shift"),
        ({"shift": 25.0}, "shift"),
    ],
)
def test_problem_gives_one_line(changes, word):
    settings = dataclasses.replace(FlowEditSettings(), **changes)
    problem = settings.problem()
    assert problem and "\n" not in problem and word in problem
    with pytest.raises(ValueError, match=word):
        flowedit_plan(settings)


def test_defaults_and_edge_values_are_fine():
    assert FlowEditSettings().problem() == ""
    edges = FlowEditSettings(steps=1, n_max=1, n_min=0, n_avg=32, source_guidance=1, target_guidance=30, shift=20)
    assert edges.problem() == ""


@pytest.mark.parametrize(("steps", "shift"), [(50, 3.0), (50, 5.0), (28, 1.0), (7, 2.5), (1, 3.0), (1000, 3.0)])
def test_sigma_schedule_is_diffusers_bit_for_bit(steps, shift):
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(steps)
    sigmas = flow_sigmas(steps, shift)
    assert sigmas.shape == (steps + 1,) and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert torch.equal(sigmas, scheduler.sigmas)
    assert torch.equal(flow_timesteps(steps, shift), scheduler.timesteps)


def test_plan_skips_the_first_steps_and_samples_the_last_n_min():
    plan = flowedit_plan(FlowEditSettings(steps=10, n_max=6, n_min=2, n_avg=3))
    assert [step.index for step in plan] == [4, 5, 6, 7, 8, 9]
    assert [step.phase for step in plan] == ["edit"] * 4 + ["sample"] * 2
    assert [step.draws for step in plan] == [3, 3, 3, 3, 1, 0]
    sigmas = flow_sigmas(10, 3.0)
    assert plan[0].sigma == sigmas[4].item() and plan[-1].sigma_next == 0.0


def test_cancel_stops_within_one_step(transformer, inputs):
    settings = FlowEditSettings(steps=8, n_max=6, source_guidance=2, target_guidance=5)
    reported: list[tuple[int, int]] = []
    report = lambda done, total: reported.append((done, total))  # noqa: E731
    with pytest.raises(Cancelled, match="FlowEdit"):
        run_engine(transformer, inputs, settings, seed=1, progress=report, cancel=lambda: len(reported) >= 2)
    assert reported == [(1, 6), (2, 6)]  # asked before step 3, so step 3 never ran


def test_progress_counts_the_steps_that_run(transformer, inputs):
    settings = FlowEditSettings(steps=9, n_max=5, n_min=1, source_guidance=2, target_guidance=5)
    reported: list[tuple[int, int]] = []
    run_engine(transformer, inputs, settings, seed=1, progress=lambda d, t: reported.append((d, t)))
    assert reported == [(done, 5) for done in range(1, 6)]


def test_step_api_is_the_loop_flowedit_runs(transformer, inputs):
    """The per-step form a windowed caller uses gives flowedit()'s result exactly, including a no-op write-back."""
    settings = FlowEditSettings(steps=7, n_max=5, n_min=2, n_avg=2, source_guidance=2, target_guidance=6)
    expected = run_engine(transformer, inputs, settings, seed=5)
    generator = torch.Generator().manual_seed(5)
    state = flowedit_start(
        inputs["source"], inputs["source_text"], inputs["target_text"], inputs["negative_text"], settings
    )
    for step in flowedit_plan(settings):
        noise = draw_step_noise(step, SHAPE, generator)
        state = flowedit_step(transformer, state, step, noise)
        state = dataclasses.replace(state, latents=state.latents.clone())  # what a caller's blend writes back
    assert torch.equal(state.latents, expected)
    with pytest.raises(ValueError, match="noise draws"):
        flowedit_step(transformer, state, flowedit_plan(settings)[0], [])


def test_velocity_batches_guidance_like_two_calls(transformer, inputs):
    x, t = inputs["source"], 600.0
    cond_text, neg_text = inputs["target_text"], inputs["negative_text"]

    def call(text):
        stamp = torch.tensor([t])
        return transformer(hidden_states=x, timestep=stamp, encoder_hidden_states=text, return_dict=False)[0]

    cond, uncond = call(cond_text), call(neg_text)
    guided = velocity(transformer, x, t, cond_text, neg_text, 5.0)
    torch.testing.assert_close(guided, uncond + 5.0 * (cond - uncond), rtol=0, atol=1e-5)
    assert torch.equal(velocity(transformer, x, t, cond_text, None, 1.0), cond)  # guidance 1: the conditional call
    shorter_negative = neg_text[:, :4]  # a different text length cannot share the batch: two calls
    two_calls = velocity(transformer, x, t, cond_text, shorter_negative, 5.0)
    torch.testing.assert_close(two_calls, call(shorter_negative) + 5.0 * (cond - call(shorter_negative)))
    with pytest.raises(ValueError, match="negative"):
        velocity(transformer, x, t, cond_text, None, 5.0)


def test_blend_outside_keeps_the_source_outside_the_matte(inputs):
    source = inputs["source"]
    edit = source + torch.randn(SHAPE, generator=torch.Generator().manual_seed(9))
    mask = torch.zeros(SHAPE[2:])
    mask[:, :3] = 1.0
    mask[:, 3] = 0.5
    blended = blend_outside(edit, source, mask)
    assert torch.equal(blended[..., :3, :], edit[..., :3, :])
    assert torch.equal(blended[..., 4:, :], source[..., 4:, :])
    torch.testing.assert_close(blended[..., 3, :], (edit[..., 3, :] + source[..., 3, :]) / 2)
    assert torch.equal(blend_outside(edit, source, mask[None, None]), blended)
    with pytest.raises(ValueError, match="does not fit"):
        blend_outside(edit, source, torch.ones(2, 1, 3, 6, 8))
