"""The `v2vz` command. It imports no torch at start-up: only `edit --local` loads the engine."""

from __future__ import annotations

import contextlib
import datetime
import json
import sys
import time
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from v2vz.errors import V2vzError
from v2vz.job import ATTENTION_LAYOUTS, PRESETS, EditJob, EditOptions, parse_fps

if TYPE_CHECKING:
    from v2vz.client import Client
    from v2vz.v1 import editor_pb2 as pb

app = typer.Typer(
    help="v2vz: text-driven video editing with a pretrained image diffusion model (vid2vid-zero).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

STAGE_LABELS = {
    "window": "window",
    "inversion": "DDIM inversion",
    "null-text": "null-text optimization",
    "edit": "editing",
}
STATUS_LABELS = {"start": "starting", "read": "reading frames", "decode": "reading frames", "write": "writing outputs"}
# Failure codes of a job that mean the user's input was wrong (exit 2, like a refused submission); others exit 1.
USER_ERROR_CODES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"})


class EventsFormat(StrEnum):
    jsonl = "jsonl"


EventsOption = Annotated[
    EventsFormat | None,
    typer.Option(
        "--events",
        help="jsonl: no progress bar; one JSON object per job event on stdout (see docs/events.md).",
    ),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr and an exit code: what the CLI does for every error a user can fix."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def split_output(out: Path | None, source: Path) -> tuple[Path | None, Path | None]:
    """`--out x.mp4` writes an MP4, any other path a folder of numbered PNG frames."""
    if out is None:
        return Path.cwd() / f"{source.stem}-v2vz.mp4", None
    return (out, None) if out.suffix.lower() == ".mp4" else (None, out)


@app.command()
def edit(
    source: Annotated[
        Path,
        typer.Argument(
            help="The clip to edit: a video (anything FFmpeg reads), a folder of frames, or the first image of a "
            "numbered sequence (frame_0001.png: it and the higher-numbered ones)."
        ),
    ],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What the edited clip should show.")],
    source_prompt: Annotated[str, typer.Option("--source-prompt", "-s", help="What the clip shows now.")] = "",
    start: Annotated[int, typer.Option(help="First source frame (0-based).")] = 0,
    frames: Annotated[int, typer.Option(help="Number of frames to edit; 0: through the end of the clip.")] = 8,
    out: Annotated[
        Path | None,
        typer.Option(help="Output: an .mp4 file, or a folder for PNG frames. Default ./NAME-v2vz.mp4"),
    ] = None,
    png_dir: Annotated[Path | None, typer.Option(help="Also write numbered PNG frames here.")] = None,
    source_fps: Annotated[
        str | None, typer.Option(help="Frame rate of an image-sequence source, e.g. 24 or 24000/1001 (24).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A diffusers folder, a hub id, or a preset (tiny, sd15-random). Default: $V2VZ_MODEL "
            "or CompVis/stable-diffusion-v1-4. With --local; the daemon edits with its own."
        ),
    ] = None,
    preset: Annotated[str, typer.Option(help=f"Engine settings: {', '.join(PRESETS)}.")] = "default",
    steps: Annotated[int | None, typer.Option(help="DDIM steps (50).")] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale (7.5).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (used when the VAE encoding is sampled).")] = None,
    size: Annotated[int | None, typer.Option(help="Working long side in pixels (default: the model's own).")] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="Skip null-text optimization (negative-prompt inversion).")
    ] = False,
    attention: Annotated[
        str | None, typer.Option(help=f"Cross-frame attention layout: {', '.join(ATTENTION_LAYOUTS)}.")
    ] = None,
    null_steps: Annotated[int | None, typer.Option(help="Null-text inner steps per diffusion step.")] = None,
    window: Annotated[
        int | None,
        typer.Option(help="Frames edited together; longer ranges go window by window (default: from size and memory)."),
    ] = None,
    anchors: Annotated[
        int | None, typer.Option(help="Frames of the previous window each window also attends to (2).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (with --local).")] = "auto",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where built-in models are kept (default ~/.cache/v2vz; with --local).")
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Run the engine in this process instead of the daemon (`v2vz serve`).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    events: EventsOption = None,
) -> None:
    """Edit a range of a clip so that it shows PROMPT, keeping its motion and layout.

    The job goes to the running daemon (`v2vz serve`); --local runs it in this process instead.
    """
    try:
        options = EditOptions.preset(
            preset,
            steps=steps,
            guidance=guidance,
            seed=seed,
            size=size,
            fast=fast or None,
            attention=attention,
            null_inner_steps=null_steps,
            window=window,
            anchors=anchors,
        )
        out_mp4, out_dir = split_output(out, source)
        if out_dir and png_dir:
            raise fail("--out names a folder for PNG frames and --png-dir another: give one of them")
        job = EditJob(
            source=source,
            prompt=prompt,
            source_prompt=source_prompt,
            start=start,
            frames=frames,
            options=options,
            out_mp4=out_mp4,
            out_frames_dir=png_dir or out_dir,
            model=model or "",
            source_fps=parse_fps(source_fps) if source_fps else None,
        )
        job.validate()
        if local:
            if events is not None:
                raise fail("--events reports the daemon's job events: drop --local to use it")
            run_local(job, device, cache_dir, quiet)
        else:
            run_remote(job, model, events is not None, quiet)
    except V2vzError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def run_local(job: EditJob, device: str, cache_dir: Path | None, quiet: bool) -> None:
    """Load the engine in-process and run the job with a rich progress bar."""
    began = time.perf_counter()
    from v2vz_daemon.engine import video
    from v2vz_daemon.engine.models import load_model
    from v2vz_daemon.engine.pipeline import VideoEditPipeline
    from v2vz_daemon.engine.run import run_job

    info = video.probe(job.source)
    job = job.through_end(info.frame_count)
    video.check_range(info, job.start, job.frames)  # fail fast, before the model loads
    with err.status("loading model", spinner="dots") if not quiet else contextlib.nullcontext():
        pipeline = VideoEditPipeline(load_model(job.model or None, device, cache_dir))

    with Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=False,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, step: int, total: int) -> None:
            show_bar(bar, tasks, stage, step, total)

        result = run_job(job, pipeline, progress)
    info = result.source
    outputs = [str(p) for p in (result.mp4,) if p] + (
        [f"{len(result.frame_paths)} PNG frames in {job.out_frames_dir}"] if result.frame_paths else []
    )
    fps = Fraction(info.fps)
    err.print(
        f"wrote {', '.join(outputs)}: {job.frames} frames at {info.width}x{info.height}, {fps} fps "
        f"(worked at {result.working_size[0]}x{result.working_size[1]}) in {time.perf_counter() - began:.1f} s",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


# ---------------------------------------------------------------------------------------------------------------
# The daemon's side: submit, watch, attach, jobs, cancel


def emit_json(data: dict[str, Any]) -> None:
    """One JSON object on one line of stdout, flushed at once (plugins read the lines as they come)."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """One plain line on stderr (no markup, never wrapped)."""
    err.print(message, highlight=False, markup=False, soft_wrap=True)


def run_remote(job: EditJob, model: str | None, jsonl: bool, quiet: bool) -> None:
    """Submit the job to the daemon, then follow it to its end."""
    from v2vz.client import Client, absolute_paths

    began = time.perf_counter()
    job = absolute_paths(job)
    with Client() as client:
        if model:
            served = client.info().model
            if served and served != model:
                say(f"note: the daemon edits with its model {served}; --model {model} applies to --local only")
        reply = client.submit(job)
        if jsonl:
            emit_json({"type": "submitted", "job_id": reply.job_id, "position": reply.queue_position})
        follow(client, reply.job_id, 0, jsonl, quiet, began=began, frames=job.frames)


def follow(
    client: Client,
    job_id: str,
    after: int,
    jsonl: bool,
    quiet: bool,
    began: float | None = None,
    frames: int | None = None,
) -> None:
    """Watch a job to its end (progress bar or JSON lines); exits non-zero unless it is done."""
    from v2vz.client import event_to_dict

    last: pb.JobEvent | None = None
    try:
        if jsonl:
            for last in client.watch(job_id, after):  # noqa: B007 - the last event is the outcome
                emit_json(event_to_dict(last))
        else:
            last = watch_with_bar(client, job_id, after, quiet)
    except KeyboardInterrupt:
        say(
            f"detached from job {job_id}, which keeps running: `v2vz attach {job_id}` follows it again, "
            f"`v2vz cancel {job_id}` cancels it"
        )
        raise typer.Exit(130) from None
    kind = last.WhichOneof("kind") if last is not None else None
    if kind == "done":
        if not jsonl:
            say(wrote_line(last.done, began, frames))
        return
    if kind == "failed":
        code = 2 if last.failed.code in USER_ERROR_CODES else 1
        raise fail(last.failed.reason or f"job {job_id} failed ({last.failed.code or 'no reason given'})", code)
    if kind == "cancelled":
        reason = f": {last.cancelled.reason}" if last.cancelled.reason else ""
        raise fail(f"job {job_id} was cancelled{reason}", 1)
    raise fail(f"the daemon ended the events of job {job_id} before it finished: `v2vz attach {job_id}`", 1)


def show_bar(bar: Progress, tasks: dict[str, int], stage: str, step: int, total: int, cached: bool = False) -> bool:
    """One bar per stage; a new window starts the stage bars again. False for stages without a bar."""
    if stage not in STAGE_LABELS or (stage == "window" and total < 2):
        return False
    if stage == "window":
        for name, task in tasks.items():
            if name != "window":
                bar.reset(task)
    label = STAGE_LABELS[stage] + (" (cached)" if cached else "")
    total = max(total, 1)
    if stage not in tasks:
        tasks[stage] = bar.add_task(label, total=total)
    bar.update(tasks[stage], description=label, total=total, completed=total if cached else min(step, total))
    return True


class CountColumn(MofNCompleteColumn):
    """`3/50` for a stage, nothing for the status line (which has no total)."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else super().render(task)


def watch_with_bar(client: Client, job_id: str, after: int, quiet: bool) -> pb.JobEvent | None:
    """Follow a job with one progress bar per stage on stderr; returns its last (terminal) event."""
    last = None
    with Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        CountColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=False,
    ) as bar:
        status = bar.add_task(f"job {job_id}", total=None, visible=False)
        stages: dict[str, int] = {}
        for last in client.watch(job_id, after):  # noqa: B007 - the last event is the outcome
            kind = last.WhichOneof("kind")
            if kind == "queued":
                position = last.queued.position
                label = f"queued (position {position})" if position else "queued (next)"
                bar.update(status, description=label, visible=True)
            elif kind == "progress":
                step = last.progress
                stage, cached = step.stage, step.cached
                if stage == "cached-inversion":
                    stage, cached = "inversion", True
                if show_bar(bar, stages, stage, step.step, step.total, cached):
                    bar.update(status, visible=False)
                elif stage != "window":
                    bar.update(status, description=STATUS_LABELS.get(stage, stage), visible=True)
            elif kind in ("done", "failed", "cancelled"):
                bar.update(status, visible=False)
    return last


