"""`v2vz sample-clip --world CAPTION`: a clip of the toy world whose every decoded frame the world's classifier reads
as the caption (H.264 is lossy, the classifier strict but fair), its truth beside it with --truth, and one-line
refusals that write nothing."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from v2vz.api.errors import EXIT_USER
from v2vz.cli.main import app
from v2vz.cli.sample import is_sample_clip
from v2vz.world.measure import iou, read
from v2vz.world.scene import vocabulary
from v2vz_engine.media import probe, read_frames

from ..media_kit import make_clip

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def sample_clip(path: Path, *args: str):
    return CliRunner().invoke(app, ["sample-clip", str(path), *args])


def shown(text: str) -> list[str]:
    return [line for line in ANSI.sub("", text).splitlines() if line.strip()]


def readings(path: Path, count: int) -> list:
    frames, _ = read_frames(path, 0, count)
    return [read(frame) for frame in frames]


def test_a_world_clip_shows_its_caption_in_every_frame_with_its_truth(tmp_path: Path) -> None:
    """The defaults: 24 frames at 256x256 and 24 fps, a stereo tone, timecode 01:00:00:00, a sample's tag."""
    path, truth = tmp_path / "clip.mp4", tmp_path / "truth"
    result = sample_clip(path, "--world", "a purple box on grey road", "--pan", "1", "--truth", str(truth))
    assert result.exit_code == 0, result.output
    said = shown(result.stderr)
    assert len(said) == 1 and said[0].startswith(f"wrote {path}: 'a purple box on grey road', 24 frames at 256x256")
    info = probe(path)
    assert (info.frame_count, info.width, info.height, info.fps) == (24, 256, 256, Fraction(24))
    assert info.has_audio and info.timecode == "01:00:00:00" and is_sample_clip(path)

    seen = readings(path, 24)
    assert {(r.colour, r.object, r.background) for r in seen} == {("purple", "box", "grey road")}
    about = json.loads((truth / "truth.json").read_text(encoding="utf-8"))
    assert (about["caption"], about["width"], about["height"]) == ("a purple box on grey road", 256, 256)
    assert sorted(p.name for p in truth.iterdir()) == sorted([f"mask_{i:06d}.png" for i in range(24)] + ["truth.json"])
    assert [row["frame"] for row in about["frames"]] == list(range(24))
    for row, reading in zip(about["frames"], seen, strict=True):
        assert (row["colour"], row["object"], row["background"]) == ("purple", "box", "grey road")
        centroid = row["centroid"]
        assert np.hypot(centroid["x"] - reading.centroid[0], centroid["y"] - reading.centroid[1]) <= 2.0, row
        mask = np.asarray(Image.open(truth / row["mask"]))
        assert mask.shape == (256, 256) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
        assert iou(mask == 255, reading.mask) > 0.9 and row["area"] == int((mask == 255).sum())
        assert 6 * 4 <= row["size"] <= 14 * 4  # a half-side in pixels of the clip (world scale 4)
    first, last = about["frames"][0]["centroid"], about["frames"][-1]["centroid"]
    assert np.hypot(last["x"] - first["x"], last["y"] - first["y"]) > 16, "the object hardly moves"


def test_a_world_clip_at_another_size_and_seed_writes_over_its_own_sample(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    assert sample_clip(path, "--world", "a red ball on green grass", "--frames", "3").exit_code == 0
    result = sample_clip(
        path, "--world", "A yellow ball on white  snow", "--frames", "5", "--width", "128", "--seed", "9"
    )
    assert result.exit_code == 0, result.output
    assert "'a yellow ball on white snow', 5 frames at 128x128" in shown(result.stderr)[0]
    info = probe(path)
    assert (info.frame_count, info.width, info.height, info.has_audio) == (5, 128, 128, True)
    assert {(r.colour, r.object, r.background) for r in readings(path, 5)} == {("yellow", "ball", "white snow")}


@pytest.mark.parametrize(
    "args, said",
    [
        (["--world", "an orange ball on green grass"], vocabulary()),
        (["--world", "a red ball on the beach"], "is not a caption of the world"),
        (["--world", "a red ball on green grass", "--width", "100", "--height", "100"], "not 100x100"),
        (["--world", "a red ball on green grass", "--width", "256", "--height", "128"], "square, a multiple of 64"),
        (["--world", "a red ball on green grass", "--frames", "0"], "at least 1 frame"),
        (["--world", "a red ball on green grass", "--seed", "-1"], "--seed must be 0 or more"),
        (["--seed", "3"], "give --world CAPTION too"),
        (["--pan", "1"], "give --world CAPTION too"),
    ],
    ids=["colour", "background", "size", "not-square", "frames", "seed", "seed-alone", "pan-alone"],
)
def test_bad_input_is_refused_in_one_line_and_writes_nothing(tmp_path: Path, args: list[str], said: str) -> None:
    result = sample_clip(tmp_path / "clip.mp4", *args, "--truth", str(tmp_path / "truth"))
    assert result.exit_code == EXIT_USER, result.output
    lines = shown(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:") and said in lines[0], lines
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_truth_folder_with_files_in_it_is_refused(tmp_path: Path, kind: str) -> None:
    """--truth never writes over (or beside) earlier files: a folder must be new or empty."""
    truth = tmp_path / "truth"
    notes = truth / "notes.txt" if kind == "folder" else truth
    notes.parent.mkdir(exist_ok=True)
    notes.write_text("mine", encoding="utf-8")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = sample_clip(tmp_path / "clip.mp4", "--world", "a blue box on white snow", "--truth", str(truth))
    assert result.exit_code == EXIT_USER
    lines = shown(result.stderr)
    said = "has files in it already" if kind == "folder" else "is a file"
    assert len(lines) == 1 and lines[0].startswith("error:") and said in lines[0], lines
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and notes.read_text(encoding="utf-8") == "mine"


def test_a_world_clip_never_writes_over_another_clip(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "mine.mp4", frames=3)
    before = path.read_bytes()
    result = sample_clip(path, "--world", "a red ball on green grass", "--truth", str(tmp_path / "truth"))
    assert result.exit_code == EXIT_USER
    lines = shown(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:") and "is not a v2vz sample clip" in lines[0]
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["mine.mp4"]
