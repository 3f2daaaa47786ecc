"""Video inversion and null-text optimization on the `tiny` model (method.md sections 2 and 8).

The tiny UNet's output layer is scaled down so that DDIM inversion round-trips with random weights; the tests
check the mechanics (round trip, the null-text effect, loss per step, what moves) rather than a trained model's
quality. Reconstructions use target == source and per-frame attention, like the inversion itself.
"""

from __future__ import annotations

import pytest
import torch

from v2vz.api.job import EditOptions
from v2vz_engine.inversion import Inversion, ddim_invert, optimize_nulls
from v2vz_engine.schedule import DdimSchedule

SOURCE = "a rabbit standing in a green meadow"
RECONSTRUCT = dict(attention="per_frame", joint_groupnorm=False, null_early_stop=False, inversion="null-text")


def relative_error(z: torch.Tensor, reference: torch.Tensor) -> float:
    return ((z - reference).norm() / reference.norm()).item()


def reconstruct(pipeline, z0, options: EditOptions, inversion: Inversion | None = None) -> tuple[float, Inversion]:
    """Invert z0 (unless given the inversion), sample back with target == source; the error of the source branch."""
    if inversion is None:
        inversion, _ = pipeline.invert(z0, SOURCE, options)
    sampled = pipeline.sample(inversion, SOURCE, SOURCE, options, keep_source=True).latents
    return relative_error(sampled[: z0.shape[0]], z0), inversion


def plain_ddim(pipeline, z0, options: EditOptions) -> Inversion:
    """DDIM inversion with "" as every null: the baseline null-text improves on."""
    direct, _ = pipeline.invert(z0, SOURCE, options.replace(inversion="direct"))
    empty = pipeline.encode_prompt("")[0].float().expand(options.steps, -1, -1)
    return Inversion(direct.z_T, empty.clone())


@pytest.fixture(scope="module")
def z0(pipeline, clip_frames):
    return pipeline.encode_frames(clip_frames, EditOptions())


def test_ddim_inversion_round_trips_at_guidance_1(pipeline, z0):
    options = EditOptions(steps=20, guidance=1.0, **{**RECONSTRUCT, "inversion": "negative-prompt"})
    error, inversion = reconstruct(pipeline, z0, options)
    assert error < 0.1, error
    assert inversion.z_T.shape == z0.shape
    # z_T is noise-like: far from z_0.
    assert relative_error(inversion.z_T, z0) > 0.5


def test_inversion_keeps_every_latent_and_ends_in_z_T(pipeline, z0):
    schedule = DdimSchedule.from_scheduler(pipeline.model.scheduler, 5)
    text = pipeline.encode_prompt(SOURCE).expand(z0.shape[0], -1, -1)
    pipeline._install(EditOptions(**RECONSTRUCT), z0.shape[0], control=None)
    seen = []
    latents = ddim_invert(pipeline.predict_noise, schedule, z0, text, lambda step, total: seen.append((step, total)))
    assert len(latents) == 6 and latents[0] is z0
    assert seen == [(i, 5) for i in range(1, 6)]
    # Each latent is one inverse step of the previous one, with eps at the next timestep.
    t = schedule.timesteps[-1]
    with torch.no_grad():
        expected = schedule.inverse_step(pipeline.predict_noise(z0, t, text), t, z0)
    torch.testing.assert_close(latents[1], expected)


def test_null_text_beats_plain_inversion_and_improves_with_inner_steps(pipeline, z0):
    base = EditOptions(steps=10, null_lr=0.1, **RECONSTRUCT)
    plain, _ = reconstruct(pipeline, z0, base, plain_ddim(pipeline, z0, base))
    one, _ = reconstruct(pipeline, z0, base.replace(null_inner_steps=1))
    four, _ = reconstruct(pipeline, z0, base.replace(null_inner_steps=4))
    assert one < plain * 0.8, (plain, one)
    assert four < one * 0.8, (one, four)


def test_each_step_lowers_its_loss_and_only_the_null_moves(pipeline, z0):
    frames = z0.shape[0]
    schedule = DdimSchedule.from_scheduler(pipeline.model.scheduler, 8)
    options = EditOptions(steps=8, **RECONSTRUCT)
    pipeline._install(options, frames, control=None)
    source = pipeline.encode_prompt(SOURCE)
    empty = pipeline.encode_prompt("").clone()
    latents = ddim_invert(pipeline.predict_noise, schedule, z0, source.expand(frames, -1, -1))
    latents_before = [z.clone() for z in latents]
    params_before = {name: p.clone() for name, p in pipeline.model.unet.named_parameters()}
    text_before = {name: p.clone() for name, p in pipeline.model.text_encoder.named_parameters()}

    nulls, losses = optimize_nulls(
        pipeline.predict_noise,
        schedule,
        latents,
        source.expand(frames, -1, -1),
        empty,
        guidance=7.5,
        inner_steps=3,
        lr=1e-2,
        early_stop=False,
    )
    assert nulls.shape == (8, 77, empty.shape[-1]) and nulls.dtype == torch.float32
    assert losses.shape == (8, 2)
    assert bool((losses[:, 1] < losses[:, 0]).all()), losses
    # The embedding moved (by about lr per Adam step) and was warm-started: step 0 starts from "".
    assert (nulls[0] - empty[0].float()).abs().max() > 1e-3
    assert not torch.equal(nulls[0], nulls[-1])
    # Nothing else moved: UNet, text encoder, the input embedding and the inversion's latents.
    for name, p in pipeline.model.unet.named_parameters():
        assert torch.equal(p, params_before[name]) and p.grad is None, name
    for name, p in pipeline.model.text_encoder.named_parameters():
        assert torch.equal(p, text_before[name]), name
    torch.testing.assert_close(empty, pipeline.encode_prompt(""), rtol=0, atol=0)
    for z, before in zip(latents, latents_before, strict=True):
        assert torch.equal(z, before)


