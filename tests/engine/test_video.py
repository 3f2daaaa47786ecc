"""Video I/O: probing, exact frame-range reads, resizing and atomic writers, on real and synthetic clips."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from v2vz.api.errors import InvalidArgument, MediaError, MediaNotFound, RangeError
from v2vz.cli.sample import make_sample_clip
from v2vz_engine.media import (
    MediaInfo,
    probe,
    read_frames,
    resize_frames,
    working_size,
    write_png_frames,
)

from ..media_kit import write_mp4

CLIPS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "clips"


def clip(name: str) -> Path:
    path = CLIPS / name
    if not path.is_file():
        pytest.skip(f"test media {path} is not available")
    return path


def decode_from_start(path: Path, stop: int) -> np.ndarray:
    """Reference decode, independent of the module: the first `stop` frames, counted from the start."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if len(frames) == stop:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


def gradient_frames(count: int, width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        frames[i, ..., 0] = (x * 255 // max(width - 1, 1) + 9 * i) % 256
        frames[i, ..., 1] = y * 255 // max(height - 1, 1)
        frames[i, ..., 2] = 128
    return frames


# --- probe ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "width", "height", "frame_count", "has_audio"),
    [("bigbuckbunny.mp4", 1280, 720, 132, True), ("bikes.mp4", 640, 272, 250, False)],
)
def test_probe_real_clips(name: str, width: int, height: int, frame_count: int, has_audio: bool) -> None:
    info = probe(clip(name))
    assert info == MediaInfo(clip(name), width, height, Fraction(25), frame_count, has_audio)
    assert isinstance(info.fps, Fraction)


# --- read_frames ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "start", "count"),
    [
        ("bikes.mp4", 100, 8),  # mid-clip, between keyframes 76 and 137
        ("bikes.mp4", 29, 4),  # starts one frame before the keyframe at 30
        ("bikes.mp4", 137, 3),  # starts on a keyframe
        ("bigbuckbunny.mp4", 60, 6),  # one keyframe only: must decode forward from frame 0
    ],
)
def test_read_frames_matches_decoding_from_start(name: str, start: int, count: int) -> None:
    path = clip(name)
    frames, info = read_frames(path, start, count)
    assert frames.shape == (count, info.height, info.width, 3)
    assert frames.dtype == np.uint8
    reference = decode_from_start(path, start + count)[start:]
    assert np.array_equal(frames, reference)
    # neighbouring frames differ, so an off-by-one would have been caught
    assert not np.array_equal(frames[0], decode_from_start(path, start + 1 + count)[start + 1])


@pytest.mark.parametrize(("name", "frame_count"), [("bikes.mp4", 250), ("bigbuckbunny.mp4", 132)])
def test_last_frames_readable(name: str, frame_count: int) -> None:
    frames, info = read_frames(clip(name), frame_count - 4, 4)
    assert info.frame_count == frame_count
    assert frames.shape == (4, info.height, info.width, 3)
    if name == "bikes.mp4":
        assert np.array_equal(frames, decode_from_start(clip(name), frame_count)[-4:])


def test_range_past_end_names_frame_count() -> None:
    path = clip("bigbuckbunny.mp4")
    with pytest.raises(RangeError) as raised:
        read_frames(path, 130, 8)
    message = str(raised.value)
    assert "130..137" in message and "132 frames" in message and str(path) in message
    assert "\n" not in message
    with pytest.raises(RangeError):
        read_frames(path, 132, 1)


def test_bad_arguments() -> None:
    path = clip("bikes.mp4")
    with pytest.raises(InvalidArgument, match="-1"):
        read_frames(path, -1, 4)
    with pytest.raises(InvalidArgument):
        read_frames(path, 0, 0)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(MediaNotFound, match="nope.mp4"):
        probe(missing)
    with pytest.raises(MediaNotFound):
        read_frames(missing, 0, 1)


def test_text_file_named_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError, match="notes.mp4") as raised:
        probe(fake)
    assert "\n" not in str(raised.value)
    with pytest.raises(MediaError):
        read_frames(fake, 0, 1)


