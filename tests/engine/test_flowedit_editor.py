"""FlowEdit as the engine runs it (flowedit_editor.py, methods.py) on `tiny-wan`: a clip of any length in latent
windows blended at every step, mattes, cancel within a step, the plan and preview, and the whole job through
run_job with its outputs and sidecar. The algorithm itself is held to an independent oracle in test_flowedit.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from v2vz.api.errors import Cancelled, InvalidArgument
from v2vz.api.events import Stage
from v2vz.api.job import EditJob, EditOptions
from v2vz_engine import flowedit_editor, media
from v2vz_engine.flowedit_editor import (
    FlowEditor,
    blend_weights,
    latent_mask,
    latent_windows,
    pad_frames,
)
from v2vz_engine.methods import METHODS, check_method, load_editor, preview_flowedit
from v2vz_engine.run import run_job
from v2vz_engine.spans import SpanTask
from v2vz_engine.wan.codecs import decode_video, encode_video

from ..conftest import CLIPS

FLOW = EditOptions().replace(method="flowedit", steps=6)


@pytest.fixture(scope="module")
def editor(model_cache) -> FlowEditor:
    loaded = load_editor("tiny-wan", "cpu", model_cache)
    assert isinstance(loaded, FlowEditor) and loaded.model.family == "wan"
    return loaded


def frames_of(count: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (count, 48, 64, 3), dtype=np.uint8)


def job_of(count: int, **options) -> EditJob:
    return EditJob(
        source="/clip.mp4",
        prompt="a blue ball on green grass",
        source_prompt="a red ball on green grass",
        start=0,
        frames=count,
        options=FLOW.replace(**options),
    )


def roundtrip(editor: FlowEditor, frames: np.ndarray) -> np.ndarray:
    """The frames through the VAE alone: what an edit that changes nothing must give."""
    return decode_video(editor.model, encode_video(editor.model, pad_frames(frames, editor.model)))[: len(frames)]


def test_an_edit_whose_target_is_its_source_gives_the_source_back_exactly(editor):
    """Same prompt, same guidance on both branches: the velocity difference is zero at every step, so the latents
    never move and the frames are the VAE's round trip of the clip, bit for bit (10 frames: padded to 13)."""
    frames = frames_of(10)
    job = job_of(10, guidance=5.0, source_guidance=5.0)
    job = dataclasses.replace(job, prompt=job.source_prompt)
    result = editor.edit_span(SpanTask(job, 0, tuple(range(10)), frames))
    assert result.frames.shape == frames.shape and result.frames.dtype == np.uint8
    assert np.array_equal(result.frames, roundtrip(editor, frames))
    edited = editor.edit_span(SpanTask(job_of(10), 0, tuple(range(10)), frames))
    assert not np.array_equal(edited.frames, result.frames)  # another prompt does move them


def test_latent_windows_cover_the_clip_and_their_weights_sum_to_one():
    assert latent_windows(5, 6) == [range(5)]
    windows = latent_windows(23, 6)
    assert windows[0].start == 0 and windows[-1].stop == 23 and all(len(w) == 6 for w in windows)
    assert all(b.start < a.stop for a, b in zip(windows, windows[1:], strict=False))  # each overlaps the next
    weights = blend_weights(windows, 23)
    total = torch.zeros(23)
    for window, weight in zip(windows, weights, strict=True):
        total[window.start : window.stop] += weight
        assert torch.all(weight > 0)
    assert torch.allclose(total, torch.ones(23))
    inner = weights[1]
    assert inner[0] < inner[1] and inner[-1] < inner[-2]  # ramps at both overlaps, 1 inside


