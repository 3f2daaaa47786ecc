"""The `v2vz` command. It imports no torch at start-up: only `edit --local` loads the engine."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from v2vz.errors import V2vzError
from v2vz.job import ATTENTION_LAYOUTS, PRESETS, EditJob, EditOptions

app = typer.Typer(
    help="v2vz: text-driven video editing with a pretrained image diffusion model (vid2vid-zero).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)

STAGE_LABELS = {"inversion": "DDIM inversion", "null-text": "null-text optimization", "edit": "editing"}


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
    source: Annotated[Path, typer.Argument(help="The clip to edit (anything FFmpeg reads).")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What the edited clip should show.")],
    source_prompt: Annotated[str, typer.Option("--source-prompt", "-s", help="What the clip shows now.")] = "",
    start: Annotated[int, typer.Option(help="First source frame (0-based).")] = 0,
    frames: Annotated[int, typer.Option(help="Number of frames to edit.")] = 8,
    out: Annotated[
        Path | None,
        typer.Option(help="Output: an .mp4 file, or a folder for PNG frames. Default ./NAME-v2vz.mp4"),
    ] = None,
    png_dir: Annotated[Path | None, typer.Option(help="Also write numbered PNG frames here.")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A diffusers folder, a hub id, or a preset (tiny, sd15-random). Default: $V2VZ_MODEL "
            "or CompVis/stable-diffusion-v1-4."
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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where built-in models are kept (default ~/.cache/v2vz).")
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="Run the engine in this process.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Edit a range of a clip so that it shows PROMPT, keeping its motion and layout."""
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
        )
        job.validate()
        if not local:
            raise fail("no v2vz daemon is available to this client yet: pass --local to edit in this process")
        run_local(job, device, cache_dir, quiet)
    except V2vzError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def run_local(job: EditJob, device: str, cache_dir: Path | None, quiet: bool) -> None:
    """Load the engine in-process and run the job with a rich progress bar."""
    began = time.perf_counter()
    from v2vz_daemon.engine import video
    from v2vz_daemon.engine.models import load_model
    from v2vz_daemon.engine.pipeline import VideoEditPipeline
    from v2vz_daemon.engine.run import run_job

    video.check_range(video.probe(job.source), job.start, job.frames)  # fail fast, before the model loads
    with err.status("loading model", spinner="dots") if not quiet else _nothing():
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
            if stage not in STAGE_LABELS:
                return
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGE_LABELS[stage], total=total)
            bar.update(tasks[stage], completed=step)

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


def main() -> None:  # pragma: no cover - console entry point convenience
    sys.exit(app())