def test_garbage_and_truncated_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="garbage.mp4"):
        read_frames(garbage, 0, 1)
    source = clip("bigbuckbunny.mp4").read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(source[: len(source) // 2])
    with pytest.raises(MediaError, match="truncated.mp4"):
        read_frames(truncated, 0, 1)


def test_folder_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(MediaError):
        probe(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        samples = np.zeros((1, 48000), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 48000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(MediaError, match="no video stream"):
        probe(path)


# --- write_mp4 round trips ---------------------------------------------------------------------------


def test_fractional_fps_round_trips_exactly(tmp_path: Path) -> None:
    fps = Fraction(30000, 1001)
    path = write_mp4(gradient_frames(13, 64, 48), tmp_path / "ntsc.mp4", fps)
    info = probe(path)
    assert info.fps == fps
    assert (info.width, info.height, info.frame_count, info.has_audio) == (64, 48, 13, False)


@pytest.mark.parametrize("count", [1, 13])
def test_frame_count_exact(tmp_path: Path, count: int) -> None:
    path = write_mp4(gradient_frames(count, 64, 48), tmp_path / "clip.mp4", Fraction(24))
    assert probe(path).frame_count == count
    assert probe(path).fps == Fraction(24)


def test_odd_size_round_trips(tmp_path: Path) -> None:
    source = gradient_frames(9, 97, 55)
    path = write_mp4(source, tmp_path / "odd.mp4", Fraction(25))
    frames, info = read_frames(path, 0, 9)
    assert (info.width, info.height, info.frame_count) == (97, 55, 9)
    assert frames.shape == source.shape
    assert np.abs(frames.astype(int) - source).mean() < 4  # lossy, but the same picture
    mid, _ = read_frames(path, 4, 3)
    assert np.array_equal(mid, frames[4:7])


def test_write_mp4_is_atomic_and_makes_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.mp4"
    assert write_mp4(gradient_frames(3, 32, 32), target, Fraction(24)) == target
    write_mp4(gradient_frames(5, 32, 32), target, Fraction(24))  # overwrites in place
    assert probe(target).frame_count == 5
    assert [p.name for p in target.parent.iterdir()] == ["out.mp4"]


def test_write_mp4_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        write_mp4(np.zeros((2, 16, 16), dtype=np.uint8), tmp_path / "x.mp4", Fraction(24))
    with pytest.raises(InvalidArgument):
        write_mp4(gradient_frames(2, 16, 16), tmp_path / "x.mp4", Fraction(0))
    assert not list(tmp_path.iterdir())


# --- working_size / resize_frames --------------------------------------------------------------------


def test_working_size_landscape_keeps_aspect() -> None:
    w, h = working_size(640, 272, 512)
    assert w == 512 and h % 8 == 0
    assert abs(h - 512 * 272 / 640) <= 8
    assert working_size(1280, 720, 512) == (512, 288)
    assert working_size(1280, 720, 500) == (504, 280)  # long side rounded to a multiple of 8, 283.5 -> 280


def test_working_size_portrait_and_square() -> None:
    assert working_size(720, 1280, 512) == (288, 512)
    w, h = working_size(272, 640, 512)
    assert h == 512 and w % 8 == 0 and abs(w - 512 * 272 / 640) <= 8
    assert working_size(300, 300, 256) == (256, 256)


def test_working_size_tiny_clamps_to_8() -> None:
    assert working_size(1000, 10, 64) == (64, 8)
    assert working_size(5, 3, 2) == (8, 8)
    with pytest.raises(InvalidArgument):
        working_size(0, 10, 64)


def test_resize_shape_and_constant_colour() -> None:
    frames = np.empty((3, 55, 97, 3), dtype=np.uint8)
    frames[:] = (12, 200, 77)
    out = resize_frames(frames, 40, 24)
    assert out.shape == (3, 24, 40, 3) and out.dtype == np.uint8
    assert (out == np.array([12, 200, 77], dtype=np.uint8)).all()
    up = resize_frames(frames, 200, 120)
    assert up.shape == (3, 120, 200, 3)
    assert (up == np.array([12, 200, 77], dtype=np.uint8)).all()


def test_resize_downscale_is_antialiased() -> None:
    checker = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    frames = np.repeat(checker[None, ..., None], 3, axis=3)
    out = resize_frames(frames, 16, 16)
    assert np.abs(out.astype(int) - 127.5).max() <= 3  # averaged to grey, not aliased to black/white


# --- PNGs and the sample clip ------------------------------------------------------------------------


def test_write_png_frames(tmp_path: Path) -> None:
    frames = gradient_frames(4, 33, 21)
    paths = write_png_frames(frames, tmp_path / "pngs", first_index=7)
    assert [p.name for p in paths] == [f"frame_{i:06d}.png" for i in range(7, 11)]
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [p.name for p in paths]
    for path, frame in zip(paths, frames, strict=True):
        with Image.open(path) as image:
            assert image.size == (33, 21) and image.mode == "RGB"
            assert np.array_equal(np.asarray(image), frame)  # PNG is lossless
    named = write_png_frames(frames[:1], tmp_path / "pngs", prefix="edit_")
    assert named[0].name == "edit_000000.png"


def test_make_sample_clip(tmp_path: Path) -> None:
    path = make_sample_clip(tmp_path / "sample.mp4", frames=10, width=160, height=96, fps=Fraction(12))
    info = probe(path)
    assert (info.width, info.height, info.frame_count, info.fps) == (160, 96, 10, Fraction(12))
    frames, _ = read_frames(path, 0, 10)
    ball = (frames[..., 0].astype(int) - frames[..., 2]) > 100  # red ball over blue sky / green ground
    centres = [np.nonzero(mask)[1].mean() for mask in ball]
    assert all(a < b for a, b in zip(centres, centres[1:], strict=False))  # it moves left to right
    assert centres[0] < 40 and centres[-1] > 120
    # the pictures are deterministic; x264 itself is not always bit-exact between runs, so compare decoded
    again, _ = read_frames(make_sample_clip(tmp_path / "again.mp4", 10, 160, 96, Fraction(12)), 0, 10)
    assert np.abs(frames.astype(int) - again).mean(axis=(1, 2, 3)).max() < 1.0


def test_make_sample_clip_defaults(tmp_path: Path) -> None:
    info = probe(make_sample_clip(tmp_path / "default.mp4"))
    assert (info.width, info.height, info.frame_count, info.fps) == (320, 192, 24, Fraction(24))
