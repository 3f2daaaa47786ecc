"""Direct inversion (direct.py) on `tiny`: the source branch is the inversion trajectory, the edit branch is left
alone, 3 then 2 frame groups per UNet call, and cached re-prompts and windows with anchors behave as cold runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2vz.api.job import EditJob, EditOptions
from v2vz_daemon.inversion_cache import InversionCache
from v2vz_engine import media
from v2vz_engine.direct import sample_direct
from v2vz_engine.inversion import Inversion, ddim_invert
from v2vz_engine.pipeline import AnchorLink
from v2vz_engine.run import run_job
from v2vz_engine.schedule import DdimSchedule
from v2vz_engine.spatial_regularization import PromptControl

from .test_windows import moving_ball_frames, png, write_lossless_clip

SOURCE, TARGET = "a rabbit standing in a green meadow", "a tiger standing in a snowy meadow"
DIRECT = EditOptions(steps=5, inversion="direct")


def relative_error(z: torch.Tensor, reference: torch.Tensor) -> float:
    return ((z - reference).norm() / reference.norm()).item()


@pytest.fixture(scope="module")
def z0(pipeline, clip_frames):
    return pipeline.encode_frames(clip_frames, DIRECT)


def test_the_trajectory_is_the_ddim_inversion_in_sampling_order(pipeline, z0):
    inversion, timings = pipeline.invert(z0, SOURCE, DIRECT)
    assert inversion.nulls is None and inversion.step_losses is None and set(timings) == {"inversion"}
    assert inversion.trajectory.shape == (6, *z0.shape) and inversion.steps == 5
    schedule = DdimSchedule.from_scheduler(pipeline.model.scheduler, 5)
    pipeline._install(DIRECT, z0.shape[0], control=None)
    text = pipeline.encode_prompt(SOURCE).expand(z0.shape[0], -1, -1)
    latents = ddim_invert(pipeline.predict_noise, schedule, z0, text)
    torch.testing.assert_close(inversion.trajectory, torch.stack(latents[::-1]), rtol=0, atol=0)
    assert torch.equal(inversion.trajectory[0], inversion.z_T) and torch.equal(inversion.trajectory[-1], z0)


def test_the_source_branch_is_the_trajectory_at_every_step_and_reconstructs_exactly(pipeline, z0):
    """Whatever the layout (dense attention, joint GroupNorm at guidance 7.5), the source branch never leaves the
    clip's trajectory, where null-text's source branch, on the same clip and `tiny`, ends far from z_0."""
    frames = z0.shape[0]
    inversion, _ = pipeline.invert(z0, SOURCE, DIRECT)
    link = AnchorLink(trajectory_positions=(0, 3))
    sampled = pipeline.sample(inversion, SOURCE, SOURCE, DIRECT, keep_source=True, link=link)
    recorded = sampled.trajectories  # (steps, 2, R, 4, h, w): the latents entering each step
    assert torch.equal(recorded[:, 0], inversion.trajectory[:-1, [0, 3]])
    assert torch.equal(sampled.latents[:frames], z0)  # the reconstruction is z_0 itself: error 0
    null_text = EditOptions(steps=5, inversion="null-text")
    optimized, _ = pipeline.invert(z0, SOURCE, null_text)
    rebuilt = pipeline.sample(optimized, SOURCE, SOURCE, null_text, keep_source=True).latents[:frames]
    assert relative_error(rebuilt, z0) > 0.1  # random weights at guidance 7.5: null-text is far from exact


def test_the_edit_branch_is_left_alone(pipeline, z0):
    """Without map injection the direct edit branch is plain guided DDIM from z_T with "" as unconditional: the
    paired pipeline with "" as every null gives the same edit branch. With the maps it is steered."""
    frames = z0.shape[0]
    inversion, _ = pipeline.invert(z0, SOURCE, DIRECT)
    free = DIRECT.replace(cross_replace=0.0, refine_cross_replace=0.0)
    direct = pipeline.sample(inversion, SOURCE, TARGET, free).latents
    empty = pipeline.encode_prompt("")[0].float().expand(5, -1, -1)
    plain = pipeline.sample(Inversion(inversion.z_T, empty), SOURCE, TARGET, free, keep_source=True).latents
    torch.testing.assert_close(direct, plain[frames:], rtol=1e-5, atol=1e-5)
    steered = pipeline.sample(inversion, SOURCE, TARGET, DIRECT).latents
    assert (steered - direct).abs().max() > 1e-3


def test_the_source_branch_joins_only_the_steps_that_use_its_maps(pipeline, clip_frames):
    """3 x frames per UNet call ([uncond-edit, cond-src, cond-edit]) while the maps are replaced (round(0.8 * 5) =
    4 steps), 2 x frames after; no null-text stage."""
    events: list[tuple] = []
    calls: list[int] = []
    hook = pipeline.model.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        result = pipeline.edit(clip_frames, SOURCE, TARGET, DIRECT, progress=lambda *e: events.append(e))
    finally:
        hook.remove()
    frames = clip_frames.shape[0]
    assert [e[0] for e in events] == ["inversion"] * 5 + ["edit"] * 5
    assert calls == [frames] * 5 + [3 * frames] * 4 + [2 * frames]
    assert set(result.timings) == {"encode", "inversion", "edit", "decode"}


def test_a_reprompt_from_the_cache_equals_the_cold_run_in_windows_with_anchors(pipeline, tmp_path):
    """8 frames in windows of 3, 3 and 2 (anchors: frame 0 and the previous window's last 2): the first job fills the
    cache; a re-prompt from it gives the frames a cold run of the new prompt gives."""
    clip = write_lossless_clip(tmp_path / "ball.mp4", moving_ball_frames(8))
    options = EditOptions(steps=4, size=64, window=3, inversion="direct")

    def job(out: str, prompt: str) -> EditJob:
        return EditJob(
            source=clip, prompt=prompt, source_prompt=SOURCE, frames=8, options=options, out_frames_dir=tmp_path / out
        )

    cache = InversionCache(tmp_path / "cache")
    first = run_job(job("first", TARGET), pipeline, cache=cache)
    assert [len(w) for w in first.windows] == [3, 3, 2] and first.cached_windows == 0
    stages: list[str] = []
    reprompt = run_job(
        job("again", "a green ball on green grass"), pipeline, lambda s, *_, **__: stages.append(s), cache=cache
    )
    assert reprompt.inversion_cached and "null-text" not in stages and stages.count("inversion") == 3
    cold = run_job(job("cold", "a green ball on green grass"), pipeline)
    warm_frames = np.stack([png(path) for path in reprompt.frame_paths]).astype(int)
    cold_frames = np.stack([png(path) for path in cold.frame_paths]).astype(int)
    assert np.abs(warm_frames - cold_frames).max() <= 1 and (warm_frames != cold_frames).mean() < 0.005
    stored = cache.get(next(iter(cache.folder.glob("??/*.inv"))).stem)
    assert stored.trajectory.shape == (5, stored.z_T.shape[0], 4, 5, 8) and stored.nulls is None  # 64x40 px
    first_frames = np.stack([png(path) for path in first.frame_paths]).astype(int)
    assert np.abs(first_frames - warm_frames).max() > 8  # the re-prompt did edit


def test_anchored_windows_reproduce_the_unwindowed_sparse_causal_edit(pipeline):
    """As test_windows checks for the paired branches: with sparse-causal attention and per-frame norms a window
    with its anchors attends to what the whole clip does, and direct inversion's trajectories are per frame."""
    frames = media.resize_frames(moving_ball_frames(4), 64, 64)
    options = EditOptions(steps=4, inversion="direct", attention="sparse_causal", joint_groupnorm=False)
    whole = pipeline.edit(frames, SOURCE, TARGET, options)
    first = pipeline.edit(frames[:2], SOURCE, TARGET, options, link=AnchorLink(trajectory_positions=(0, 1)))
    torch.testing.assert_close(first.trajectories[:, 0], first.inversion.trajectory[:-1])  # the pinned source
    second = pipeline.edit(frames[2:], SOURCE, TARGET, options, link=AnchorLink(anchors=first.trajectories))
    assert np.abs(first.frames.astype(int) - whole.frames[:2]).max() <= 1
    assert np.abs(second.frames.astype(int) - whole.frames[2:]).max() <= 1


def test_a_direct_inversion_serves_only_its_step_count(pipeline, z0):
    inversion, _ = pipeline.invert(z0, SOURCE, DIRECT)
    with pytest.raises(ValueError, match="serves 5 steps, not a 4-step edit"):
        pipeline.sample(inversion, SOURCE, TARGET, DIRECT.replace(steps=4))
    schedule = DdimSchedule.from_scheduler(pipeline.model.scheduler, 5)
    control = PromptControl.for_prompts(SOURCE, TARGET, pipeline.model.tokenizer, 4, 5, 1, 0.8, 0.8, branches=3)
    texts = (pipeline.encode_prompt(""),) * 3
    with pytest.raises(ValueError, match="5 latents does not serve a 5-step edit"):
        sample_direct(pipeline.predict_noise, schedule, inversion.trajectory[1:], texts, 7.5, control)
