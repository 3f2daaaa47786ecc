"""Which OTIO adapter a timeline file needs, and reading and writing through it with each format's fix-ups.

A file's extension names its format. A format whose adapter plugin is not installed is refused before any work with
one line naming the package; so is an extension no installed adapter knows. Writing prepares a copy of the timeline
for formats that cannot hold all of it (docs/timelines.md): an EDL holds one video track, so the video tracks are
flattened into it (the edits in place of their source clips); AAF cannot write OTIO's own transitions, so they
become cuts; FCP 7 XML keeps a marker's comment only in its own metadata, where it is copied. Adapters that print
(the Kdenlive one announces its deprecation on stdout) are kept quiet: stdout belongs to the command.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio

from v2vz.api.errors import InvalidArgument, MediaNotFound, OutputUnwritable, one_line
from v2vz.api.files import atomic_path
from v2vz.api.safe_json import check_depth
from v2vz.timeline.media import MediaCache, MediaProblem, url_to_path
from v2vz.timeline.ranges import RangeProblem, exact_rate, rate_text, time_of, timecode_frames

EXTRA = "pip install 'v2vz[timeline]'"


@dataclass(frozen=True)
class TimelineFormat:
    suffix: str  # ".xml"
    adapter: str  # OTIO's adapter name, "fcp_xml"
    label: str  # "FCP 7 XML"
    package: str  # the plugin that brings the adapter, "otio-fcp-adapter"


KNOWN_FORMATS: dict[str, TimelineFormat] = {
    fmt.suffix: fmt
    for fmt in (
        TimelineFormat(".otio", "otio_json", "OpenTimelineIO", "opentimelineio"),
        TimelineFormat(".xml", "fcp_xml", "FCP 7 XML", "otio-fcp-adapter"),
        TimelineFormat(".fcpxml", "fcpx_xml", "FCPX XML", "otio-fcpx-xml-adapter"),
        TimelineFormat(".edl", "cmx_3600", "CMX 3600 EDL", "otio-cmx3600-adapter"),
        TimelineFormat(".kdenlive", "kdenlive", "Kdenlive", "otio-kdenlive-adapter"),
        TimelineFormat(".aaf", "AAF", "AAF", "otio-aaf-adapter"),
    )
}
NATIVE = frozenset({"otio_json", "otioz", "otiod"})  # OTIO's own formats: they keep everything
RATELESS = frozenset({"cmx_3600"})  # formats whose files do not say their frame rate
FCPX_RATES = frozenset({24, 25, 30, 50, 60})  # otio-fcpx-xml-adapter 1.0 rounds every other rate down


@contextlib.contextmanager
def quiet_adapter() -> Iterator[None]:
    """Whatever an adapter prints goes nowhere (the Kdenlive adapter's banner, FCPX's ffprobe notes)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def installed_adapters() -> dict[str, Any]:
    """OTIO's adapters that are installed, by name."""
    with quiet_adapter():
        return {name: otio.adapters.from_name(name) for name in otio.adapters.available_adapter_names()}


def timeline_format(path: Path, purpose: str = "read") -> TimelineFormat:
    """The format `path`'s extension names, with its adapter installed and able to `purpose` (read or write)."""
    path = Path(path)
    suffix = path.suffix.lower()
    installed = installed_adapters()
    known = KNOWN_FORMATS.get(suffix)
    if known is None:
        for name, adapter in installed.items():  # another installed plugin may know it (.otioz, .ale, ...)
            if suffix.lstrip(".") in adapter.suffixes:
                known = TimelineFormat(suffix, name, name, f"the plugin of the {name} adapter")
                break
    if known is None:
        names = ", ".join(sorted(KNOWN_FORMATS))
        what = f"the extension {suffix}" if suffix else "a name without an extension"
        raise InvalidArgument(f"{path}: OpenTimelineIO has no adapter for {what}; timelines are {names}")
    adapter = installed.get(known.adapter)
    if adapter is None:
        raise InvalidArgument(
            f"{'writing' if purpose == 'write' else 'reading'} {known.label} ({suffix}) needs the OTIO adapter plugin "
            f"{known.package}: "
            f"pip install {known.package} (or {EXTRA})"
        )
    if not adapter.has_feature(purpose):
        raise InvalidArgument(f"the {known.label} adapter ({known.package}) cannot {purpose} {suffix} files")
    return known