def wrote_line(done: pb.Done, began: float | None, frames: int | None) -> str:
    outputs = [done.out_mp4] if done.out_mp4 else []
    if done.frame_paths:
        outputs.append(f"{len(done.frame_paths)} PNG frames in {Path(done.frame_paths[0]).parent}")
    count = frames or len(done.frame_paths)
    seconds = time.perf_counter() - began if began is not None else sum(done.timings.values())
    line = f"wrote {', '.join(outputs) or 'nothing'}: " + (f"{count} frames " if count else "")
    line += f"in {seconds:.1f} s"
    return line + (" (inversion from the cache)" if done.inversion_cached else "")


def connect() -> Client:
    from v2vz.client import Client

    return Client()


@app.command()
def attach(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="The job id (`v2vz jobs` lists them).")],
    after: Annotated[int, typer.Option(help="Only events after this sequence number (the last one you saw).")] = 0,
    events: EventsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Follow a daemon job to its end: a progress bar, or its events as JSON lines."""
    try:
        if after < 0:
            raise fail(f"--after must be 0 or more, got {after}")
        with connect() as client:
            follow(client, job_id, after, events is not None, quiet)
    except V2vzError as exc:
        raise fail(str(exc)) from None


@app.command()
def cancel(job_id: Annotated[str, typer.Argument(metavar="JOB", help="The job id (`v2vz jobs` lists them).")]) -> None:
    """Cancel a daemon job (queued, or running: it stops at the next diffusion step); prints its state."""
    try:
        with connect() as client:
            state = client.cancel(job_id)
    except V2vzError as exc:
        raise fail(str(exc)) from None
    out.print(f"{job_id}: {state}", highlight=False, markup=False, soft_wrap=True)


def _when(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S") if unix else ""


@app.command()
def jobs(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list on stdout instead of a table.")] = False,
) -> None:
    """The daemon's jobs: state, submission time, frames, source, prompt and the reason of a failure."""
    from v2vz.client import summary_to_dict

    try:
        if limit < 1:
            raise fail(f"--limit must be 1 or more, got {limit}")
        with connect() as client:
            listed = client.jobs(limit)
    except V2vzError as exc:
        raise fail(str(exc)) from None
    if as_json:
        emit_json_list([summary_to_dict(job) for job in listed])
        return
    if not listed:
        say("no jobs yet: `v2vz edit CLIP -p PROMPT -s SOURCE_PROMPT` submits one")
        return
    table = Table("id", "state", "submitted", "frames", "source", "prompt", "reason", highlight=False)
    for job in listed:
        frames = f"{job.start}..{job.start + job.frames - 1}" if job.frames else ""
        table.add_row(
            *(
                Text(value)
                for value in (
                    job.job_id,
                    job.state,
                    _when(job.submitted_unix),
                    frames,
                    Path(job.source).name,
                    job.prompt,
                    job.reason,
                )
            )
        )
    out.print(table)