def test_a_long_clip_runs_in_latent_windows_that_the_transformer_sees_one_at_a_time(editor, monkeypatch):
    """41 frames (11 latent frames) in windows of 13 frames (4 latent frames): the transformer never sees more than
    one window; an edit that changes nothing is still exact after the blend; the seam is no jump."""
    seen: list[int] = []
    forward = editor.model.transformer.forward

    def spy(hidden_states, *args, **kwargs):
        seen.append(hidden_states.shape[2])
        return forward(hidden_states, *args, **kwargs)

    monkeypatch.setattr(editor.model.transformer, "forward", spy)
    frames = np.repeat(frames_of(1), 41, axis=0) + np.arange(41, dtype=np.uint8)[:, None, None, None]
    same = job_of(41, window=13, guidance=5.0, source_guidance=5.0)
    same = dataclasses.replace(same, prompt="a red ball", source_prompt="a red ball")
    result = editor.edit_span(SpanTask(same, 0, tuple(range(41)), frames))
    assert seen and max(seen) == 4 and len(latent_windows(11, 4)) > 2
    assert np.array_equal(result.frames, roundtrip(editor, frames))
    edited = editor.edit_span(SpanTask(job_of(41, window=13), 0, tuple(range(41)), frames)).frames.astype(float)
    change = np.abs(np.diff(edited, axis=0)).mean(axis=(1, 2, 3))
    source_change = np.abs(np.diff(frames.astype(float), axis=0)).mean(axis=(1, 2, 3))
    assert change.max() <= 4 * np.median(change) + 2 * source_change.max(), change  # no frame jumps at a seam


def test_a_matte_keeps_the_source_latents_outside_it(editor, monkeypatch):
    """Outside the matte (0) the edited latents are the source's, exactly; inside (1) they are the edit's."""
    decoded: list[torch.Tensor] = []
    decode = flowedit_editor.decode_video

    def keep(model, latents):
        decoded.append(latents.clone())
        return decode(model, latents)

    monkeypatch.setattr(flowedit_editor, "decode_video", keep)
    frames = frames_of(9, seed=3)
    matte = np.zeros((9, 48, 64), np.float32)
    matte[:, :, 32:] = 1.0
    editor.edit_span(SpanTask(job_of(9), 0, tuple(range(9)), frames, matte=matte))
    editor.edit_span(SpanTask(job_of(9), 0, tuple(range(9)), frames))
    matted, whole = decoded
    source = encode_video(editor.model, frames)
    mask = latent_mask(matte, editor.model, 3)
    assert mask.shape == (1, 1, 3, 6, 8) and mask[..., :4].max() == 0 and mask[..., 4:].min() == 1
    assert torch.equal(matted[..., :4], source[..., :4]) and not torch.equal(whole[..., :4], source[..., :4])
    assert torch.equal(matted[..., 4:], whole[..., 4:])


def test_a_matted_job_gives_the_shots_own_pixels_outside_the_matte(editor, tmp_path: Path):
    """Through run_job: a still matte, black on the left half: those pixels of every PNG are the source's."""
    from PIL import Image

    source = media.probe(CLIPS / "bikes.mp4")
    still = np.zeros((source.height, source.width), np.uint8)
    still[:, source.width // 2 :] = 255
    Image.fromarray(still).save(tmp_path / "matte.png")
    job = dataclasses.replace(
        whole_job(tmp_path, frames=5), matte=tmp_path / "matte.png", output=None, out_frames_dir=tmp_path / "png"
    )
    result = run_job(job, editor)
    shot, _ = media.read_frames(CLIPS / "bikes.mp4", 3, 5)
    edited = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in result.frame_paths])
    left = source.width // 2 - 8
    assert np.array_equal(edited[:, :, :left], shot[:, :, :left])
    assert not np.array_equal(edited[:, :, -left:], shot[:, :, -left:])


def test_cancel_stops_within_one_step_and_progress_counts_the_plan(editor):
    steps: list[tuple] = []
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled, match="step 3 of 4"):
        editor.edit_span(
            SpanTask(job_of(5), 0, tuple(range(5)), frames_of(5)),
            progress=lambda *event, **extra: steps.append(event),
            cancel=cancel,
        )
    assert steps == [(Stage.EDIT, 1, 4), (Stage.EDIT, 2, 4)]  # n_max 70% of 6 steps: 4; stopped before the 3rd