def test_one_null_is_shared_by_all_frames(pipeline, z0):
    inversion, _ = pipeline.invert(z0, SOURCE, EditOptions(steps=4, **RECONSTRUCT))
    assert inversion.nulls.shape[:2] == (4, 77)  # one (77, D) embedding per step, no frame axis


def test_early_stop_follows_the_published_threshold(pipeline, z0):
    """With a huge threshold every step stops after its first inner iteration: the after-loss equals one step."""
    from v2vz_engine import inversion as module

    options = EditOptions(steps=4, null_inner_steps=5, **{**RECONSTRUCT, "null_early_stop": True})
    original = module.early_stop_threshold
    module.early_stop_threshold = lambda step: float("inf")
    try:
        stopped, _ = pipeline.invert(z0, SOURCE, options)
        single, _ = pipeline.invert(z0, SOURCE, options.replace(null_inner_steps=1))
    finally:
        module.early_stop_threshold = original
    torch.testing.assert_close(stopped.nulls, single.nulls)
    assert module.early_stop_threshold(0) == pytest.approx(1e-5)
    assert module.early_stop_threshold(10) == pytest.approx(1e-5 + 10 * 2e-5)


def test_inversion_saves_and_loads(tmp_path, pipeline, z0):
    inversion, _ = pipeline.invert(z0, SOURCE, EditOptions(steps=3, **RECONSTRUCT))
    path = inversion.save(tmp_path / "cache" / "clip.inv")
    loaded = Inversion.load(path)
    assert torch.equal(loaded.z_T, inversion.z_T)
    assert torch.equal(loaded.nulls, inversion.nulls)
    assert torch.equal(loaded.step_losses, inversion.step_losses)
    assert loaded.trajectory is None
    assert loaded.meta == inversion.meta
    assert loaded.meta["source_prompt"] == SOURCE and loaded.meta["steps"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["clip.inv"]  # no temporary file left behind
    direct, _ = pipeline.invert(z0, SOURCE, EditOptions(steps=3))
    again = Inversion.load(direct.save(tmp_path / "direct.inv"))
    assert torch.equal(again.trajectory, direct.trajectory) and again.nulls is None and again.steps == 3
    assert again.meta["inversion"] == "direct"


def test_direct_and_negative_prompt_need_no_optimization(pipeline, z0):
    options = EditOptions(steps=3, **{**RECONSTRUCT, "inversion": "negative-prompt"})
    negative, timings = pipeline.invert(z0, SOURCE, options)
    assert negative.nulls is None and negative.step_losses is None and negative.trajectory is None
    assert set(timings) == {"inversion"} and negative.steps is None
    # It edits with the source prompt's embedding as the unconditional one, at every step.
    source = pipeline.encode_prompt(SOURCE)[0].float().expand(3, -1, -1)
    explicit = pipeline.sample(Inversion(negative.z_T, source.clone()), SOURCE, "a tiger", options).latents
    torch.testing.assert_close(pipeline.sample(negative, SOURCE, "a tiger", options).latents, explicit)
    direct, _ = pipeline.invert(z0, SOURCE, options.replace(inversion="direct"))
    assert direct.nulls is None and direct.trajectory.shape[0] == 4
    torch.testing.assert_close(direct.z_T, negative.z_T, rtol=0, atol=0)  # the same DDIM inversion


@pytest.mark.parametrize(("rule", "last"), [("published", 1e-2 * (1 - 9 / 100)), ("steps", 1e-2 * (1 - 9 / 20))])
def test_the_learning_rate_rule_reaches_adam(pipeline, z0, monkeypatch, rule, last):
    """10 steps: the published 1e-2 * (1 - i/100) ends at 0.91e-2, ours 1e-2 * (1 - i/20) at 0.55e-2."""
    seen: list[float] = []
    adam = torch.optim.Adam

    def spy(params, lr, **kwargs):
        seen.append(lr)
        return adam(params, lr=lr, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", spy)
    pipeline.invert(z0[:1], SOURCE, EditOptions(steps=10, null_lr_decay=rule, **RECONSTRUCT))
    assert len(seen) == 10 and seen[0] == pytest.approx(1e-2) and seen[-1] == pytest.approx(last)
