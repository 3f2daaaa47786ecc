"""`v2vz timeline`: re-prompt the marked clips of a timeline from any editor and write it back with the edits on a
track of their own (docs/timelines.md).

OpenTimelineIO is optional (`pip install 'v2vz[timeline]'`): this module imports it, and the v2vz.timeline package
that uses it, only inside the command, so that `v2vz --help` and every other command work without it.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from v2vz.api.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER, DaemonUnavailable, InvalidArgument, V2vzError
from v2vz.api.events import EventType, Stage
from v2vz.api.job import INVERSIONS, PRESETS, EditOptions, parse_fps
from v2vz.cli.output import LINE_INTERVAL, err, fail, refuse, say

if TYPE_CHECKING:
    from v2vz.api.v1 import editor_pb2 as pb
    from v2vz.timeline.state import EditRecord, RunState

EXTRA_LINE = "v2vz timeline needs OpenTimelineIO and its adapters: pip install 'v2vz[timeline]'"
TAKE_CONTAINERS = ("mov", "mp4")


def timeline(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="IN",
            help="The timeline: .otio, .xml (FCP 7 XML: Premiere, Resolve), .fcpxml (Final Cut Pro), .edl, "
            ".kdenlive or .aaf (Avid), or any format an installed OTIO adapter reads.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The timeline to write, in the format its extension names: IN's tracks unchanged plus a video "
            "track of the edits. Running again adds another track; no earlier edit is ever overwritten.",
        ),
    ],
    prompt_from: Annotated[
        str,
        typer.Option(
            help="Where a clip's prompts are: markers (name or comment with `source: ...` and `prompt: ...`), "
            'metadata (metadata["v2vz"] in .otio), or any (a marker, else the metadata).'
        ),
    ] = "any",
    track: Annotated[str, typer.Option(help="Name of the new track (taken: `NAME 2`, `NAME 3`, ...).")] = "v2vz",
    media_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the edited clips (default: OUT_STEM-v2vz-media beside OUT; OUT_STEM-media when OUT's "
            "name ends in -v2vz)."
        ),
    ] = None,
    take_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="Edited clips as mov (ProRes 422 HQ, 10-bit: what every editor imports and conforms) or mp4 "
            "(H.264, small).",
        ),
    ] = "mov",
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Wait for the edits and write OUT (default), or only submit them: running the same command again "
            "re-attaches to them and writes OUT once they are done.",
        ),
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the clips it would edit and those it cannot; submit nothing.")
    ] = False,
    rate: Annotated[
        str | None,
        typer.Option(
            help="Frame rate of a timeline whose format stores none (EDL), e.g. 24 or 30000/1001 "
            "(default: its first media file's rate)."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="The model (default: the daemon's own; `v2vz models`).")] = None,
    preset: Annotated[str, typer.Option(help=f"Engine settings: {', '.join(PRESETS)}.")] = "default",
    steps: Annotated[int | None, typer.Option(help="DDIM steps (50).")] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale (7.5).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (used when the VAE encoding is sampled).")] = None,
    size: Annotated[int | None, typer.Option(help="Working long side in pixels (default: the model's own).")] = None,
    inversion: Annotated[str | None, typer.Option(help=f"How edits stay on the clip: {', '.join(INVERSIONS)}.")] = None,
    window: Annotated[int | None, typer.Option(help="Frames edited together (default: from size and memory).")] = None,
    audio: Annotated[
        bool,
        typer.Option("--audio/--no-audio", help="Put the source's audio into the edited clips (the timeline has it)."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Re-prompt the marked clips of IN and write OUT with the edits on a track of their own.

    A clip is marked by a marker whose name or comment says `source: <what it shows>` and `prompt: <the edit>`
    (or metadata["v2vz"] in .otio). Each is edited by the daemon (`v2vz serve`) for exactly its source range; clips
    it cannot edit are listed with the reason and left alone.
    """
    if importlib.util.find_spec("opentimelineio") is None:
        raise fail(EXTRA_LINE, EXIT_USER)
    try:
        if take_format not in TAKE_CONTAINERS:
            raise InvalidArgument(f"--format {take_format}: choose mov (ProRes 422 HQ) or mp4 (H.264)")
        if not track.strip():
            raise InvalidArgument("--track needs a name")
        options = EditOptions.preset(
            preset, steps=steps, guidance=guidance, seed=seed, size=size, inversion=inversion, window=window
        )
        options.validate()
        settings = Settings(
            source=Path(source).expanduser().absolute(),
            out=Path(out).expanduser().absolute(),
            prompt_from=prompt_from,
            track=track.strip(),
            media_dir=Path(media_dir).expanduser().absolute() if media_dir else None,
            container=take_format,
            rate=str(parse_fps(rate)) if rate else None,
            model=model or "",
            options=options,
            audio=audio,
            quiet=quiet,
        )
        run(settings, wait, dry_run)
    except DaemonUnavailable as error:  # its line offers `--local`, which is `v2vz edit`'s: not an option here
        raise refuse(type(error)(str(error).replace(", or pass --local", ""))) from None
    except V2vzError as error:
        raise refuse(error) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None


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
    quiet: bool

    def __post_init__(self) -> None:
        from v2vz.timeline.prompts import PROMPT_FROM

        if self.prompt_from not in PROMPT_FROM:
            raise InvalidArgument(f"--prompt-from {self.prompt_from}: choose one of {', '.join(PROMPT_FROM)}")
        if self.media_dir is None:
            self.media_dir = default_media_dir(self.out)