def test_the_plan_is_one_span_at_a_size_wan_takes_and_the_preview_scales_n_max():
    from v2vz_engine.methods import DeviceFacts

    facts = DeviceFacts(832, 2, None, family="wan")
    info = media.probe(CLIPS / "bikes.mp4")
    size, windows, automatic = METHODS["flowedit"].plan(job_of(37), info, facts)
    assert windows.windows == (range(37),) and not automatic
    assert size[0] % 16 == 0 and size[1] % 16 == 0 and max(size) == 832
    preview = preview_flowedit(FLOW.replace(steps=50, n_max=40, n_min=5))
    assert (preview.steps, preview.n_max, preview.n_min) == (10, 8, 1)
    preview.validate()
    assert preview_flowedit(FLOW.replace(steps=50)).edit_steps == 7


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (dict(method="flowedit", n_min=40), "n-min must be below n-max (35), got 40"),
        (dict(method="flowedit", steps=20, n_max=30), "n-max must be at most steps (20), got 30"),
        (dict(method="flowedit", edit_only="ball"), "edit-only does not go with method flowedit"),
        (dict(n_avg=3), "n-avg is FlowEdit's: add --method flowedit"),
        (dict(method="flowedit", n_avg=0), "n_avg must be between 1 and 32"),
    ],
)
def test_options_that_make_no_sense_are_one_line(options, words):
    with pytest.raises(InvalidArgument) as caught:
        EditOptions().replace(**options).validate()
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_method_on_a_model_of_another_family_is_refused_before_anything_runs():
    check_method(FLOW, "wan", "tiny-wan")
    check_method(EditOptions(), "sd", "tiny")
    with pytest.raises(InvalidArgument, match="method flowedit does not run on model 'tiny' .sd.: pass --model a Wan"):
        check_method(FLOW, "sd", "tiny")
    with pytest.raises(InvalidArgument, match="method vid2vid-zero does not run on model 'tiny-wan'"):
        check_method(EditOptions(), "wan", "tiny-wan")


def test_guidance_follows_the_method_unless_it_was_given():
    assert EditOptions().replace(method="flowedit").guidance == 13.5
    assert EditOptions().replace(method="flowedit", guidance=9.0).guidance == 9.0
    assert EditOptions(guidance=4.0).replace(method="flowedit").guidance == 4.0
    assert FLOW.replace(method="vid2vid-zero").guidance == 7.5


def whole_job(tmp_path: Path, frames: int = 10) -> EditJob:
    return EditJob(
        source=str(CLIPS / "bikes.mp4"),
        prompt="people riding horses on a road",
        source_prompt="people riding bikes on a road",
        start=3,
        frames=frames,
        options=FLOW,
        output=tmp_path / "out.mp4",
        out_frames_dir=tmp_path / "png",
        model="tiny-wan",
    )


def test_a_whole_job_on_tiny_wan_writes_every_frame_with_its_sidecar(editor, tmp_path: Path):
    """bikes.mp4, 10 frames (not 4k+1) through run_job: 10 frames at the source's size, the method recorded."""
    job = whole_job(tmp_path)
    events: list[tuple] = []
    result = run_job(job, editor, progress=lambda *event, **extra: events.append(event))
    source = media.probe(CLIPS / "bikes.mp4")
    written = media.probe(tmp_path / "out.mp4")
    assert (written.frame_count, written.width, written.height) == (10, source.width, source.height)
    assert len(result.frame_paths) == 10 and result.windows == [range(10)] and result.cached_windows == 0
    assert result.working_size[0] % 16 == 0 and result.working_size[1] % 16 == 0
    assert (Stage.EDIT, 4, 4) in events
    record = json.loads(result.sidecar.read_text())
    assert record["job"]["options"]["method"] == "flowedit" and record["job"]["model"] == "tiny-wan"
