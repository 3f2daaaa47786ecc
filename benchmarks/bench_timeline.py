"""`v2vz timeline --dry-run` on long timelines: how its time grows with the number of marked clips.

    python benchmarks/bench_timeline.py [--clips 1000,10000] [--per-clip] [--same-edit]

For each count in --clips, a one-track `.otio` of that many marked clips (4 frames each of one real 30-frame clip,
each with its own prompt unless --same-edit, when all ask for the same edit and share one job) is written to a
temporary folder, then `v2vz timeline IN --out OUT --dry-run --quiet` runs in this process. Printed per count: the
seconds of the whole command, of finding the clips (clips.find_clips) and of placing them (clips.record_ranges), and
microseconds per clip: flat per-clip figures mean linear growth.

--per-clip also times the way each clip was placed before (OTIO's `transformed_time_range` of every clip, which
walks its track from the start each time, and once more for the track's length): the square of the track's length.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import opentimelineio as otio
from typer.testing import CliRunner

from v2vz.cli.main import app
from v2vz.timeline import clips

RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange


def make_media(path: Path, frames: int = 30) -> Path:
    """A tiny real clip at 24 fps (64x48, MPEG-4 Part 2)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            pixels = np.full((48, 64, 3), index * 8, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_timeline(path: Path, media: Path, count: int, same_edit: bool) -> Path:
    timeline = otio.schema.Timeline(name=f"{count} clips")
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    available = TR(RT(0, 24), RT(30, 24))
    for index in range(count):
        first = 0 if same_edit else index % 26
        clip = otio.schema.Clip(
            name=f"c{index}",
            media_reference=otio.schema.ExternalReference(target_url=media.as_uri(), available_range=available),
            source_range=TR(RT(first, 24), RT(4, 24)),
        )
        prompt = "a jeep" if same_edit else f"a jeep {index}"
        clip.markers.append(otio.schema.Marker(name=f"source: a car; prompt: {prompt}", marked_range=TR(RT(first, 24))))
        track.append(clip)
    otio.adapters.write_to_file(timeline, str(path))
    return path


def per_clip_ranges(track: otio.schema.Track, timeline: otio.schema.Timeline) -> list[otio.opentime.TimeRange]:
    """How clips were placed before: each on its own, from the start of its track."""
    return [item.transformed_time_range(item.trimmed_range(), timeline.tracks) for item in track]


class Timed:
    """Seconds spent in a function while the command runs."""

    def __init__(self, owner, name: str) -> None:
        self.owner, self.name, self.seconds = owner, name, 0.0
        self.inner = getattr(owner, name)

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def __enter__(self) -> Timed:
        setattr(self.owner, self.name, self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        setattr(self.owner, self.name, self.inner)


def run(cut: Path, out: Path) -> tuple[float, float, float]:
    with Timed(clips, "find_clips") as finding, Timed(clips, "record_ranges") as placing:
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["timeline", str(cut), "--out", str(out), "--dry-run", "--quiet"])
        total = time.perf_counter() - started
    if result.exit_code != 0:
        sys.exit(f"the dry run failed: {result.stderr[-500:]}")
    return total, finding.seconds, placing.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", default="1000,10000", help="comma-separated clip counts")
    parser.add_argument("--per-clip", action="store_true", help="also time the per-clip placing of before")
    parser.add_argument("--same-edit", action="store_true", help="every clip asks for the same edit (one job)")
    args = parser.parse_args()
    counts = [int(text) for text in args.clips.split(",")]
    cpu_before = os.times()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        media = make_media(base / "shot.mov")
        print(f"{'clips':>7} {'placing':>10} {'command s':>10} {'find s':>8} {'place s':>8} {'us/clip':>8}")
        for count in counts:
            cut = make_timeline(base / f"cut{count}.otio", media, count, args.same_edit)
            modes = [("one pass", None)] + ([("per clip", per_clip_ranges)] if args.per_clip else [])
            for label, replacement in modes:
                original = clips.record_ranges
                if replacement is not None:
                    clips.record_ranges = replacement
                try:
                    total, finding, placing = run(cut, base / "out.otio")
                finally:
                    clips.record_ranges = original
                per_clip = total / count * 1e6
                print(f"{count:>7} {label:>10} {total:>10.2f} {finding:>8.2f} {placing:>8.2f} {per_clip:>8.0f}")
    used = os.times()
    print(f"this process used {used.user - cpu_before.user + used.system - cpu_before.system:.1f} s of CPU")


if __name__ == "__main__":
    main()
