"""Windowed editing of long clips: the window plan, the anchors, and run_job delivering frames window by window."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from v2vz.api.errors import Cancelled, InvalidArgument
from v2vz.api.job import EditJob, EditOptions
from v2vz_daemon.inversion_cache import InversionCache
from v2vz_engine import media
from v2vz_engine.pipeline import AnchorLink
from v2vz_engine.run import run_job
from v2vz_engine.windows import (
    BYTES_PER_FRAME_TOKEN,
    MEMORY_SHARE,
    AnchorBank,
    auto_window,
    plan_windows,
)

SOURCE, TARGET = "a red ball on green grass", "a blue ball on green grass"
QUICK = EditOptions(steps=3, size=64, inversion="direct")  # 64x64 working size, no null-text: seconds per 40 frames


def write_lossless_clip(path: Path, frames: np.ndarray, fps: Fraction = Fraction(24)) -> Path:
    """An MP4 whose decoded pixels are exactly `frames` (x264 RGB at qp 0), so a change stays in its own frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=fps, options={"qp": "0"})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "rgb24"
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def moving_ball_frames(count: int, width: int = 80, height: int = 48) -> np.ndarray:
    """A ball crossing a gradient: every frame differs from its neighbours."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        cx = 8 + (width - 16) * i / max(count - 1, 1)
        ball = (x - cx) ** 2 + (y - height / 2) ** 2 <= 64
        frames[i, ..., 0] = np.where(ball, 220, 40 + x * 2)
        frames[i, ..., 1] = np.where(ball, 40, 120 + y)
        frames[i, ..., 2] = np.where(ball, 30, 60)
    return frames


def job_for(source: Path, out: Path, frames: int, options: EditOptions = QUICK, **fields) -> EditJob:
    return EditJob(
        source=source,
        prompt=TARGET,
        source_prompt=SOURCE,
        frames=frames,
        options=options,
        out_frames_dir=out,
        **fields,
    )


def png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


# ------------------------------------------------------------------------------------------------------------------
# The plan


@pytest.mark.parametrize(
    ("frames", "window", "sizes"),
    [(40, 8, [8] * 5), (42, 8, [7] * 6), (10, 4, [4, 3, 3]), (5, 8, [5]), (1, 1, [1]), (17, 16, [9, 8])],
)
def test_windows_cover_every_frame_once_in_order_with_near_equal_sizes(frames, window, sizes):
    windows = plan_windows(frames, window)
    assert [len(w) for w in windows] == sizes
    assert [i for w in windows for i in w] == list(range(frames))


def test_plan_refuses_empty_input():
    with pytest.raises(ValueError, match="at least one"):
        plan_windows(0, 8)
    with pytest.raises(ValueError, match="at least one"):
        plan_windows(8, 0)


def test_automatic_window_follows_the_token_budget_and_the_free_memory():
    assert auto_window(512, 512, None) == 16  # 4096 latent tokens: 2 x the published 8 frames of 64x64 latents
    assert auto_window(768, 768, None) == 7  # 9216 tokens: 65536 // 9216
    assert auto_window(1024, 1024, None) == 4  # floor of 4 frames
    assert auto_window(64, 64, None) == 16  # cap of 16 frames
    free = 8 * 1024**3
    per_frame = BYTES_PER_FRAME_TOKEN * 4096  # 2-byte weights
    assert auto_window(512, 512, free) == int(free * MEMORY_SHARE // per_frame) == 4
    assert auto_window(512, 512, free, dtype_bytes=4) == 2  # float32 needs twice the memory
    assert auto_window(512, 512, 1) == 1  # never zero


def test_anchor_bank_keeps_the_first_frame_and_the_tail_of_the_previous_window():
    bank = AnchorBank(tail=2)
    first, second, third = plan_windows(24, 8)
    assert bank.anchors_for(first) == ([], None)
    assert bank.to_record(first) == [0, 6, 7]
    trajectories = torch.arange(3.0).view(1, 1, 3, 1, 1, 1).expand(4, 2, 3, 4, 2, 2)
    bank.store(first, [0, 6, 7], trajectories)
    indices, stacked = bank.anchors_for(second)
    assert indices == [0, 6, 7] and stacked.shape == (4, 2, 3, 4, 2, 2)
    assert stacked[0, 0, :, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]  # in clip order
    assert bank.to_record(second) == [6, 7]
    bank.store(second, [6, 7], trajectories[:, :, 1:])
    assert bank.anchors_for(third)[0] == [0, 14, 15]  # window 1's tail is gone, frame 0 stays
    assert AnchorBank(tail=0).to_record(first) == [0]


def test_options_refuse_bad_window_and_anchor_counts():
    with pytest.raises(InvalidArgument, match="window must be between 1 and 256 frames"):
        EditOptions(window=-1).validate()
    with pytest.raises(InvalidArgument, match="anchors must be between 0 and 16"):
        EditOptions(anchors=17).validate()


# ------------------------------------------------------------------------------------------------------------------
# The anchors in the pipeline


def test_anchor_trajectories_reproduce_the_unwindowed_sparse_causal_edit(pipeline):
    """With sparse-causal attention ([first, previous] frame) and per-frame norms, a 4-frame clip edited as windows
    [0, 1] and [2, 3] (anchors 0 and 1) attends to exactly what the unwindowed edit does, so the frames must match:
    the anchors' latents enter each step at the right place, in the right branch (the paired branches here;
    test_direct.py checks direct inversion's)."""
    frames = media.resize_frames(moving_ball_frames(4), 64, 64)
    options = QUICK.replace(attention="sparse_causal", joint_groupnorm=False, steps=4, inversion="negative-prompt")
    whole = pipeline.edit(frames, SOURCE, TARGET, options)
    first = pipeline.edit(frames[:2], SOURCE, TARGET, options, link=AnchorLink(trajectory_positions=(0, 1)))
    assert first.trajectories.shape == (4, 2, 2, 4, 8, 8)
    torch.testing.assert_close(first.trajectories[0, 0], first.inversion.z_T)  # step 0 enters with z_T, both branches
    torch.testing.assert_close(first.trajectories[0, 1], first.inversion.z_T)
    second = pipeline.edit(frames[2:], SOURCE, TARGET, options, link=AnchorLink(anchors=first.trajectories))
    alone = pipeline.edit(frames[2:], SOURCE, TARGET, options)
    assert np.abs(first.frames.astype(int) - whole.frames[:2]).max() <= 1
    assert np.abs(second.frames.astype(int) - whole.frames[2:]).max() <= 1
    assert np.abs(alone.frames.astype(int) - whole.frames[2:]).max() > 8  # without anchors frame 2 has no past


