"""The clips of a timeline to edit, and for every marked clip that cannot be edited, the reason.

A clip is edited when it is on a video track, carries prompts (prompts.py), plays at its own speed, has a media file
PyAV decodes, and its source range is whole frames inside that file. The others that carry prompts are refused with
a reason and left as they are: speed changes and time warps, clips inside nested stacks (compound clips),
generators, missing or offline media, image sequences, ranges outside the media. Tracks (and clips) that v2vz
made are recognised and kept as they are, never edited again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import Lora
from v2vz.timeline.adapters import RATELESS, read_timeline, timeline_format
from v2vz.timeline.media import MediaCache, MediaFacts, MediaProblem, url_to_path
from v2vz.timeline.prompts import METADATA_KEY, BadPrompts, ClipPrompts, NotMarked, is_edit, prompts_of
from v2vz.timeline.ranges import MediaRange, RangeProblem, media_range, timecode_frames

TAKE_FILE = re.compile(r"-v2vz-t\d+(-preview)?(\.[A-Za-z0-9]+)?$")  # NAME-v2vz-t3.mov (v2vz.api.takes)
_TIME_WORDS = ("speed", "time remap", "timeremap", "retime", "time warp", "timewarp", "freeze")


@dataclass(frozen=True)
class ClipRef:
    """Where a clip is: its track's index among the timeline's tracks, its index in the track, and its names."""

    track: int
    item: int
    name: str
    track_name: str

    @property
    def key(self) -> str:
        return f"{self.track}/{self.item}"


@dataclass(frozen=True)
class Candidate:
    """A clip to edit: where it is, its prompts, its media and the frames of it, and where it sits in the timeline."""

    ref: ClipRef
    prompts: ClipPrompts
    media: MediaFacts
    frames: MediaRange
    record: otio.opentime.TimeRange  # in the timeline's stack (the time every top-level track shares)
    timecode_clock: bool = False  # the timeline counts this media's frames from its start timecode (not from 0)
    where: str = ""  # the record position as the editor shows it, for messages
    matte: MediaFacts | None = None  # a local edit's matte (prompts.matte), found and probed
    loras: tuple[Lora, ...] = ()  # prompts.loras, each file found (absolute paths: the daemon has its own cwd)

    @property
    def matte_start(self) -> int:
        """The matte's frame for the range's first frame (EditJob.matte_start). A matte is lined up with the clip's
        media when it is long enough for that (a roto of the whole file: the media's frame N is the matte's frame
        `matte_start + N`), else with the cut (a matte rendered for this clip only starts at its first frame); one
        image serves every frame. docs/timelines.md, "Local edits"."""
        given = self.prompts.matte_start
        if self.matte is None or self.matte.frames <= 1:
            return given
        aligned = given + self.frames.start
        return aligned if self.matte.frames >= aligned + self.frames.frames else given


@dataclass(frozen=True)
class Refusal:
    ref: ClipRef
    reason: str
    where: str = ""  # the record position, e.g. "01:00:04:12"

    def line(self) -> str:
        where = f" at {self.where}" if self.where else ""
        track = f"track {self.ref.track_name!r}" if self.ref.track_name else f"video track {self.ref.track + 1}"
        if self.ref.item < 0:
            track = "on no track"
        return f"{self.ref.name or 'a clip'} ({track}{where}): {self.reason}"


@dataclass
class Selection:
    candidates: list[Candidate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    unmarked: int = 0  # video clips without prompts (left alone, not listed)
    v2vz_tracks: list[str] = field(default_factory=list)  # tracks an earlier run made, kept as they are
    notes: list[str] = field(default_factory=list)  # clips edited with prompts chosen among several (which, why)


def is_take_path(path: Path) -> bool:
    """A file named as a v2vz take (NAME-v2vz-t3.mov)."""
    return bool(TAKE_FILE.search(Path(path).name))


def _takes_url(item: otio.schema.Clip) -> bool:
    ref = item.media_reference
    if not isinstance(ref, otio.schema.ExternalReference):
        return False
    try:
        return is_take_path(url_to_path(ref.target_url, Path(".")))
    except ValueError:
        return False


def is_v2vz_track(track: otio.schema.Track) -> bool:
    """A track an earlier run made: marked so in its metadata (.otio), or every clip on it is a v2vz take (formats
    that keep no metadata)."""
    data = track.metadata.get(METADATA_KEY)
    if hasattr(data, "get") and data.get("track"):
        return True
    clips = [item for item in track if isinstance(item, otio.schema.Clip)]
    return bool(clips) and all(is_edit(clip) or _takes_url(clip) for clip in clips)


def _time_effect(clip: otio.schema.Clip) -> str | None:
    """The speed change or time warp on a clip, as words; None at its own speed."""
    for effect in clip.effects:
        if isinstance(effect, otio.schema.FreezeFrame):
            return "a freeze frame"
        if isinstance(effect, otio.schema.LinearTimeWarp):
            if effect.time_scalar != 1:
                return f"a speed change ({effect.time_scalar * 100:g}%)"
            continue
        if isinstance(effect, otio.schema.TimeEffect):
            return f"a time effect ({effect.effect_name or type(effect).__name__})"
        name = f"{effect.effect_name or ''} {effect.name or ''}".lower()
        if any(word in name for word in _TIME_WORDS):
            return f"a time effect ({(effect.effect_name or effect.name).strip()})"
    return None


def where_text(timeline: otio.schema.Timeline, record: otio.opentime.TimeRange) -> str:
    """A record position as the editor shows it: timecode from the timeline's start, else seconds."""
    start = record.start_time
    if timeline.global_start_time is not None:
        start = start + timeline.global_start_time
    try:
        return otio.opentime.to_timecode(start, start.rate)
    except (ValueError, TypeError):
        return f"{start.to_seconds():.3f} s"