def read_timeline(path: Path, rate: Fraction | None = None) -> otio.schema.Timeline:
    """The one timeline in `path`; rate: the frame rate of a format that does not store one (EDL: 24 if None)."""
    path = Path(path)
    fmt = timeline_format(path, "read")
    if not path.exists():
        raise MediaNotFound(f"{path} does not exist: give the timeline file your editor exported")
    if path.is_dir():
        raise InvalidArgument(f"{path} is a folder: give the timeline file your editor exported")
    options: dict[str, Any] = {}
    if fmt.adapter in RATELESS:
        options["rate"] = float(rate or 24)
    guard_json(path, fmt)
    try:
        with quiet_adapter():
            read = otio.adapters.read_from_file(str(path), adapter_name=fmt.adapter, **options)
    except Exception as error:  # adapters raise anything (ParseError, KeyError, their own): one line says which
        reason = one_line(str(error)) or type(error).__name__
        raise InvalidArgument(f"cannot read {path} as {fmt.label}: {reason}") from None
    timeline = _the_timeline(read, path, fmt)
    check_times(timeline, path)
    return timeline


def guard_json(path: Path, fmt: TimelineFormat) -> None:
    """Refuse an OTIO JSON file nested deeper than any timeline is, before OTIO's C++ reader (which recursion
    crashes, SIGSEGV) sees it."""
    if fmt.adapter == "otio_json":
        check_depth(path.read_text(encoding="utf-8", errors="replace"), f"{path} ({fmt.label})")


def _the_timeline(read: Any, path: Path, fmt: TimelineFormat) -> otio.schema.Timeline:
    """The one timeline an adapter read: the file itself, or the only one in a collection; one line otherwise
    (a file of `null`, a list, a clip, an unknown schema holds none)."""
    if isinstance(read, otio.schema.Timeline):
        return read
    if not hasattr(read, "find_children"):
        raise InvalidArgument(f"{path} holds no timeline ({fmt.label}): it holds {_what(read)}")
    timelines = list(read.find_children(descended_from_type=otio.schema.Timeline, shallow_search=False))
    if len(timelines) == 1:
        return timelines[0].deepcopy()  # its own object: the collection that holds it goes away here
    if not timelines:
        raise InvalidArgument(f"{path} holds no timeline ({fmt.label})")
    names = ", ".join(repr(t.name) for t in timelines[:5]) + (", ..." if len(timelines) > 5 else "")
    raise InvalidArgument(f"{path} holds {len(timelines)} timelines ({names}): export the one to edit alone")


def _what(read: Any) -> str:
    """What a file holds instead of a timeline, in words."""
    if read is None:
        return "null"
    if isinstance(read, otio._otio.UnknownSchema):
        return f"an object of the unknown schema {read.original_schema_name}.{read.original_schema_version}"
    if isinstance(read, otio.core.SerializableObject):
        return f"a {read.schema_name()}, not a timeline"
    kinds = {otio._otio.AnyVector: "a list", otio._otio.AnyDictionary: "an object without OTIO_SCHEMA"}
    return kinds.get(type(read), f"a {type(read).__name__}")


