"""Local edits through run_job on `tiny`: the shot's own pixels outside the edit region, masks saved and announced,
no seam between windows, the inversion cache kept, and the matte checked before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from v2vz.api.errors import InvalidArgument, RangeError
from v2vz.api.events import Stage
from v2vz.api.job import EditJob, EditOptions
from v2vz_engine import media
from v2vz_engine.run import LocalRunner, run_job, run_spans

from .test_windows import moving_ball_frames, write_lossless_clip

QUICK = EditOptions(steps=3, size=32, inversion="direct", window=4)
SOURCE, TARGET = "a red ball on a road", "a blue ball on a road"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    frames = moving_ball_frames(6)
    return write_lossless_clip(tmp_path_factory.mktemp("local") / "ball.mp4", frames), frames


def save_matte(path: Path, matte: np.ndarray) -> Path:
    Image.fromarray((matte * 255).astype(np.uint8), mode="L").save(path)
    return path


def job(clip: Path, out: Path, **fields) -> EditJob:
    fields.setdefault("options", QUICK)
    fields.setdefault("frames", 6)
    return EditJob(clip, TARGET, SOURCE, out_frames_dir=out, **fields)


def read_pngs(paths: list[Path]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path)) for path in paths])


class Events:
    def __init__(self) -> None:
        self.masks: list[tuple[int, int, str]] = []

    def __call__(self, stage, step, total, cached=False, window_of=None, reason=""):
        if stage == Stage.MASK:
            self.masks.append((step, total, reason))


def test_outside_a_matte_the_output_is_the_shots_own_pixels(pipeline, clip, tmp_path):
    source, frames = clip
    matte = np.zeros((48, 80), np.float32)
    matte[:, 40:] = 1
    events = Events()
    edited = run_job(
        job(source, tmp_path / "out", matte=save_matte(tmp_path / "matte.png", matte), mask_dir=tmp_path / "masks"),
        pipeline,
        events,
    )
    out = read_pngs(edited.frame_paths)
    assert np.array_equal(out[:, :, :40], frames[:, :, :40])  # exactly the source's, after decoding and resizing
    assert not np.array_equal(out[:, :, 40:], frames[:, :, 40:])
    masks = sorted((tmp_path / "masks").iterdir())
    assert [path.name for path in masks] == [f"mask_{index:06d}.png" for index in range(6)]
    grey = read_pngs(masks)
    assert grey.dtype == np.uint8 and grey.shape == (6, 48, 80)
    assert grey[:, :, :40].max() == 0 and grey[:, :, 40:].min() == 255
    assert events.masks == [(3, 3, ""), (3, 3, "")]  # two balanced windows, every frame has something to edit
    record = json.loads(edited.sidecar.read_text())
    assert record["job"]["matte"] == str(tmp_path / "matte.png") and len(record["job"]["matte_digest"]) == 64
    assert set(map(str, masks)) <= set(record["files"])  # a take's masks are its files (removed with it)


def test_an_all_zero_matte_gives_the_source_and_says_nothing_was_edited(pipeline, clip, tmp_path):
    source, frames = clip
    events = Events()
    matte = save_matte(tmp_path / "black.png", np.zeros((48, 80), np.float32))
    edited = run_job(job(source, tmp_path / "out", matte=matte), pipeline, events)
    assert np.array_equal(read_pngs(edited.frame_paths), frames)
    assert [step for step, _, _ in events.masks] == [0, 0]
    assert "nothing to edit in frame(s) 0..2" in events.masks[0][2] and "left as shot" in events.masks[0][2]


def test_an_all_ones_matte_is_exactly_the_edit_without_one(pipeline, clip, tmp_path):
    source, _ = clip
    plain = run_job(job(source, tmp_path / "plain"), pipeline)
    white = save_matte(tmp_path / "white.png", np.ones((48, 80), np.float32))
    masked = run_job(job(source, tmp_path / "white", matte=white), pipeline)
    assert np.array_equal(read_pngs(masked.frame_paths), read_pngs(plain.frame_paths))


class SpyRunner(LocalRunner):
    """A LocalRunner that keeps what each window was given and returned."""

    def __init__(self, pipeline) -> None:
        super().__init__(pipeline)
        self.calls: list = []

    def submit(self, task, anchors, progress, cancel):
        future = super().submit(task, anchors, progress, cancel)
        self.calls.append((task, anchors, future.result()))
        return future


def test_word_masks_have_no_seam_between_windows_and_are_deterministic(pipeline, clip, tmp_path):
    """A window's anchors carry the word shares their own window recorded, so the next window's first frame sees
    exactly what the previous window's last frame had; two runs give the same masks."""
    source, _ = clip
    options = QUICK.replace(edit_only="ball")
    runs = []
    for attempt in range(2):
        runner = SpyRunner(pipeline)
        run_spans(job(source, tmp_path / f"o{attempt}", options=options, mask_dir=tmp_path / f"m{attempt}"), runner)
        runs.append(runner)
    (first_task, _, first), (second_task, anchors, _) = runs[0].calls
    positions = first_task.trajectory_positions
    assert anchors.indices == tuple(first_task.indices[p] for p in positions)
    assert anchors.shares is not None and torch.equal(anchors.shares, first.shares)
    masks = [read_pngs(sorted((tmp_path / f"m{attempt}").iterdir())) for attempt in range(2)]
    assert np.array_equal(masks[0], masks[1])


