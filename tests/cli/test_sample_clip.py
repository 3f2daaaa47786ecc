"""`v2vz sample-clip` writes over its own earlier sample and over nothing else (the sample's container tag decides),
now that the clip is drawn and tagged in the command's own module (issue 24, item 7)."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from v2vz.api.errors import EXIT_USER
from v2vz.cli.main import app
from v2vz.cli.sample import is_sample_clip
from v2vz_engine.media import probe

from ..media_kit import make_clip

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def sample_clip(path: Path, frames: int):
    size = ["--width", "64", "--height", "48"]
    return CliRunner().invoke(app, ["sample-clip", str(path), "--frames", str(frames), *size])


def test_sample_clip_writes_over_its_own_sample(tmp_path: Path) -> None:
    path = tmp_path / "sample.mp4"
    assert sample_clip(path, 4).exit_code == 0
    assert is_sample_clip(path) and probe(path).frame_count == 4
    again = sample_clip(path, 6)
    assert again.exit_code == 0, again.output
    info = probe(path)
    assert (info.frame_count, info.width, info.height, info.has_audio) == (6, 64, 48, True)
    assert info.timecode == "01:00:00:00"


def test_sample_clip_never_writes_over_another_clip(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "mine.mp4", frames=3)
    before = path.read_bytes()
    assert not is_sample_clip(path)
    result = sample_clip(path, 4)
    assert result.exit_code == EXIT_USER
    shown = [line for line in ANSI.sub("", result.stderr).splitlines() if line.strip()]
    assert len(shown) == 1 and shown[0].startswith("error:") and "is not a v2vz sample clip" in shown[0]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.mp4"]
