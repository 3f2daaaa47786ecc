"""The output timeline: the input unchanged, the v2vz tracks of earlier runs, and a new video track of the edits.

Each edit clip sits at its source clip's record position with its duration exactly (gaps elsewhere), points at the
take file, and records what made it in `metadata["v2vz"]`. Edits whose source clips overlap in time (clips marked
on two tracks) cannot share a track: they go on a second one of the same run. The new track goes on top, so the
edits are what the timeline shows; the source clips stay underneath.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import opentimelineio as otio

from v2vz.timeline.clips import is_v2vz_track
from v2vz.timeline.media import MediaFacts, url_to_path
from v2vz.timeline.prompts import METADATA_KEY
from v2vz.timeline.ranges import time_of, timecode_frames


@dataclass(frozen=True)
class Placement:
    """One edit to place: its source clip's name and record range, its take file and what it is."""

    name: str
    record: otio.opentime.TimeRange
    take: MediaFacts  # the take file as probed once it is written
    record_metadata: dict[str, Any] = field(default_factory=dict)  # prompt, source, model, take, job_id, ...
    take_number: int | None = None
    timecode_clock: bool = True  # count the take's frames from its start timecode, as the source clip's are


def edit_clip(placement: Placement) -> otio.schema.Clip:
    """A clip of the take at exactly its source clip's record duration, on the clock its source clip's media is
    counted on: the take's start timecode (which is the timecode of the first frame edited), or 0."""
    take, duration = placement.take, placement.record.duration
    first = timecode_frames(take.timecode, take.fps) if take.timecode and placement.timecode_clock else 0
    start = time_of(first, take.fps, duration)
    available = otio.opentime.TimeRange(start, time_of(take.frames, take.fps, duration))
    reference = otio.schema.ExternalReference(target_url=Path(take.path).absolute().as_uri(), available_range=available)
    label = f" v2vz t{placement.take_number}" if placement.take_number else " v2vz"
    clip = otio.schema.Clip(
        name=f"{placement.name or take.path.stem}{label}",
        media_reference=reference,
        source_range=otio.opentime.TimeRange(start, duration),
    )
    clip.metadata[METADATA_KEY] = dict(placement.record_metadata)
    return clip


def free_name(base: str, taken: set[str]) -> str:
    """`base`, else `base 2`, `base 3`, ...: the first name no track has."""
    if base not in taken:
        return base
    number = 2
    while f"{base} {number}" in taken:
        number += 1
    return f"{base} {number}"


def edit_tracks(
    placements: list[Placement], base_name: str, taken: set[str], run: dict[str, Any]
) -> list[otio.schema.Track]:
    """The video tracks of one run: the edits in record order, gaps between them, overlapping ones on more tracks."""
    lanes: list[list[Placement]] = []
    for placement in sorted(placements, key=lambda p: p.record.start_time.to_seconds()):
        for lane in lanes:
            if lane[-1].record.end_time_exclusive().to_seconds() <= placement.record.start_time.to_seconds() + 1e-9:
                lane.append(placement)
                break
        else:
            lanes.append([placement])
    tracks = []
    names = set(taken)
    for lane in lanes:
        name = free_name(base_name, names)
        names.add(name)
        track = otio.schema.Track(name=name, kind=otio.schema.TrackKind.Video)
        track.metadata[METADATA_KEY] = {"track": name, **run}
        cursor = otio.opentime.RationalTime(0, lane[0].record.start_time.rate)
        for placement in lane:
            gap = placement.record.start_time - cursor
            if gap.to_seconds() > 1e-9:
                track.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(gap - gap, gap)))
            track.append(edit_clip(placement))
            cursor = placement.record.end_time_exclusive()
        tracks.append(track)
    return tracks


def _signature(track: otio.schema.Track) -> tuple:
    urls = tuple(
        getattr(item.media_reference, "target_url", "") for item in track if isinstance(item, otio.schema.Clip)
    )
    return (track.name, urls)


def earlier_tracks(previous: otio.schema.Timeline | None, timeline: otio.schema.Timeline) -> list[otio.schema.Track]:
    """The v2vz tracks of an earlier OUT that the input does not hold already (the input may be that OUT)."""
    if previous is None:
        return []
    have = {_signature(t) for t in timeline.tracks if isinstance(t, otio.schema.Track)}
    carried = []
    for track in previous.tracks:
        if isinstance(track, otio.schema.Track) and is_v2vz_track(track) and _signature(track) not in have:
            carried.append(track.deepcopy())
    return carried


def anchored(timeline: otio.schema.Timeline, base: Path, out_folder: Path) -> None:
    """Media paths relative to the input's folder made absolute, when the output goes to another folder (an
    output's relative paths are read from its own folder)."""
    if Path(base).absolute() == Path(out_folder).absolute():
        return
    for clip in timeline.find_clips(shallow_search=False):
        ref = clip.media_reference
        if not isinstance(ref, otio.schema.ExternalReference):
            continue
        url = ref.target_url or ""
        if (
            url
            and "://" not in url
            and not url.lower().startswith("file:")
            and not Path(url).expanduser().is_absolute()
        ):
            try:
                ref.target_url = str(url_to_path(url, base))
            except ValueError:
                continue


def compose(
    timeline: otio.schema.Timeline,
    placements: list[Placement],
    track_name: str,
    run: dict[str, Any],
    previous: otio.schema.Timeline | None = None,
    folders: tuple[Path, Path] | None = None,
) -> tuple[otio.schema.Timeline, list[str]]:
    """The output timeline and the names of the tracks this run added (folders: the input's and the output's)."""
    out = timeline.deepcopy()
    if folders is not None:
        anchored(out, *folders)
    for track in earlier_tracks(previous, timeline):
        out.tracks.append(track)
    taken = {track.name for track in out.tracks}
    added = edit_tracks(placements, track_name, taken, run) if placements else []
    for track in added:
        out.tracks.append(track)
    return out, [track.name for track in added]