def test_a_masked_re_prompt_uses_the_inversion_cache(pipeline, clip, tmp_path):
    source, _ = clip

    class Store(dict):
        def put(self, key, inversion):
            self[key] = inversion

    cache = Store()
    run_job(job(source, tmp_path / "a"), pipeline, cache=cache)
    matte = save_matte(tmp_path / "half.png", np.tile(np.linspace(0, 1, 80, dtype=np.float32), (48, 1)))
    again = job(source, tmp_path / "b", matte=matte, options=QUICK.replace(edit_only="blue", self_replace=0.4))
    result = run_job(again, pipeline, cache=cache)
    assert result.inversion_cached and len(cache) == 2


def test_a_matte_is_checked_with_the_job_before_any_work(clip, tmp_path):
    source, _ = clip
    short = tmp_path / "short"
    short.mkdir()
    for index in range(3):
        save_matte(short / f"m_{index:03d}.png", np.ones((48, 80), np.float32))
    with pytest.raises(RangeError, match=r"has 3 frames; the range needs 6 from its frame 0"):
        media.resolve(job(source, tmp_path / "o", matte=short))
    wide = save_matte(tmp_path / "wide.png", np.ones((48, 96), np.float32))
    with pytest.raises(InvalidArgument, match=r"96x48 \(aspect 2.000\), the source 80x48"):
        media.resolve(job(source, tmp_path / "o", matte=wide))
    half = save_matte(tmp_path / "half.png", np.ones((24, 40), np.float32))
    resolved, info = media.resolve(job(source, tmp_path / "o", matte=half))
    assert media.matte_notes(resolved, info) == ["the matte half.png is 40x24: it is resampled to the source's 80x48"]
    with pytest.raises(InvalidArgument, match="is a frame of the matte"):
        media.resolve(job(source, None, matte=short / "m_000.png", output=short / "m_%03d.png", frames=2))
    with pytest.raises(InvalidArgument, match="are in neither prompt"):
        media.resolve(job(source, tmp_path / "o", options=QUICK.replace(edit_only="cat")))


def test_a_matte_reads_alpha_a_sequence_from_its_start_and_a_feather(clip, tmp_path):
    source, _ = clip
    rgba = np.zeros((48, 80, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: only the alpha says where
    rgba[:, 60:, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    resolved, info = media.resolve(job(source, tmp_path / "o", matte=tmp_path / "alpha.png"))
    matte = media.read_matte(resolved, media.probe(resolved.matte), (0, 5), 80, 48)
    assert matte.shape == (2, 48, 80) and matte[:, :, :60].max() == 0 and matte[:, :, 60:].min() == 1
    folder = tmp_path / "seq"
    folder.mkdir()
    for index in range(9):
        save_matte(folder / f"m_{index:03d}.png", np.full((48, 80), index / 8, np.float32))
    shifted = job(source, tmp_path / "o", matte=folder, matte_start=3)
    resolved, _ = media.resolve(shifted)
    read = media.read_matte(resolved, media.probe(folder), (0, 2), 80, 48)
    assert np.allclose(read[:, 0, 0], [int(3 / 8 * 255) / 255, int(5 / 8 * 255) / 255])  # frames 3 and 5
    hard = np.zeros((48, 80), np.float32)
    hard[:, 40:] = 1
    feathered = job(
        source, tmp_path / "o", matte=save_matte(tmp_path / "hard.png", hard), options=QUICK.replace(matte_feather=3)
    )
    soft = media.read_matte(feathered, media.probe(feathered.matte), (0,), 80, 48)[0, 0]
    assert soft[0] == 0 and soft[-1] == 1 and 0.3 < soft[39] < 0.5 and 0.5 < soft[40] < 0.7