@pytest.mark.parametrize(("inversion", "groups"), [("negative-prompt", [4, 4, 4]), ("direct", [3, 3, 2])])
def test_anchors_are_not_edited_again_and_join_every_unet_call(pipeline, inversion, groups):
    """The edit's calls: [uncond, cond] x [src, edit] x (2 anchors + 3 frames); with direct inversion there is no
    uncond-src, and the source branch leaves after the cross-replace cutoff (round(0.8 * 3) = 2 steps)."""
    frames = media.resize_frames(moving_ball_frames(6), 64, 64)
    options = QUICK.replace(inversion=inversion)
    first = pipeline.edit(frames[:3], SOURCE, TARGET, options, link=AnchorLink(trajectory_positions=(0, 2)))
    batches = []
    hook = pipeline.model.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        second = pipeline.edit(frames[3:], SOURCE, TARGET, options, link=AnchorLink(anchors=first.trajectories))
    finally:
        hook.remove()
    assert batches[-3:] == [n * (2 + 3) for n in groups]
    assert second.frames.shape == (3, 64, 64, 3)


# ------------------------------------------------------------------------------------------------------------------
# run_job window by window


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    frames = moving_ball_frames(40)
    return write_lossless_clip(tmp_path_factory.mktemp("long") / "ball.mp4", frames), frames


