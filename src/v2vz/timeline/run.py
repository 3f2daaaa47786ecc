"""A `v2vz timeline` run: plan the marked clips' jobs, submit them, follow them, and write OUT.

The command (src/v2vz/cli/timeline.py) checks its options into `Settings` and hands `run` a `Display` (its lines and
its progress bars) and a way to connect to the daemon, as the watch folder is handed its `Reporter`: the run itself
prints nothing and imports neither the CLI nor the client. A run records its jobs beside OUT (state.py) as soon as
one is submitted, so `--no-wait` and an interrupted run re-attach to them (`resume`) instead of submitting again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from v2vz.api.errors import InvalidArgument, V2vzError
from v2vz.api.job import EditOptions, parse_fps
from v2vz.api.takes import release_take
from v2vz.timeline import adapters, build, clips, jobs
from v2vz.timeline import state as run_state
from v2vz.timeline.media import MediaCache, MediaProblem, probe
from v2vz.timeline.prompts import HOW_TO_MARK, PROMPT_FROM
from v2vz.timeline.state import EditRecord, RunState


class EditsFailed(Exception):
    """The run ended, but no edit was made or some failed: the command says the message and exits EXIT_FAILED."""


class Detached(Exception):
    """Ctrl-C while following the jobs: they keep running, and the run said how to re-attach."""


class JobBars(Protocol):
    """The progress of the jobs followed, one after another (`with bars:` around the following)."""

    def __enter__(self) -> JobBars: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def following(self, index: int) -> None: ...

    def event(self, index: int, event: Any) -> None: ...

    def ended(self, index: int, record: EditRecord) -> None: ...


class Display(Protocol):
    """What a run shows: a line, and the bars of the jobs it follows."""

    def say(self, text: str) -> None: ...

    def bars(self, records: list[EditRecord]) -> JobBars: ...


Connect = Callable[[], AbstractContextManager[Any]]  # opens a client (v2vz.client.Client) to the daemon


@dataclass
class Settings:
    """What the command was asked, checked."""

    source: Path
    out: Path
    prompt_from: str
    track: str
    media_dir: Path | None
    container: str
    rate: str | None
    model: str
    options: EditOptions
    audio: bool

    def __post_init__(self) -> None:
        if self.prompt_from not in PROMPT_FROM:
            raise InvalidArgument(f"--prompt-from {self.prompt_from}: choose one of {', '.join(PROMPT_FROM)}")
        if self.media_dir is None:
            self.media_dir = default_media_dir(self.out)

    @property
    def fps(self) -> Fraction | None:
        """The rate given for a timeline whose format stores none (EDL), or None."""
        return parse_fps(self.rate) if self.rate else None


def default_media_dir(out: Path) -> Path:
    """`OUT_STEM-v2vz-media` beside OUT; an OUT already named `...-v2vz` (`cut-v2vz.xml`, the name the docs
    suggest) gets `cut-v2vz-media`, not `cut-v2vz-v2vz-media`."""
    stem = out.stem
    return out.parent / (f"{stem}-media" if stem.lower().endswith("-v2vz") else f"{stem}-v2vz-media")


def run(settings: Settings, display: Display, connect: Connect, wait: bool, dry_run: bool) -> None:
    """Plan, submit, follow and write OUT; or re-attach to the jobs an earlier run recorded for OUT."""
    adapters.timeline_format(settings.source, "read")
    adapters.timeline_format(settings.out, "write")
    state_file = run_state.state_path(settings.out)
    recorded = run_state.read_state(state_file)
    if recorded is not None and not dry_run:
        resume(settings, display, connect, recorded, state_file, wait)
        return
    planned, selection = plan(settings, display)
    if dry_run:
        for item in planned:
            for candidate in item.candidates:
                display.say(f"would edit {clips.describe(candidate)}")
        left_alone = len(selection.refused)
        display.say(f"{len(planned)} edit(s), {left_alone} clip(s) left alone; nothing submitted (--dry-run)")
        return
    with connect() as client:
        recorded = submit(settings, display, client, planned, selection.refused, state_file)
        if not wait:
            display.say(
                f"{len(recorded.edits)} edit(s) submitted; run the same command again to write "
                f"{settings.out.name} once they are done ({state_file.name} records them)"
            )
            return
        finish(client, settings, display, recorded, state_file, wait=True)


def plan(settings: Settings, display: Display) -> tuple[list[jobs.Planned], clips.Selection]:
    """The jobs of the marked clips, and what is left alone and why (said at once); InvalidArgument when none."""
    cache = MediaCache()
    source_timeline = clips.read_input(settings.source, settings.fps, cache)
    adapters.check_writable(settings.out, source_timeline)
    earlier_output(settings)  # an OUT that exists must be a timeline its tracks can be carried over from
    selection = clips.find_clips(source_timeline, settings.source.parent, settings.prompt_from, cache)
    planned, unplannable = jobs.plan(
        selection.candidates, settings.options, settings.model, settings.audio, settings.media_dir, settings.container
    )
    selection.refused.extend(unplannable)  # a clip whose own options or prompt a job refuses: alone, not the run
    for refusal in selection.refused:
        display.say(f"left alone: {refusal.line()}")
    for note in selection.notes:
        display.say(f"note: {note}")
    for name in selection.v2vz_tracks:
        display.say(f"kept as it is: track {name!r}, which holds v2vz edits")
    if not planned:
        if selection.refused:
            raise InvalidArgument(f"no marked clip of {settings.source.name} can be edited (see the reasons above)")
        raise InvalidArgument(f"no clip of {settings.source.name} is marked for v2vz: {HOW_TO_MARK}")
    return planned, selection


def submit(
    settings: Settings,
    display: Display,
    client: Any,
    planned: list[jobs.Planned],
    refusals: list[clips.Refusal],
    state_file: Path,
) -> RunState:
    """Submit the planned jobs, each recorded beside OUT as soon as the daemon takes it; the run's record."""
    info = client.info()  # no daemon: one line, before any take is reserved
    recorded = RunState(
        input=str(settings.source),
        input_sha256=run_state.file_sha256(settings.source),
        output=str(settings.out),
        track=settings.track,
        media_dir=str(settings.media_dir),
        container=settings.container,
        created=time.time(),
        refused=[refusal.line() for refusal in refusals],
        rate=settings.rate,
    )
    writer = run_state.RecordWriter(state_file, recorded)

    def submitted(record: EditRecord) -> None:
        record.model = record.model or info.default_model or info.model
        recorded.edits.append(record)
        writer.changed()
        names = jobs.names_text([clip.name for clip in record.clips])
        display.say(f"submitted {names}: job {record.job_id}, take {record.take} ({Path(record.output).name})")

    def refused(item: jobs.Planned, reason: str) -> None:
        recorded.refused.append(f"{item.names}: the daemon refused it: {reason}")
        if recorded.edits:  # a record is kept only once a job is submitted
            writer.changed()
        display.say(f"left alone: {item.names}: the daemon refused it: {reason}")

    try:
        jobs.submit(client, planned, settings.media_dir, settings.container, submitted, refused)
    except (V2vzError, KeyboardInterrupt):
        if recorded.edits:
            display.say(
                f"{len(recorded.edits)} of {len(planned)} edit(s) were submitted before this stopped: run the same "
                f"command again to follow them and write {settings.out.name}, or remove {state_file.name} "
                "to start over"
            )
        raise
    finally:
        writer.flush()  # every job submitted is recorded, however the submitting ended
    if not recorded.edits:
        run_state.remove_state(state_file)
        raise InvalidArgument("the daemon refused every edit (see the reasons above); nothing was written")
    return recorded