def record_ranges(track: otio.schema.Track, timeline: otio.schema.Timeline) -> list[otio.opentime.TimeRange]:
    """Where each item of a top-level track sits in the timeline's stack, in one pass over the track.

    `transformed_time_range` of one item walks its track from the start to that item, so asking it for every clip
    of a track costs the square of the track's length (10,000 clips: over a minute), and so does transforming from
    the track (it sums the track's length each time). The track's ranges of all its children come from one walk,
    and the track's own offset in the stack, found once, is added to each."""
    inside = track.range_of_all_children()
    ranges = [inside[item] for item in track]
    if not ranges:
        return []
    origin = ranges[0].start_time - ranges[0].start_time
    offset = track.transformed_time(origin, timeline.tracks) - origin
    return [otio.opentime.TimeRange(found.start_time + offset, found.duration) for found in ranges]


def media_start(clip: otio.schema.Clip, facts: MediaFacts) -> otio.opentime.RationalTime | None:
    """The time of the media's first frame on the clip's source clock: the reference's available range, else the
    file's start timecode (EDLs count source times in it), else None (0)."""
    available = clip.media_reference.available_range
    if available is not None:
        return available.start_time
    if facts.timecode:
        return otio.opentime.RationalTime(timecode_frames(facts.timecode, facts.fps), float(facts.fps))
    return None


class Refused(Exception):
    """Why one clip cannot be edited."""


def _media_of(clip: otio.schema.Clip, base: Path, cache: MediaCache) -> MediaFacts:
    ref = clip.media_reference
    if isinstance(ref, otio.schema.GeneratorReference):
        kind = f" ({ref.generator_kind})" if ref.generator_kind else ""
        raise Refused(f"it is a generator{kind}, not footage")
    if ref is None or isinstance(ref, otio.schema.MissingReference) or ref.is_missing_reference:
        raise Refused("its media is missing (offline in the editor): relink it, then export the timeline again")
    if isinstance(ref, otio.schema.ImageSequenceReference):
        raise Refused("its media is an image sequence, which v2vz timeline does not edit yet: render it as a movie")
    if not isinstance(ref, otio.schema.ExternalReference):
        raise Refused(f"its media reference ({ref.schema_name()}) is not a file")
    try:
        path = url_to_path(ref.target_url, base)
        return cache.probe(path)
    except (ValueError, MediaProblem) as problem:
        raise Refused(str(problem)) from None


