"""`v2vz timeline`: re-prompt the marked clips of a timeline from any editor and write it back with the edits on a
track of their own (docs/timelines.md).

OpenTimelineIO is optional (`pip install 'v2vz[timeline]'`): this module imports it, and the v2vz.timeline package
that uses it, only inside the command, so that `v2vz --help` and every other command work without it. The run itself
is v2vz.timeline.run's; this module holds the options and the display (`TimelineDisplay`, `ClipBars`) it hands it.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from v2vz.api.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER, InvalidArgument, V2vzError
from v2vz.api.events import EventType, Stage
from v2vz.api.job import INVERSIONS, PRESETS, EditOptions, parse_fps
from v2vz.cli.output import ProgressDisplay, fail, refuse, say

if TYPE_CHECKING:
    from v2vz.api.v1 import editor_pb2 as pb
    from v2vz.timeline.state import EditRecord

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
    from v2vz.client import Client
    from v2vz.timeline.run import Detached, EditsFailed, Settings, run

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
        )
        run(settings, TimelineDisplay(quiet), Client, wait, dry_run)
    except V2vzError as error:
        raise refuse(error) from None
    except EditsFailed as failure:
        raise fail(str(failure), EXIT_FAILED) from None
    except Detached:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None


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


class TimelineDisplay:
    """What a timeline run shows (v2vz.timeline.run.Display): its lines on stderr, and `ClipBars` for its jobs."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def say(self, text: str) -> None:
        say(text)

    def bars(self, records: list[EditRecord]) -> ClipBars:
        return ClipBars(self.quiet, [edit_label(record) for record in records])


class ClipBars(ProgressDisplay):
    """One bar per edit and a total on a terminal, plain lines otherwise, nothing with --quiet (ProgressDisplay,
    the edit command's handling); the outcome of each edit is still said."""

    def __init__(self, quiet: bool, labels: list[str]) -> None:
        super().__init__(
            quiet, TextColumn("{task.description:<44}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn()
        )
        self.labels = labels
        self.done = [0.0] * len(labels)
        # a clip's clock starts with its job's first event, not while it waits its turn
        self.tasks = [self.progress.add_task(f"{label}: waiting", total=1.0, start=False) for label in labels]
        self.total = self.progress.add_task(self._total_text(0), total=max(len(labels), 1))
        self._said: dict[int, tuple[str, float]] = {}
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
        self.note(f"{text}, take {record.take} ({Path(record.output).name})" if record.state == "done" else text)
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