def test_a_40_frame_clip_in_windows_of_8_writes_every_frame_once_in_order(pipeline, long_clip, tmp_path):
    source, _ = long_clip
    announced: list[tuple[int, Path]] = []
    events: list[tuple[str, int, int]] = []
    options = QUICK.replace(window=8)
    job = job_for(source, tmp_path / "frames", 40, options, output=tmp_path / "out.mp4")
    result = run_job(job, pipeline, progress=lambda *e: events.append(e), on_frame=lambda *f: announced.append(f))
    assert [index for index, _ in announced] == list(range(40))
    assert [path.name for _, path in announced] == [f"frame_{i:06d}.png" for i in range(40)]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_{i:06d}.png" for i in range(40)]
    assert {png(path).shape for _, path in announced} == {(48, 80, 3)}  # the source size, not the working size
    assert [len(w) for w in result.windows] == [8] * 5 and result.working_size == (64, 40)
    assert [e for e in events if e[0] == "window"] == [("window", n, 5) for n in range(1, 6)]
    # each window's frames are announced before the next window's inversion starts
    stages = [e[0] for e in events]
    assert stages.index("inversion", stages.index("window") + 1) < stages.index("edit")
    info = media.probe(result.output)
    assert (info.frame_count, info.width, info.height, info.fps) == (40, 80, 48, Fraction(24))


def test_frames_of_a_window_are_on_disk_before_the_next_window_starts(pipeline, long_clip, tmp_path):
    source, _ = long_clip
    seen: list[tuple[int, int]] = []  # (window started, PNGs on disk then)
    out = tmp_path / "frames"

    def progress(stage: str, step: int, total: int) -> None:
        if stage == "window":
            seen.append((step, len(list(out.glob("*.png"))) if out.exists() else 0))

    run_job(job_for(source, out, 24, QUICK.replace(window=8)), pipeline, progress=progress)
    assert seen == [(1, 0), (2, 8), (3, 16)]


def test_a_clip_that_fits_one_window_equals_the_unwindowed_edit(pipeline, long_clip, tmp_path):
    source, frames = long_clip
    result = run_job(job_for(source, tmp_path / "a", 8, QUICK.replace(window=8)), pipeline)
    automatic = run_job(job_for(source, tmp_path / "b", 8, QUICK), pipeline)  # tiny at 64 px: 16-frame windows
    assert [len(w) for w in result.windows] == [8] and [len(w) for w in automatic.windows] == [8]
    small = media.resize_frames(frames[:8], 64, 40)
    reference = media.resize_frames(pipeline.edit(small, SOURCE, TARGET, QUICK).frames, 80, 48)
    assert np.array_equal(np.stack([png(p) for p in result.frame_paths]), reference)
    assert np.array_equal(np.stack([png(p) for p in automatic.frame_paths]), reference)


@pytest.mark.parametrize("tail", [2, 0])
def test_a_change_in_frame_0_reaches_the_last_window(pipeline, long_clip, tmp_path, tail):
    """Only frame 0 differs between the two clips; the last window (frames 32..39) still comes out different:
    frame 0 is an anchor of every window (with tail=0 it is the only way from frame 0 to the last window)."""
    _, frames = long_clip
    changed = frames.copy()
    changed[0] = 255 - changed[0]
    clip_a = write_lossless_clip(tmp_path / "a.mp4", frames)
    clip_b = write_lossless_clip(tmp_path / "b.mp4", changed)
    assert np.array_equal(media.read_frames(clip_b, 1, 39)[0], frames[1:])  # really only frame 0 differs
    options = QUICK.replace(window=8, anchors=tail)
    a = run_job(job_for(clip_a, tmp_path / "a", 40, options), pipeline)
    b = run_job(job_for(clip_b, tmp_path / "b", 40, options), pipeline)
    last_a = np.stack([png(p) for p in a.frame_paths[32:]]).astype(int)
    last_b = np.stack([png(p) for p in b.frame_paths[32:]]).astype(int)
    assert np.abs(last_a - last_b).max() > 0
    no_anchor_reference = run_job(job_for(clip_a, tmp_path / "c", 8, options, start=32), pipeline)
    alone = np.stack([png(p) for p in no_anchor_reference.frame_paths]).astype(int)
    assert np.abs(alone - last_a).max() > 0  # the last window alone (no anchors) is different again