def resume(
    settings: Settings, display: Display, connect: Connect, recorded: RunState, state_file: Path, wait: bool
) -> None:
    """Re-attach to the jobs a run recorded and write OUT once they are done."""
    source = Path(recorded.input)
    if source != settings.source:
        raise InvalidArgument(
            f"{state_file.name} records a run of {source} into {settings.out.name}: run it with that timeline, or "
            f"remove {state_file} to start a new run"
        )
    if not source.exists() or run_state.file_sha256(source) != recorded.input_sha256:
        raise InvalidArgument(
            f"{source.name} changed since its edits were submitted ({state_file.name}): put it back, or remove "
            f"{state_file} to start a new run (the jobs keep running; `v2vz jobs` lists them)"
        )
    for line in recorded.refused:
        display.say(f"left alone: {line}")
    pending = [record for record in recorded.edits if record.state == "submitted"]
    display.say(
        f"re-attaching to {len(pending)} of the {len(recorded.edits)} edit(s) submitted for {settings.out.name}"
    )
    with connect() as client:
        finish(client, settings, display, recorded, state_file, wait)


def finish(client: Any, settings: Settings, display: Display, recorded: RunState, state_file: Path, wait: bool) -> None:
    """Follow the recorded jobs to their end (or, without waiting, see whether they are), then write OUT."""
    pending = [record for record in recorded.edits if record.state == "submitted"]
    if not wait and pending:
        known = jobs.states(client, pending)
        running = [r for r in pending if r.job_id in known and not jobs.finished(known[r.job_id])]
        if running:
            done = len(recorded.edits) - len(running)
            display.say(
                f"{done} of {len(recorded.edits)} edit(s) done, {len(running)} queued or running: run this again to "
                f"write {settings.out.name} once they are done (without --no-wait it waits for them)"
            )
            return
    bars = display.bars(pending)
    writer = run_state.RecordWriter(state_file, recorded)
    try:
        with bars:
            for index, record in enumerate(pending):
                bars.following(index)
                ended = jobs.follow(client, record, lambda event, i=index: bars.event(i, event))
                record.state = ended.state or "failed"
                record.reason = ended.message
                bars.ended(index, record)
                writer.changed()
    except KeyboardInterrupt:
        writer.flush()
        display.say(
            f"detached: the jobs keep running; run the same command again to re-attach and write {settings.out.name} "
            "(`v2vz cancel JOB` cancels one)"
        )
        raise Detached from None
    finally:
        writer.flush()  # how each followed job ended, however the following ended (a lost daemon too)
    write_output(settings, display, recorded, state_file)


