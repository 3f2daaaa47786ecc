"""The edit pipeline on `tiny`: stages, progress, cancel, reuse of a saved inversion, end to end on real clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2vz.api.errors import Cancelled, InvalidArgument, MediaError, MediaNotFound, RangeError
from v2vz.api.job import EditJob, EditOptions
from v2vz_engine import media
from v2vz_engine.inversion import Inversion
from v2vz_engine.run import run_job

from ..conftest import CLIPS

SOURCE, TARGET = "a rabbit standing in a green meadow", "a tiger standing in a snowy meadow"
FAST = EditOptions(steps=4)  # the default: direct inversion
PAIRED = EditOptions(steps=4, inversion="null-text")  # both branches denoised from z_T, null-text stage


def test_identical_prompts_give_identical_branches(pipeline, clip_frames):
    z0 = pipeline.encode_frames(clip_frames, PAIRED)
    inversion, _ = pipeline.invert(z0, SOURCE, PAIRED)
    both = pipeline.sample(inversion, SOURCE, SOURCE, PAIRED, keep_source=True).latents
    frames = clip_frames.shape[0]
    torch.testing.assert_close(both[:frames], both[frames:], rtol=0, atol=1e-6)
    edited = pipeline.sample(inversion, SOURCE, TARGET, PAIRED, keep_source=True).latents
    torch.testing.assert_close(edited[:frames], both[:frames], rtol=0, atol=1e-6)  # the source branch is the same
    assert (edited[frames:] - both[frames:]).abs().max() > 1e-3  # the edit branch follows the new prompt


def test_progress_reports_every_stage_in_order_and_one_unet_call_per_edit_step(pipeline, clip_frames):
    events: list[tuple[str, int, int]] = []
    calls = []
    hook = pipeline.model.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        result = pipeline.edit(clip_frames, SOURCE, TARGET, PAIRED, progress=lambda *e: events.append(e))
    finally:
        hook.remove()
    stages = [e[0] for e in events]
    assert stages == ["inversion"] * 4 + ["null-text"] * 4 + ["edit"] * 4
    assert [e[1] for e in events] == [1, 2, 3, 4] * 3 and {e[2] for e in events} == {4}
    frames = clip_frames.shape[0]
    edit_calls = [n for n in calls if n == 4 * frames]  # the edit's batch: [uncond, cond] x [src, edit] x frames
    assert len(edit_calls) == 4
    assert result.frames.shape == clip_frames.shape and result.frames.dtype == np.uint8
    assert set(result.timings) == {"encode", "inversion", "null-text", "edit", "decode"}


@pytest.mark.parametrize(("options", "stage", "step"), [(PAIRED, "null-text", 2), (FAST, "edit", 3)])
def test_cancel_stops_within_one_step(pipeline, clip_frames, options, stage, step):
    events: list[tuple[str, int, int]] = []

    def progress(*event) -> None:
        events.append(event)

    with pytest.raises(Cancelled, match=f"{stage} at step {step}/4"):
        pipeline.edit(
            clip_frames, SOURCE, TARGET, options, progress=progress, cancel=lambda: events[-1][:2] == (stage, step)
        )
    assert events[-1] == (stage, step, 4)
    # The pipeline is still usable for the next job.
    assert pipeline.edit(clip_frames, SOURCE, TARGET, options).frames.shape == clip_frames.shape


def test_a_saved_inversion_reproduces_the_edit(tmp_path, pipeline, clip_frames):
    first = pipeline.edit(clip_frames, SOURCE, TARGET, FAST)
    path = first.inversion.save(tmp_path / "clip.inv")
    events: list[str] = []
    again = pipeline.edit(
        clip_frames, SOURCE, TARGET, FAST, progress=lambda s, *_: events.append(s), inversion=Inversion.load(path)
    )
    assert set(events) == {"edit"}  # inversion and null-text skipped
    # Equal up to float rounding of the 8-bit output (CPU kernels may sum in another order between runs).
    difference = np.abs(again.frames.astype(int) - first.frames.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.005


def test_spatial_regularization_and_layout_change_the_result(pipeline, clip_frames):
    z0 = pipeline.encode_frames(clip_frames, FAST)
    inversion, _ = pipeline.invert(z0, SOURCE, FAST)
    steered = pipeline.sample(inversion, SOURCE, TARGET, FAST).latents
    free = pipeline.sample(inversion, SOURCE, TARGET, FAST.replace(cross_replace=0.0)).latents
    published = pipeline.sample(inversion, SOURCE, TARGET, FAST.replace(attention="published")).latents
    assert (steered - free).abs().max() > 1e-4
    assert (steered - published).abs().max() > 1e-4


def test_the_optimized_nulls_start_at_the_published_step(pipeline, clip_frames):
    """null_start 0.5 of 5 steps: "" while i < 2.5, so steps 0, 1, 2 never read nulls[2] and step 3 reads nulls[3]
    (banker's rounding, round(2.5) = 2, would have used nulls[2])."""
    options = EditOptions(steps=5, inversion="null-text", null_start=0.5)
    z_T = pipeline.encode_frames(clip_frames, options)  # any latents will do as z_T here
    empty = pipeline.encode_prompt("")[0].float()
    noise = torch.randn(empty.shape, generator=torch.Generator().manual_seed(0))

    def edit_with(changed: int | None) -> torch.Tensor:
        nulls = empty.expand(5, -1, -1).clone()
        if changed is not None:
            nulls[changed] += noise
        return pipeline.sample(Inversion(z_T, nulls), SOURCE, TARGET, options).latents

    plain = edit_with(None)
    torch.testing.assert_close(edit_with(2), plain, rtol=0, atol=0)
    assert (edit_with(3) - plain).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("source", "target", "steps", "differs"),
    [
        (SOURCE, TARGET, 9, True),  # replace, 0.8: int(0.8 * 10) = 8 steps published, round(7.2) = 7 ours
        (SOURCE, TARGET, 5, False),  # int(4.8) = 4 = round(4.0)
        ("a rabbit in a meadow", "a small rabbit in a green meadow", 5, True),  # refine: the padding maps differ
    ],
)
def test_the_published_cutoff_and_padding_rules_reach_the_edit(pipeline, clip_frames, source, target, steps, differs):
    options = EditOptions(steps=steps, refine_cross_replace=0.8)
    z0 = pipeline.encode_frames(clip_frames, options)
    inversion, _ = pipeline.invert(z0, source, options)
    ours = pipeline.sample(inversion, source, target, options).latents
    published = options.replace(cross_replace_cutoff="published", refine_padding="identity")
    theirs = pipeline.sample(inversion, source, target, published).latents
    if differs:
        assert (theirs - ours).abs().max() > 1e-4
    else:
        assert torch.equal(theirs, ours)  # the same computation, bit for bit