def default_media_dir(out: Path) -> Path:
    """`OUT_STEM-v2vz-media` beside OUT; an OUT already named `...-v2vz` (`cut-v2vz.xml`, the name the docs
    suggest) gets `cut-v2vz-media`, not `cut-v2vz-v2vz-media`."""
    stem = out.stem
    return out.parent / (f"{stem}-media" if stem.lower().endswith("-v2vz") else f"{stem}-v2vz-media")


def run(settings: Settings, wait: bool, dry_run: bool) -> None:
    from v2vz.timeline import adapters, clips, jobs
    from v2vz.timeline import state as run_state
    from v2vz.timeline.media import MediaCache

    adapters.timeline_format(settings.source, "read")
    adapters.timeline_format(settings.out, "write")
    state_file = run_state.state_path(settings.out)
    recorded = run_state.read_state(state_file)
    if recorded is not None and not dry_run:
        resume(settings, recorded, state_file, wait)
        return

    cache = MediaCache()
    rate = parse_fps(settings.rate) if settings.rate else None
    source_timeline = clips.read_input(settings.source, rate, cache)
    adapters.check_writable(settings.out, source_timeline)
    earlier_output(settings)  # an OUT that exists must be a timeline its tracks can be carried over from
    selection = clips.find_clips(source_timeline, settings.source.parent, settings.prompt_from, cache)
    planned, unplannable = jobs.plan(
        selection.candidates, settings.options, settings.model, settings.audio, settings.media_dir, settings.container
    )
    selection.refused.extend(unplannable)  # a clip whose own options or prompt a job refuses: alone, not the run
    for refusal in selection.refused:
        say(f"left alone: {refusal.line()}")
    for note in selection.notes:
        say(f"note: {note}")
    for name in selection.v2vz_tracks:
        say(f"kept as it is: track {name!r}, which holds v2vz edits")
    if not planned:
        if selection.refused:
            raise InvalidArgument(f"no marked clip of {settings.source.name} can be edited (see the reasons above)")
        from v2vz.timeline.prompts import HOW_TO_MARK

        raise InvalidArgument(f"no clip of {settings.source.name} is marked for v2vz: {HOW_TO_MARK}")
    if dry_run:
        for item in planned:
            for candidate in item.candidates:
                say(f"would edit {clips.describe(candidate)}")
        say(f"{len(planned)} edit(s), {len(selection.refused)} clip(s) left alone; nothing submitted (--dry-run)")
        return

    from v2vz.client import Client

    with Client() as client:
        info = client.info()  # no daemon: one line, before any take is reserved
        recorded = run_state.RunState(
            input=str(settings.source),
            input_sha256=run_state.file_sha256(settings.source),
            output=str(settings.out),
            track=settings.track,
            media_dir=str(settings.media_dir),
            container=settings.container,
            created=time.time(),
            refused=[refusal.line() for refusal in selection.refused],
            rate=settings.rate,
        )
        writer = run_state.RecordWriter(state_file, recorded)

        def submitted(record: EditRecord) -> None:
            record.model = record.model or info.default_model or info.model
            recorded.edits.append(record)
            writer.changed()
            names = jobs.names_text([clip.name for clip in record.clips])
            say(f"submitted {names}: job {record.job_id}, take {record.take} ({Path(record.output).name})")

        def refused(item: jobs.Planned, reason: str) -> None:
            recorded.refused.append(f"{item.names}: the daemon refused it: {reason}")
            if recorded.edits:  # a record is kept only once a job is submitted
                writer.changed()
            say(f"left alone: {item.names}: the daemon refused it: {reason}")

        try:
            jobs.submit(client, planned, settings.media_dir, settings.container, submitted, refused)
        except (V2vzError, KeyboardInterrupt):
            if recorded.edits:
                say(
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
        if not wait:
            say(
                f"{len(recorded.edits)} edit(s) submitted; run the same command again to write "
                f"{settings.out.name} once they are done ({state_file.name} records them)"
            )
            return
        finish(client, settings, recorded, state_file, wait=True)


def resume(settings: Settings, recorded: RunState, state_file: Path, wait: bool) -> None:
    """Re-attach to the jobs a run recorded and write OUT once they are done."""
    from v2vz.client import Client
    from v2vz.timeline import state as run_state

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
        say(f"left alone: {line}")
    pending = [record for record in recorded.edits if record.state == "submitted"]
    say(f"re-attaching to {len(pending)} of the {len(recorded.edits)} edit(s) submitted for {settings.out.name}")
    with Client() as client:
        finish(client, settings, recorded, state_file, wait)


def finish(client, settings: Settings, recorded: RunState, state_file: Path, wait: bool) -> None:
    """Follow the recorded jobs to their end (or, without waiting, see whether they are), then write OUT."""
    from v2vz.timeline import jobs
    from v2vz.timeline import state as run_state

    pending = [record for record in recorded.edits if record.state == "submitted"]
    if not wait and pending:
        known = jobs.states(client, pending)
        running = [r for r in pending if r.job_id in known and not jobs.finished(known[r.job_id])]
        if running:
            done = len(recorded.edits) - len(running)
            say(
                f"{done} of {len(recorded.edits)} edit(s) done, {len(running)} queued or running: run this again to "
                f"write {settings.out.name} once they are done (without --no-wait it waits for them)"
            )
            return
    bars = ClipBars(settings.quiet, [edit_label(record) for record in pending])
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
        say(
            f"detached: the jobs keep running; run the same command again to re-attach and write {settings.out.name} "
            "(`v2vz cancel JOB` cancels one)"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        writer.flush()  # how each followed job ended, however the following ended (a lost daemon too)
    write_output(settings, recorded, state_file)


def earlier_output(settings: Settings):
    """OUT as it is, when it exists (its v2vz tracks are carried over); refused when it is not a timeline."""
    from v2vz.timeline import adapters

    if not settings.out.exists():
        return None
    try:
        return adapters.read_timeline(settings.out, parse_fps(settings.rate) if settings.rate else None)
    except V2vzError as error:
        raise InvalidArgument(
            f"--out {settings.out.name} exists and is not a timeline to add a track to ({error}): choose another --out"
        ) from None


def write_output(settings: Settings, recorded: RunState, state_file: Path) -> None:
    """OUT from the done edits: IN, the tracks of earlier runs, and this run's track(s); the run record goes."""
    from v2vz.api.takes import release_take
    from v2vz.timeline import adapters, build, clips, jobs
    from v2vz.timeline import state as run_state
    from v2vz.timeline.media import MediaCache, MediaProblem, probe

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
            record_range = run_state.range_from_json(place.record)
            placements.append(
                build.Placement(place.name, record_range, facts, metadata, record.take, place.timecode_clock)
            )
    for record in failed:
        names = jobs.names_text([clip.name for clip in record.clips])
        say(f"failed: {names} (job {record.job_id}): {record.reason}")
    if not placements:
        run_state.remove_state(state_file)
        raise fail(f"no edit was made, so {settings.out.name} was not written", EXIT_FAILED)
    rate = parse_fps(recorded.rate) if recorded.rate else None
    source_timeline = clips.read_input(Path(recorded.input), rate, MediaCache())
    previous = earlier_output(settings)
    run_info = {"input": recorded.input, "media_dir": recorded.media_dir, "submitted": recorded.created}
    folders = (Path(recorded.input).parent, settings.out.parent)
    result, added = build.compose(source_timeline, placements, recorded.track, run_info, previous, folders)
    notes = adapters.write_timeline(result, settings.out)
    run_state.remove_state(state_file)
    for note in notes:
        say(f"note: {note}")
    edits = len(recorded.edits) - len(failed)
    say(
        f"wrote {settings.out}: track {' and '.join(repr(n) for n in added)} with {len(placements)} clip(s) from "
        f"{edits} edit(s) (media in {recorded.media_dir})"
    )
    if failed:
        raise fail(f"{len(failed)} of {len(recorded.edits)} edit(s) failed (see above)", EXIT_FAILED)


def edit_label(record: EditRecord, width: int = 28) -> str:
    names = [clip.name or "a clip" for clip in record.clips]
    label = names[0] + (f" +{len(names) - 1}" if len(names) > 1 else "")
    return label if len(label) <= width else label[: width - 1] + "…"


REPLAY_SLACK_S = 2.0  # an event this much older than the moment its job was followed is history (clocks differ a bit)
STAGE_SHARE = {Stage.INVERSION: (0.0, 0.4), Stage.NULL_TEXT: (0.4, 0.5), Stage.EDIT: (0.5, 1.0)}


def job_fraction(progress: pb.Progress) -> float:
    """How far a job is (0..1) from one progress event: windows in turn, each inversion, null-text, then edit."""
    windows = max(progress.windows, 1)
    window = min(max(progress.window, 1), windows)
    low, high = STAGE_SHARE.get(progress.stage, (0.0, 0.0))
    part = 1.0 if progress.cached else (progress.step / progress.total if progress.total else 0.0)
    if progress.stage == Stage.WRITE:
        return 1.0
    return (window - 1 + low + (high - low) * part) / windows


class ClipBars:
    """One bar per edit and a total on a terminal; plain lines at a sensible rate otherwise; nothing with --quiet
    (the outcome of each edit is still said)."""

    def __init__(self, quiet: bool, labels: list[str]) -> None:
        self.mode = "quiet" if quiet else ("bars" if err.is_terminal else "lines")
        self.labels = labels
        self.progress = Progress(
            TextColumn("{task.description:<44}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=self.mode != "bars",
            transient=False,
        )
        self.done = [0.0] * len(labels)
        # a clip's clock starts with its job's first event, not while it waits its turn
        self.tasks = [self.progress.add_task(f"{label}: waiting", total=1.0, start=False) for label in labels]
        self.total = self.progress.add_task(self._total_text(0), total=max(len(labels), 1))
        self._said: dict[int, tuple[str, float]] = {}
        self._interval = float(os.environ.get("V2VZ_PROGRESS_SECONDS") or LINE_INTERVAL)
        self._since: dict[int, float] = {}  # when each edit began to be followed (its older events are history)

    def following(self, index: int) -> None:
        """The edit's job is followed from now: the events it replays from before are its history, not news."""
        self._since[index] = time.time()

    def replayed(self, index: int, event: pb.JobEvent) -> bool:
        """An event from before this edit was followed (jobs are followed one after another, each from its start:
        a job that ran meanwhile replays its `queued, 3 ahead` after it is done)."""
        since = self._since.get(index)
        return since is not None and 0 < event.time_unix < since - REPLAY_SLACK_S

    def _total_text(self, ended: int) -> str:
        return f"total: {ended} of {len(self.labels)} edit(s)"

    def __enter__(self) -> ClipBars:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def event(self, index: int, event: pb.JobEvent) -> None:
        kind = event.WhichOneof("kind")
        label = self.labels[index]
        replayed = self.replayed(index, event)
        if kind == EventType.QUEUED and replayed:
            return  # where it stood in the queue then is not where it stands now
        if kind == EventType.QUEUED:
            text = f"queued, {event.queued.position} ahead" if event.queued.position else "next in the queue"
            if event.queued.requeued:
                self.done[index] = 0.0
        elif kind == EventType.PROGRESS:
            step = event.progress
            self.done[index] = max(self.done[index], job_fraction(step))
            where = f" (window {step.window}/{step.windows})" if step.windows > 1 else ""
            text = f"{step.stage} {step.step}/{step.total}{where}"
        else:
            return
        stage = kind if kind == EventType.QUEUED else (None if replayed else event.progress.stage)
        self._show(index, f"{label}: {text}", stage)  # history moves the bar; only news is said in a log

    def ended(self, index: int, record: EditRecord) -> None:
        """A job ended: its line (a failure's reason comes with the summary before OUT is written)."""
        self.done[index] = 1.0
        text = f"{self.labels[index]}: {record.state}"
        if self.mode != "quiet":
            self._note(f"{text}, take {record.take} ({Path(record.output).name})" if record.state == "done" else text)
        self._show(index, text, None)

    def _show(self, index: int, text: str, stage: str | None) -> None:
        """Show a bar's text (stage: what it is doing; None: it ended, its line is said elsewhere)."""
        if self.mode == "bars":
            self.progress.start_task(self.tasks[index])
            self.progress.update(self.tasks[index], description=text, completed=self.done[index])
            ended = sum(1 for value in self.done if value >= 1.0)
            self.progress.update(self.total, description=self._total_text(ended), completed=sum(self.done))
        elif self.mode == "lines":
            now = time.monotonic()
            last = self._said.get(index)
            if stage is not None and (last is None or last[0] != stage or now - last[1] >= self._interval):
                self._said[index] = (stage, now)
                say(text)

    def _note(self, text: str) -> None:
        if self.mode == "bars":
            self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)
        else:
            say(text)