def check_times(timeline: otio.schema.Timeline, path: Path) -> None:
    """Refuse a timeline with a time that is not a number (NaN or infinite value or rate): no clip, gap, marker or
    transition of it could be placed, and OTIO would write it back as it is."""

    def check(owner: str, *times: otio.opentime.RationalTime | otio.opentime.TimeRange | None) -> None:
        for time in times:
            if isinstance(time, otio.opentime.TimeRange):
                check(owner, time.start_time, time.duration)
            elif time is not None and not (math.isfinite(time.value) and math.isfinite(time.rate)):
                raise InvalidArgument(
                    f"cannot read {path}: {owner} has the time {time.value:g} at {time.rate:g} fps, which is not a "
                    "number: export the timeline again"
                )

    check("its start time", timeline.global_start_time)
    for item in [timeline.tracks, *timeline.find_children(shallow_search=False)]:
        owner = f"{item.schema_name().lower()} {item.name!r}" if item.name else f"a {item.schema_name().lower()}"
        check(owner, getattr(item, "source_range", None))
        if isinstance(item, otio.schema.Transition):
            check(owner, item.in_offset, item.out_offset)
        reference = getattr(item, "media_reference", None)
        if reference is not None:
            check(f"the media of {owner}", reference.available_range)
        for marker in getattr(item, "markers", []):
            check(f"a marker of {owner}", marker.marked_range)


def timeline_rates(timeline: otio.schema.Timeline) -> set[Fraction]:
    """The exact rates of the timeline's clips and gaps (what a format must be able to count in)."""
    rates = set()
    for item in timeline.find_children(shallow_search=False):
        if isinstance(item, otio.core.Item) and item.source_range is not None:
            rates.add(exact_rate(item.source_range.duration.rate))
    return rates


def check_writable(path: Path, timeline: otio.schema.Timeline) -> TimelineFormat:
    """The format of `path`, refused at once when it cannot hold this timeline (before any edit runs)."""
    fmt = timeline_format(path, "write")
    if fmt.adapter == "fcpx_xml":
        odd = sorted(rate for rate in timeline_rates(timeline) if rate not in FCPX_RATES)
        if odd:
            raise InvalidArgument(
                f"--out {Path(path).name}: the FCPX XML adapter ({fmt.package} 1.0) writes only "
                f"{', '.join(str(r) for r in sorted(FCPX_RATES))} fps and this timeline runs at "
                f"{', '.join(rate_text(r) for r in odd)}: write .otio or .xml instead"
            )
    return fmt


def write_timeline(timeline: otio.schema.Timeline, path: Path) -> list[str]:
    """Write `timeline` to `path` in the format of its extension, atomically; returns notes on what the format
    could not hold."""
    path = Path(path)
    fmt = check_writable(path, timeline)
    prepared, options, notes = prepare(fmt, timeline, path.parent)
    if not path.parent.is_dir():
        raise OutputUnwritable(f"--out {path}: the folder {path.parent} does not exist")
    try:
        with atomic_path(path, suffix=fmt.suffix) as temp, quiet_adapter():
            otio.adapters.write_to_file(prepared, str(temp), adapter_name=fmt.adapter, **options)
    except OSError as error:
        raise OutputUnwritable(f"cannot write {path} ({error.strerror or error})") from None
    except Exception as error:  # an adapter's refusal: one line that names the format
        reason = one_line(str(error)) or type(error).__name__
        raise InvalidArgument(f"cannot write {path} as {fmt.label}: {reason}") from None
    return notes