def test_published_preset_is_seeded(pipeline, clip_frames):
    options = EditOptions.preset("published", steps=3)
    a = pipeline.encode_frames(clip_frames, options)
    b = pipeline.encode_frames(clip_frames, options)
    c = pipeline.encode_frames(clip_frames, options.replace(seed=34))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3
    result = pipeline.edit(clip_frames, SOURCE, TARGET, options)
    assert result.inversion.meta["inversion_prompt"] == "empty"
    assert result.frames.shape == clip_frames.shape


@pytest.mark.parametrize(
    ("clip", "start", "frames", "size", "width", "height"),
    [("bikes.mp4", 100, 5, None, 640, 272), ("bigbuckbunny.mp4", 127, 5, 96, 1280, 720)],
)
def test_end_to_end_on_real_clips(tmp_path, pipeline, clip, start, frames, size, width, height):
    job = EditJob(
        source=CLIPS / clip,
        prompt=TARGET,
        source_prompt=SOURCE,
        start=start,
        frames=frames,
        options=EditOptions(steps=3, size=size),
        output=tmp_path / "out.mp4",
        out_frames_dir=tmp_path / "frames",
    )
    result = run_job(job, pipeline)
    info = media.probe(result.output)
    assert (info.frame_count, info.width, info.height, info.fps) == (frames, width, height, 25)
    assert len(result.frame_paths) == frames
    assert all(p.exists() for p in result.frame_paths)
    long_side = size or 64
    assert max(result.working_size) == long_side and all(s % 8 == 0 for s in result.working_size)
    assert {"read", "encode", "inversion", "edit", "decode", "write"} == set(result.timings)  # direct: no null-text


def test_bad_input_gets_clear_errors(tmp_path, pipeline):
    def job(source, **changes):
        fields = dict(source=source, prompt=TARGET, source_prompt=SOURCE, output=tmp_path / "o.mp4")
        return EditJob(**{**fields, **changes})

    with pytest.raises(MediaNotFound, match="nope.mp4"):
        run_job(job(tmp_path / "nope.mp4"), pipeline)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(MediaError, match="notes.mp4"):
        run_job(job(text), pipeline)
    with pytest.raises(RangeError, match="250 frames"):
        run_job(job(CLIPS / "bikes.mp4", start=245, frames=8), pipeline)
    with pytest.raises(InvalidArgument, match="prompt is empty"):
        run_job(job(CLIPS / "bikes.mp4", prompt="  "), pipeline)
    assert not (tmp_path / "o.mp4").exists()


def test_a_second_pipeline_on_the_same_model_uses_its_own_frame_count(tiny_model, pipeline, clip_frames):
    """Frame-joint GroupNorm modules are re-bound to the newest pipeline, never left on another's frame count."""
    from v2vz_engine.pipeline import VideoEditPipeline

    pipeline.edit(clip_frames, SOURCE, TARGET, FAST)  # 4 frames
    other = VideoEditPipeline(tiny_model)
    two = other.edit(clip_frames[:2], SOURCE, TARGET, FAST)
    assert two.frames.shape[0] == 2
    assert pipeline.edit(clip_frames, SOURCE, TARGET, FAST).frames.shape[0] == 4  # and back
