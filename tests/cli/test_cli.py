"""The `v2vz` command end to end: real clips in, probed MP4s and PNGs out, and one-line errors for bad input.

Edits run the `tiny` preset from the session's model cache with few steps and frames. One edit and the
fast-failing errors go through the installed console script in a subprocess; the rest run in-process with
typer's CliRunner (the same `app`, without paying Python and torch start-up again).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from v2vz.cli.main import app
from v2vz_engine.media import probe, read_frames, working_size

from ..media_kit import write_mp4

CLIPS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "clips"
V2VZ = Path(sys.executable).parent / "v2vz"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def clip(name: str) -> Path:
    path = CLIPS / name
    if not path.is_file():
        pytest.skip(f"test media {path} is not available")
    return path


def plain(text: str) -> str:
    return ANSI.sub("", text)


def squeeze(text: str) -> str:
    """Without any whitespace: rich wraps long lines on a non-terminal, which must not hide a path we look for."""
    return "".join(plain(text).split())


def lines(text: str) -> list[str]:
    return [line for line in plain(text).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cache(model_cache: Path) -> Path:
    return model_cache


@pytest.fixture
def env(cache: Path) -> dict[str, str]:
    environment = dict(os.environ, V2VZ_CACHE=str(cache), HF_HUB_OFFLINE="1")
    environment.pop("V2VZ_MODEL", None)
    return environment


def run_v2vz(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert V2VZ.is_file(), f"the console script is not installed at {V2VZ}"
    return subprocess.run([str(V2VZ), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def invoke(args: list[str], cache: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("V2VZ_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("V2VZ_MODEL", raising=False)
    return CliRunner().invoke(app, args)


def local_tiny(cache: Path) -> list[str]:
    return ["--local", "--model", "tiny", "--cache-dir", str(cache)]


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def assert_clip(path: Path, frames: int, width: int, height: int, fps: Fraction) -> None:
    assert path.is_file(), f"{path} was not written"
    info = probe(path)
    assert (info.frame_count, info.width, info.height) == (frames, width, height)
    assert info.fps == fps
    pixels, _ = read_frames(path, 0, frames)
    assert pixels.std() > 1.0, "the written clip is a flat image"


# ---------------------------------------------------------------------------------------------------------------
# Edits that work


def test_edit_bikes_to_mp4_through_the_installed_command(tmp_path: Path, cache: Path, env: dict[str, str]) -> None:
    out, pngs = tmp_path / "x.mp4", tmp_path / "also"
    args = ["edit", str(clip("bikes.mp4")), "-p", "a jeep on a road", "-s", "bikes on a road"]
    args += ["--start", "100", "--frames", "6", "--steps", "3", "--out", str(out), "--png-dir", str(pngs)]
    done = run_v2vz(args + local_tiny(cache), env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert_no_traceback(done.stdout, done.stderr)
    assert_clip(out, 6, 640, 272, Fraction(25))
    said = squeeze(done.stderr)
    assert "wrote" in said and squeeze(str(out)) in said
    assert "6frames" in said and "640x272" in said and "25fps" in said
    assert f"6PNGframesin{squeeze(str(pngs))}" in said
    # --png-dir gets the same frames, in order, as the MP4 (which is lossy, so loosely).
    written = sorted(pngs.glob("*.png"))
    assert [p.name for p in written] == [f"frame_{i:06d}.png" for i in range(6)]
    mp4_frames, _ = read_frames(out, 0, 6)
    png_frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in written])
    assert png_frames.shape == (6, 272, 640, 3)
    diff = np.abs(mp4_frames.astype(int) - png_frames.astype(int)).mean(axis=(1, 2, 3))
    assert (diff < 6).all(), diff
    shifted = np.abs(mp4_frames[1:].astype(int) - png_frames[:-1].astype(int)).mean()
    assert shifted > diff.mean(), "frames written out of order"


def test_edit_to_a_folder_writes_pngs_at_the_source_size(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "frames"
    args = ["edit", str(clip("bikes.mp4")), "-p", "a jeep", "-s", "bikes", "--start", "100", "--frames", "6"]
    args += ["--steps", "2", "--fast", "--out", str(folder)]
    result = invoke(args + local_tiny(cache), cache, monkeypatch)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert_no_traceback(result.output)
    written = sorted(folder.glob("*.png"))
    assert [p.name for p in written] == [f"frame_{i:06d}.png" for i in range(6)]
    for path in written:
        with Image.open(path) as image:
            assert image.size == (640, 272) and image.mode == "RGB"
    assert not list(tmp_path.glob("*.mp4")), "--out FOLDER must not also write an MP4"
    said = squeeze(result.stderr)
    assert f"6PNGframesin{squeeze(str(folder))}" in said


def test_edit_an_image_sequence_in_windows_to_an_mp4_at_its_frame_rate(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A numbered PNG sequence from its third image, edited 2 frames at a time; --source-fps sets the MP4's rate."""
    shots = tmp_path / "shots"
    shots.mkdir()
    frames, _ = read_frames(clip("bikes.mp4"), 0, 7)
    for number, pixels in enumerate(frames, start=1):
        Image.fromarray(pixels).save(shots / f"bikes_{number:03d}.png")
    out = tmp_path / "seq.mp4"
    args = ["edit", str(shots / "bikes_003.png"), "-p", "a jeep", "-s", "bikes", "--frames", "5", "--window", "2"]
    args += ["--steps", "2", "--fast", "--size", "64", "--source-fps", "24000/1001", "--out", str(out)]
    result = invoke(args + local_tiny(cache), cache, monkeypatch)
    assert result.exit_code == 0, result.output
    info = probe(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (5, 640, 272, Fraction(24000, 1001))
    refused = invoke(args[:-2] + ["--source-fps", "fast", "--out", str(out)] + local_tiny(cache), cache, monkeypatch)
    assert refused.exit_code == 2 and "frame rate 'fast' is not a number" in plain(refused.stderr)


def test_edit_720p_clip_with_audio_at_a_small_working_size(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --out: the next take, NAME-v2vz-t1.mp4, in $V2VZ_TAKES_DIR (else beside the source), at the source's size
    and fps whatever --size is, with the source's 5.1 audio for the range."""
    import av

    monkeypatch.setenv("V2VZ_TAKES_DIR", str(tmp_path))  # never beside the shared clip
    args = ["edit", str(clip("bigbuckbunny.mp4")), "-p", "a cat", "-s", "a rabbit", "--start", "60", "--frames", "3"]
    args += ["--size", "64", "--steps", "2", "--fast"]
    result = invoke(args + local_tiny(cache), cache, monkeypatch)
    assert result.exit_code == 0, result.output
    assert_no_traceback(result.output)
    out = tmp_path / "bigbuckbunny-v2vz-t1.mp4"
    assert_clip(out, 3, 1280, 720, Fraction(25))
    said = squeeze(result.stderr)
    assert "1280x720" in said and "workedat64x40" in said and "take1:" in said
    with av.open(str(out)) as container:
        (audio,) = container.streams.audio
        assert (audio.codec_context.name, audio.channels) == ("aac", 6)
        assert abs(float(audio.duration * audio.time_base) - 3 / 25) <= 1024 / audio.rate


def test_fractional_fps_and_odd_size_survive_the_round_trip(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fps = Fraction(30000, 1001)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:57, 0:99]
    frames = np.stack([((x * 2 + y + 9 * i) % 256) for i in range(5)]).astype(np.uint8)
    frames = np.repeat(frames[..., None], 3, axis=-1)
    frames[..., 1] = rng.integers(0, 255, frames.shape[:3], dtype=np.uint8)
    source = write_mp4(frames, tmp_path / "odd.mp4", fps)
    assert probe(source).fps == fps and (probe(source).width, probe(source).height) == (99, 57)

    out = tmp_path / "odd-edited.mp4"
    args = ["edit", str(source), "-p", "snow", "-s", "stripes", "--frames", "5", "--out", str(out)]
    args += ["--size", "48", "--steps", "2", "--fast"]
    result = invoke(args + local_tiny(cache), cache, monkeypatch)
    assert result.exit_code == 0, result.output
    assert_no_traceback(result.output)
    assert_clip(out, 5, 99, 57, fps)
    said = squeeze(result.stderr)
    assert "30000/1001fps" in said and "99x57" in said
    width, height = working_size(99, 57, 48)
    assert (width, height) != working_size(99, 57, 64), "--size must not be the tiny model's native size here"
    assert f"workedat{width}x{height}" in said, "--size was not used as the working long side"


def test_sample_clip_writes_a_probeable_clip(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sub" / "sample.mp4"
    result = invoke(["sample-clip", str(path), "--frames", "10"], cache, monkeypatch)
    assert result.exit_code == 0, result.output
    assert_no_traceback(result.output)
    assert_clip(path, 10, 320, 192, Fraction(24))
    assert squeeze(str(path)) in squeeze(result.stderr)


def test_sample_clip_rejects_zero_frames_in_one_line(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke(["sample-clip", str(tmp_path / "s.mp4"), "--frames", "0"], cache, monkeypatch)
    assert result.exit_code == 2
    assert_no_traceback(result.output)
    assert len(lines(result.stderr)) == 1 and lines(result.stderr)[0].startswith("error:")
    assert not (tmp_path / "s.mp4").exists()


# ---------------------------------------------------------------------------------------------------------------
# Bad input: exit 2, one line on stderr that starts with "error:" and says why, never a traceback

# Cases whose error comes only after the model was loaded: the "loading model" progress line is printed first.


def bad_input_cases(tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (arguments after `edit`, words the error line must contain)."""
    bikes = str(clip("bikes.mp4"))
    text = tmp_path / "notes.mp4"
    text.write_text("these are my notes, not a video\n")
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "readme.txt").write_text("hello")
    both = ["-p", "a jeep", "-s", "bikes"]
    return {
        "missing file": ([str(tmp_path / "nowhere.mp4"), *both], ["nowhere.mp4", "does not exist"]),
        "not a video": ([str(text), *both], ["notes.mp4", "cannot be read as video"]),
        "range past the end": ([bikes, *both, "--start", "248", "--frames", "8"], ["248..255", "250 frames"]),
        "empty prompt": ([bikes, "-p", "", "-s", "bikes"], ["prompt is empty", "--prompt"]),
        "blank prompt": ([bikes, "-p", "   ", "-s", "bikes"], ["prompt is empty"]),
        "empty source prompt": ([bikes, "-p", "a jeep", "-s", ""], ["source prompt is empty", "--source-prompt"]),
        "negative frames": ([bikes, *both, "--frames", "-2"], ["frames", "got -2"]),
        "start past the end": ([bikes, *both, "--start", "250", "--frames", "0"], ["start frame 250 is past the end"]),
        "unknown preset": ([bikes, *both, "--preset", "fancy"], ["unknown preset", "'fancy'", "published"]),
        "unknown attention": ([bikes, *both, "--attention", "sideways"], ["attention", "'sideways'", "dense"]),
        "model folder is not diffusers": (
            [bikes, *both, "--model", str(tmp_path / "not-a-model")],
            ["not-a-model", "not a diffusers"],
        ),
    }


CASE_NAMES = [
    "missing file",
    "not a video",
    "range past the end",
    "empty prompt",
    "blank prompt",
    "empty source prompt",  # a missing one is a usage error of the command: tests/cli/test_progress_and_words.py
    "negative frames",
    "start past the end",
    "unknown preset",
    "unknown attention",
    "model folder is not diffusers",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_one_error_line_with_exit_2(
    case: str, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, reasons = bad_input_cases(tmp_path)[case]
    extra = ["--model", "tiny", "--cache-dir", str(cache)] if "--model" not in args else ["--cache-dir", str(cache)]
    result = invoke(
        ["edit", *args, "--local", "--steps", "2", "--out", str(tmp_path / "o.mp4"), *extra], cache, monkeypatch
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert_no_traceback(result.output)
    assert result.stdout == ""
    said = lines(result.stderr)
    errors = [line for line in said if line.startswith("error:")]
    assert len(errors) == 1 and said[-1] == errors[0], said
    for reason in reasons:
        assert reason in errors[0], errors[0]
    assert not (tmp_path / "o.mp4").exists()
    assert said == errors


def test_without_local_or_daemon_says_to_start_one_or_pass_local(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = tmp_path / "no-daemon" / "endpoint.json"
    monkeypatch.setenv("V2VZ_ENDPOINT", str(endpoint))
    args = ["edit", str(clip("bikes.mp4")), "-p", "a jeep", "-s", "bikes", "--out", str(tmp_path / "o.mp4")]
    result = invoke(args, cache, monkeypatch)
    assert result.exit_code == 2
    said = lines(result.stderr)
    assert len(said) == 1 and said[0].startswith("error:"), said
    for words in ("no v2vz daemon is running", str(endpoint), "v2vz serve", "pass --local"):
        assert words in said[0], said
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(
    "args, reason",
    [
        (["-p", "", "-s", "bikes", "--local"], "prompt is empty"),
        (["-p", "a jeep", "-s", "bikes"], "pass --local"),
        (["-p", "a jeep", "-s", "bikes", "--local", "--start", "248", "--frames", "8"], "outside"),
    ],
    ids=["empty prompt", "no daemon", "range past the end"],
)
def test_installed_command_prints_one_line_and_exits_2(
    args: list[str], reason: str, tmp_path: Path, cache: Path, env: dict[str, str]
) -> None:
    out = tmp_path / "o.mp4"
    args = ["edit", str(clip("bikes.mp4")), *args, "--out", str(out), "--model", "tiny", "--cache-dir", str(cache)]
    env = dict(env, V2VZ_ENDPOINT=str(tmp_path / "no-daemon" / "endpoint.json"))  # never a daemon of this machine
    done = run_v2vz(args, env, tmp_path)
    assert done.returncode == 2
    assert_no_traceback(done.stdout, done.stderr)
    assert done.stdout == ""
    said = lines(done.stderr)
    assert said and said[-1].startswith("error:") and reason in said[-1], said
    assert not list(tmp_path.iterdir())
    assert len(said) == 1, said


@pytest.mark.parametrize("name", ["clip[final]", "a[/b]c"])
def test_paths_with_brackets_are_printed_verbatim(
    name: str, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    args = ["edit", str(clip("bikes.mp4")), "-p", "a jeep", "-s", "bikes", "--out", str(tmp_path / "o.mp4")]
    result = invoke([*args, "--local", "--model", str(folder)], cache, monkeypatch)
    assert result.exit_code == 2, result.exception
    assert str(folder) in plain(result.stderr)


def test_wrote_message_keeps_a_long_path_on_one_line(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ("a_long_folder_name_" * 4) / "sample_clip_with_a_rather_long_name.mp4"
    result = invoke(["sample-clip", str(path), "--frames", "2"], cache, monkeypatch)
    assert result.exit_code == 0
    assert str(path) in plain(result.stderr)