def earlier_output(settings: Settings):
    """OUT as it is, when it exists (its v2vz tracks are carried over); refused when it is not a timeline."""
    if not settings.out.exists():
        return None
    try:
        return adapters.read_timeline(settings.out, settings.fps)
    except V2vzError as error:
        raise InvalidArgument(
            f"--out {settings.out.name} exists and is not a timeline to add a track to ({error}): choose another --out"
        ) from None


def placements_of(recorded: RunState) -> tuple[list[build.Placement], list[EditRecord]]:
    """Where each done edit goes on the new track, read back from its take; and the edits that failed (a take
    that cannot be read back, or holds other than the frames asked for, failed too; its take is released)."""
    placements: list[build.Placement] = []
    failed: list[EditRecord] = []
    for record in recorded.edits:
        if record.state != "done":
            release_take(jobs.take_of(record))
            failed.append(record)
            continue
        try:
            facts = probe(Path(record.output))
        except MediaProblem as problem:
            record.state, record.reason = "failed", f"the edit cannot be read back: {problem}"
            failed.append(record)
            continue
        if facts.frames != record.frames:
            record.state = "failed"
            record.reason = f"the edit {facts.path.name} has {facts.frames} frames, {record.frames} were asked for"
            failed.append(record)
            continue
        for place in record.clips:
            metadata = {
                "prompt": record.prompt,
                "source": record.source_prompt,
                "model": record.model,
                "take": record.take,
                "job_id": record.job_id,
                "options": dict(record.options),
                "source_clip": place.name,
                "source_media": record.source,
                "source_frames": [record.start, record.frames],
                "sidecar": record.sidecar,
            }
            if record.matte:
                metadata.update(matte=record.matte, matte_start=record.matte_start)
            if record.loras:  # the edit depends on them: an editor reading OUT sees which, and how strong
                metadata["loras"] = [{"path": path, "scale": scale} for path, scale in record.loras]
            record_range = run_state.range_from_json(place.record)
            placements.append(
                build.Placement(place.name, record_range, facts, metadata, record.take, place.timecode_clock)
            )
    return placements, failed


def write_output(settings: Settings, display: Display, recorded: RunState, state_file: Path) -> None:
    """OUT from the done edits: IN, the tracks of earlier runs, and this run's track(s); the run record goes."""
    placements, failed = placements_of(recorded)
    for record in failed:
        names = jobs.names_text([clip.name for clip in record.clips])
        display.say(f"failed: {names} (job {record.job_id}): {record.reason}")
    if not placements:
        run_state.remove_state(state_file)
        raise EditsFailed(f"no edit was made, so {settings.out.name} was not written")
    rate = parse_fps(recorded.rate) if recorded.rate else None
    source_timeline = clips.read_input(Path(recorded.input), rate, MediaCache())
    previous = earlier_output(settings)
    run_info = {"input": recorded.input, "media_dir": recorded.media_dir, "submitted": recorded.created}
    folders = (Path(recorded.input).parent, settings.out.parent)
    result, added = build.compose(source_timeline, placements, recorded.track, run_info, previous, folders)
    notes = adapters.write_timeline(result, settings.out)
    run_state.remove_state(state_file)
    for note in notes:
        display.say(f"note: {note}")
    edits = len(recorded.edits) - len(failed)
    display.say(
        f"wrote {settings.out}: track {' and '.join(repr(n) for n in added)} with {len(placements)} clip(s) from "
        f"{edits} edit(s) (media in {recorded.media_dir})"
    )
    if failed:
        raise EditsFailed(f"{len(failed)} of {len(recorded.edits)} edit(s) failed (see above)")