def check_clip(clip: otio.schema.Clip, base: Path, cache: MediaCache) -> tuple[MediaFacts, MediaRange, bool]:
    """The clip's media, its frames, and whether the timeline counts them from the media's start timecode;
    Refused with the reason when it cannot be edited."""
    if not clip.enabled:
        raise Refused("it is disabled in the timeline")
    effect = _time_effect(clip)
    if effect:
        raise Refused(f"it has {effect}: v2vz edits clips at their own speed; render the retimed clip first")
    facts = _media_of(clip, base, cache)
    start = media_start(clip, facts)
    try:
        frames = media_range(clip.trimmed_range(), start, facts.fps, facts.frames)
    except RangeProblem as problem:
        raise Refused(str(problem)) from None
    return facts, frames, bool(facts.timecode) and start is not None and start.value != 0


def matte_of(prompts: ClipPrompts, base: Path, cache: MediaCache) -> MediaFacts | None:
    """The clip's matte (a path or file:// URL; relative: to the timeline's folder), probed; Refused with the reason
    when it is missing or unreadable."""
    if not prompts.matte:
        return None
    try:
        path = url_to_path(prompts.matte, base)
    except ValueError as problem:
        raise Refused(f"its matte: {str(problem).replace('its media', 'it')}") from None
    if not path.exists():
        raise Refused(f"its matte {path} does not exist: fix its `matte:` or put the file there")
    try:
        return cache.probe(path)
    except MediaProblem as problem:
        raise Refused(f"its matte cannot be used: {str(problem).removeprefix('its media ')}") from None


def loras_of(prompts: ClipPrompts, base: Path) -> tuple[Lora, ...]:
    """The clip's LoRAs (`PATH[:SCALE]`; a path or file:// URL, relative: to the timeline's folder, like a matte),
    each an existing file; Refused with the reason for the first that is not."""
    loras = []
    for text in prompts.loras:
        lora = Lora.parse(text)
        try:
            path = url_to_path(str(lora.path), base)
        except ValueError as problem:
            raise Refused(f"its LoRA {text}: {str(problem).replace('its media', 'it')}") from None
        if not path.exists():
            raise Refused(f"its LoRA {path} does not exist: fix its `--lora` or put the file there")
        if not path.is_file():
            raise Refused(f"its LoRA {path} is not a file: give --lora a .safetensors file")
        loras.append(Lora(path.absolute(), lora.scale))
    return tuple(loras)


def _is_marked(clip: otio.schema.Clip, prompt_from: str) -> bool:
    """Whether the clip carries prompts, usable or not (a user meant it for v2vz)."""
    try:
        prompts_of(clip, prompt_from)
    except NotMarked:
        return False
    except BadPrompts:
        return True
    return True


def _marked_inside(composition: otio.core.Composition, prompt_from: str) -> list[str]:
    """Names of the clips in a nested composition that carry prompts (those are the ones a user meant)."""
    clips = composition.find_clips(shallow_search=False)
    return [clip.name or "a clip" for clip in clips if _is_marked(clip, prompt_from)]