def test_each_window_is_cached_and_a_cancelled_job_keeps_its_finished_windows(pipeline, long_clip, tmp_path):
    source, _ = long_clip
    cache = InversionCache(tmp_path / "cache")
    options = QUICK.replace(window=8, inversion="null-text", null_inner_steps=1)
    started: list[int] = []

    def progress(stage: str, step: int, total: int) -> None:
        if stage == "window":
            started.append(step)

    job = job_for(source, tmp_path / "first", 24, options)
    with pytest.raises(Cancelled):
        run_job(job, pipeline, progress, cancel=lambda: len(started) == 3, cache=cache)
    kept = sorted(p.name for p in (tmp_path / "first").glob("*.png"))
    assert kept == [f"frame_{i:06d}.png" for i in range(16)]  # two finished windows stay on disk
    again = run_job(dataclasses.replace(job, out_frames_dir=tmp_path / "again"), pipeline, cache=cache)
    assert again.cached_windows == 2 and not again.inversion_cached
    reprompt = run_job(
        dataclasses.replace(job, out_frames_dir=tmp_path / "reprompt", prompt="a green ball on green grass"),
        pipeline,
        cache=cache,
    )
    assert reprompt.cached_windows == 3 and reprompt.inversion_cached
    # The cancelled run's frames equal the full run's, up to the float rounding a reloaded inversion brings (see
    # test_a_saved_inversion_reproduces_the_edit), doubled by the resize to the source size.
    names = [f"frame_{index:06d}.png" for index in range(16)]
    before = np.stack([png(tmp_path / "first" / name) for name in names]).astype(int)
    after = np.stack([png(tmp_path / "again" / name) for name in names]).astype(int)
    assert np.abs(before - after).max() <= 2 and np.abs(before - after).mean() < 0.1


def test_an_automatic_window_that_runs_out_of_memory_is_halved_and_retried(pipeline, long_clip, tmp_path, monkeypatch):
    source, _ = long_clip
    edit = pipeline.edit
    tried: list[int] = []

    def limited_edit(frames, *args, **kwargs):
        tried.append(len(frames))
        if len(frames) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return edit(frames, *args, **kwargs)

    monkeypatch.setattr(pipeline, "edit", limited_edit)
    result = run_job(job_for(source, tmp_path / "auto", 12, QUICK), pipeline)
    assert tried == [12, 6, 3, 3, 3, 3]
    assert [len(w) for w in result.windows] == [3, 3, 3, 3] and len(result.frame_paths) == 12
    with pytest.raises(torch.OutOfMemoryError):  # a window the user chose is not second-guessed
        run_job(job_for(source, tmp_path / "fixed", 12, QUICK.replace(window=6)), pipeline)


def test_frames_0_edits_from_start_through_the_last_frame_in_windows(pipeline, long_clip, tmp_path):
    source, _ = long_clip
    result = run_job(job_for(source, tmp_path / "tail", 0, QUICK.replace(window=4), start=30), pipeline)
    assert [len(w) for w in result.windows] == [4, 3, 3]  # frames 30..39 of the 40
    assert [p.name for p in result.frame_paths] == [f"frame_{i:06d}.png" for i in range(10)]