def prepare(
    fmt: TimelineFormat, timeline: otio.schema.Timeline, base: Path = Path(".")
) -> tuple[otio.schema.Timeline, dict, list[str]]:
    """A copy of `timeline` that `fmt`'s adapter can write, its write options, and what was given up."""
    copy = timeline.deepcopy()
    notes: list[str] = []
    options: dict[str, Any] = {}
    if fmt.adapter not in NATIVE:
        # other adapters place a track's items from 0, whatever its source range says, and some need every media
        # reference's available range (an EDL gives none)
        for index, track in enumerate(list(copy.tracks)):
            if isinstance(track, otio.schema.Track) and track.source_range is not None:
                copy.tracks[index] = plain_track(track)
        fill_available_ranges(copy, base)
    if fmt.adapter == "cmx_3600":
        video = [t for t in copy.tracks if isinstance(t, otio.schema.Track) and t.kind == otio.schema.TrackKind.Video]
        audio = [t for t in copy.tracks if isinstance(t, otio.schema.Track) and t.kind == otio.schema.TrackKind.Audio]
        if len(video) > 1:
            flat = otio.algorithms.flatten_stack(video)
            flat.name = video[0].name
            notes.append(
                f"an EDL holds one video track: the {len(video)} video tracks are flattened into it, each edit in "
                "place of its source clip"
            )
            video = [flat]
        copy.tracks[:] = [track.deepcopy() for track in [*video, *audio[:2]]]
    elif fmt.adapter == "AAF":
        options["use_empty_mob_ids"] = True  # clips from other formats have no Avid MobID; Avid relinks by name
        dropped = 0
        for track in copy.find_children(descended_from_type=otio.schema.Track, shallow_search=False):
            for item in list(track):
                if isinstance(item, otio.schema.Transition) and "AAF" not in item.metadata:
                    track.remove(item)
                    dropped += 1
        if dropped:
            notes.append(f"AAF: {dropped} transition(s) not made in an AAF became cuts (the adapter writes only those)")
    if fmt.adapter in ("fcpx_xml", "kdenlive") and any(
        isinstance(item, otio.schema.Transition) for item in copy.find_children(shallow_search=False)
    ):
        notes.append(f"{fmt.label}: the adapter ({fmt.package}) writes no transitions: they are cuts in this file")
    if fmt.adapter not in NATIVE:
        notes.append(
            f"{fmt.label} keeps no clip metadata: each edit's prompts, model and take are in the record beside its "
            "file (NAME-v2vz-tN.mov.v2vz.json)"
        )
    if fmt.adapter == "fcp_xml":
        for marker in _markers(copy):
            comment = getattr(marker, "comment", "")
            if comment:
                stash = marker.metadata.get("fcp_xml")
                stash = dict(stash.items()) if hasattr(stash, "items") else {}
                stash.setdefault("comment", comment)
                marker.metadata["fcp_xml"] = stash
    return copy, options, notes


def plain_track(track: otio.schema.Track) -> otio.schema.Track:
    """The same picture as a track without a source range.

    A range that starts before the track's first item is how the EDL reader places a first event that is not at
    0 (its duration then leaves the track's end out, which it does not mean): a leading gap. A range that starts
    inside the track trims its head, and its tail where the range ends before the track does."""
    window = track.source_range
    plain = track.deepcopy()
    plain.source_range = None
    start = window.start_time
    zero = start - start
    if start.value < 0:
        plain.insert(0, otio.schema.Gap(source_range=otio.opentime.TimeRange(zero, -start)))
        return plain
    if start.value > 0 or window.duration < plain.duration():
        plain = otio.algorithms.track_trimmed_to_range(plain, window)
        plain.source_range = None
    return plain


def fill_available_ranges(timeline: otio.schema.Timeline, base: Path) -> None:
    """Media references without an available range get their file's (its start timecode and frames), or, when the
    file cannot be read, the clip's own source range."""
    cache = MediaCache()
    for clip in timeline.find_clips(shallow_search=False):
        ref = clip.media_reference
        if not isinstance(ref, otio.schema.ExternalReference) or ref.available_range is not None:
            continue
        used = clip.source_range
        try:
            facts = cache.probe(url_to_path(ref.target_url, base))
            rate = used.duration.rate if used is not None else float(facts.fps)
            first = timecode_frames(facts.timecode, facts.fps) if facts.timecode else 0
            like = otio.opentime.RationalTime(0, rate)
            ref.available_range = otio.opentime.TimeRange(
                time_of(first, facts.fps, like), time_of(facts.frames, facts.fps, like)
            )
        except (ValueError, MediaProblem, RangeProblem):
            if used is not None:
                ref.available_range = used


def _markers(timeline: otio.schema.Timeline) -> list[otio.schema.Marker]:
    markers = list(timeline.tracks.markers)
    for item in timeline.find_children(shallow_search=False):
        markers.extend(getattr(item, "markers", []))
    return markers