def find_clips(
    timeline: otio.schema.Timeline, base: Path, prompt_from: str = "any", cache: MediaCache | None = None
) -> Selection:
    """The clips to edit on the timeline's video tracks, and the marked ones that cannot be (with reasons)."""
    cache = cache or MediaCache()
    found = Selection()
    for t_index, track in enumerate(timeline.tracks):
        if isinstance(track, otio.schema.Clip):  # a clip among the tracks (a hand-made .otio): it plays nowhere
            if _is_marked(track, prompt_from):
                ref = ClipRef(t_index, -1, track.name, "")
                reason = "it sits in the timeline's stack, not on a track: put it on a video track"
                found.refused.append(Refusal(ref, reason))
            continue
        if not isinstance(track, otio.schema.Track):
            if not isinstance(track, otio.core.Composition):  # a gap or a transition among the tracks
                continue
            for name in _marked_inside(track, prompt_from):  # a stack among the tracks: a nested composition
                ref = ClipRef(t_index, 0, name, track.name)
                found.refused.append(Refusal(ref, "it is inside a nested stack: mark the clips of a plain track"))
            continue
        if track.kind != otio.schema.TrackKind.Video:
            continue
        if is_v2vz_track(track):
            found.v2vz_tracks.append(track.name)
            continue
        records = record_ranges(track, timeline)
        for i_index, item in enumerate(track):
            if isinstance(item, otio.core.Composition):
                for name in _marked_inside(item, prompt_from):
                    ref = ClipRef(t_index, i_index, name, track.name)
                    reason = "it is inside a nested stack (a compound clip): open it and edit its source clips"
                    found.refused.append(Refusal(ref, reason, where_text(timeline, records[i_index])))
                continue
            if not isinstance(item, otio.schema.Clip) or is_edit(item):
                continue
            ref = ClipRef(t_index, i_index, item.name, track.name)
            record = records[i_index]
            try:
                prompts = prompts_of(item, prompt_from)
            except NotMarked:
                found.unmarked += 1
                continue
            except BadPrompts as problem:  # this clip is left alone with the reason; the others are edited
                found.refused.append(Refusal(ref, str(problem), where_text(timeline, record)))
                continue
            where = where_text(timeline, record)
            try:
                facts, frames, timecode_clock = check_clip(item, base, cache)
                matte = matte_of(prompts, base, cache)
                loras = loras_of(prompts, base)
            except Refused as problem:
                found.refused.append(Refusal(ref, str(problem), where))
                continue
            if prompts.note:
                found.notes.append(Refusal(ref, prompts.note, where).line())
            candidate = Candidate(ref, prompts, facts, frames, record, timecode_clock, where, matte, loras)
            found.candidates.append(candidate)
    return found


def _first_media_rate(timeline: otio.schema.Timeline, base: Path, cache: MediaCache) -> Fraction | None:
    for clip in timeline.find_clips(shallow_search=False):
        try:
            return _media_of(clip, base, cache).fps
        except Refused:
            continue
    return None


def read_input(path: Path, rate: Fraction | None, cache: MediaCache) -> otio.schema.Timeline:
    """The input timeline. A format that stores no rate (EDL) is read at `rate`, else at its first media's own
    rate (PyAV); until that is known, at 24 fps or, for drop-frame timecodes, at 30000/1001."""
    path = Path(path)
    if rate is not None or timeline_format(path).adapter not in RATELESS:
        return read_timeline(path, rate)
    try:
        timeline, guess = read_timeline(path, Fraction(24)), Fraction(24)
    except InvalidArgument:
        timeline, guess = read_timeline(path, Fraction(30000, 1001)), Fraction(30000, 1001)
    found = _first_media_rate(timeline, path.parent, cache)
    return read_timeline(path, found) if found is not None and found != guess else timeline


def prompts_label(prompts: ClipPrompts) -> str:
    return f"{prompts.source!r} -> {prompts.prompt!r}"


def describe(candidate: Candidate) -> str:
    """`shotA: frames 4..11 of a.mov (24 fps), 'a car' -> 'a jeep'` (`, matte m.mov from its frame 4`,
    `, LoRAs ink.safetensors:0.6 grain.safetensors:1`)"""
    frames, media = candidate.frames, candidate.media
    fps = media.fps.numerator if media.fps.denominator == 1 else f"{media.fps.numerator}/{media.fps.denominator}"
    matte = ""
    if candidate.matte is not None:
        matte = f", matte {candidate.matte.path.name} from its frame {candidate.matte_start}"
    if candidate.loras:
        matte += ", LoRA" + ("s " if len(candidate.loras) > 1 else " ")
        matte += " ".join(f"{lora.path.name}:{lora.scale:g}" for lora in candidate.loras)
    return (
        f"{candidate.ref.name or 'a clip'}: frames {frames.start}..{frames.last} of {media.path.name} ({fps} fps), "
        f"{prompts_label(candidate.prompts)}{matte}"
    )