def emit_json_list(rows: list[dict[str, Any]]) -> None:
    sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    sys.stdout.flush()


@app.command("sample-clip")
def sample_clip(
    path: Annotated[Path, typer.Argument(help="Where to write the sample MP4.")] = Path("sample.mp4"),
    frames: Annotated[int, typer.Option(help="Number of frames.")] = 24,
    width: Annotated[int, typer.Option()] = 320,
    height: Annotated[int, typer.Option()] = 192,
) -> None:
    """Write a small synthetic clip (a ball rolling over grass) to try v2vz without any media."""
    from v2vz_daemon.engine.video import make_sample_clip

    try:
        make_sample_clip(path, frames=frames, width=width, height=height)
    except V2vzError as exc:
        raise fail(str(exc)) from None
    err.print(
        f"wrote {path}: {frames} frames at {width}x{height}, 24 fps", highlight=False, markup=False, soft_wrap=True
    )


from v2vz.serve import serve  # noqa: E402 - registered last so that `v2vz --help` lists it after edit

app.command()(serve)

from v2vz.plugins import plugin_app  # noqa: E402

app.add_typer(plugin_app, name="plugin")

from v2vz.watch import watch  # noqa: E402 - listed after serve

app.command()(watch)


def main() -> None:  # pragma: no cover - console entry point convenience
    sys.exit(app())


if __name__ == "__main__":
    main()
