"""`v2vz edit`: one edit, through the daemon (submit, then follow it) or in this process with --local."""

from __future__ import annotations

import contextlib
import time
from fractions import Fraction
from pathlib import Path
from typing import Annotated

import typer

from v2vz.api.errors import EXIT_INTERRUPTED, InvalidArgument, V2vzError
from v2vz.api.job import ATTENTION_LAYOUTS, INVERSIONS, PRESETS, EditJob, EditOptions, parse_fps
from v2vz.cli.follow import EventsOption, follow
from v2vz.cli.output import StageBars, emit_json, err, fail, refuse, say

# Extensions that name a media file, which --out does not write (yet): refused rather than taken for a folder name.
VIDEO_SUFFIXES = {".mov", ".mkv", ".avi", ".webm", ".m4v", ".mxf", ".gif", ".wav", ".mp3"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp", ".dpx"}
MEDIA_SUFFIXES = frozenset(VIDEO_SUFFIXES | IMAGE_SUFFIXES)


def split_output(given: str | None, source: Path) -> tuple[Path | None, Path | None]:
    """`--out x.mp4` writes an MP4; a path without an extension, or ending in `/`, a folder of numbered PNG frames.

    Any other media extension is refused (InvalidArgument), so that `--out x.mov` never quietly writes a folder.
    """
    if given is None:
        return Path.cwd() / f"{source.stem}-v2vz.mp4", None
    out = Path(given).expanduser()
    suffix = out.suffix.lower()
    if suffix == ".mp4":
        return out, None
    if suffix in MEDIA_SUFFIXES and not given.endswith(("/", "\\")):
        raise InvalidArgument(
            f"--out {out}: v2vz writes .mp4 files or a folder of PNG frames (a path without an extension, or "
            f"ending in /), not {suffix} files"
        )
    return None, out


def edit(
    source: Annotated[
        Path,
        typer.Argument(
            help="The clip to edit: a video (anything FFmpeg reads), a folder of frames, or the first image of a "
            "numbered sequence (frame_0001.png: it and the higher-numbered ones)."
        ),
    ],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What the edited clip should show.")],
    source_prompt: Annotated[
        str, typer.Option("--source-prompt", "-s", help="What the clip shows now (required).")
    ] = "",
    start: Annotated[int, typer.Option(help="First source frame (0-based).")] = 0,
    frames: Annotated[int, typer.Option(help="Number of frames to edit; 0: through the end of the clip.")] = 8,
    out: Annotated[
        str | None,
        typer.Option(help="Output: an .mp4 file, or a folder for PNG frames. Default ./NAME-v2vz.mp4"),
    ] = None,
    png_dir: Annotated[Path | None, typer.Option(help="Also write numbered PNG frames here.")] = None,
    source_fps: Annotated[
        str | None, typer.Option(help="Frame rate of an image-sequence source, e.g. 24 or 24000/1001 (24).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A diffusers folder, a hub id in the local cache, or a built-in model (tiny, sd15-random); "
            "`v2vz models` lists them. Default: the daemon's model (--local: $V2VZ_MODEL or "
            "CompVis/stable-diffusion-v1-4)."
        ),
    ] = None,
    preset: Annotated[str, typer.Option(help=f"Engine settings: {', '.join(PRESETS)}.")] = "default",
    steps: Annotated[int | None, typer.Option(help="DDIM steps (50).")] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale (7.5).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (used when the VAE encoding is sampled).")] = None,
    size: Annotated[int | None, typer.Option(help="Working long side in pixels (default: the model's own).")] = None,
    inversion: Annotated[
        str | None,
        typer.Option(
            help=f"How the edit stays on the clip: {', '.join(INVERSIONS)} (default: the preset's; "
            "docs/method-differences.md)."
        ),
    ] = None,
    fast: Annotated[bool, typer.Option("--fast", help="The same as --inversion direct.")] = False,
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
        if fast and inversion not in (None, "direct"):
            raise InvalidArgument(f"--fast is --inversion direct: drop --fast or --inversion {inversion}")
        options = EditOptions.preset(
            preset,
            steps=steps,
            guidance=guidance,
            seed=seed,
            size=size,
            inversion="direct" if fast else inversion,
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
            run_remote(job, events is not None, quiet)
    except V2vzError as exc:
        raise refuse(exc, events is not None) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None


def run_local(job: EditJob, device: str, cache_dir: Path | None, quiet: bool) -> None:
    """Load the engine in-process and run the job with a rich progress bar."""
    began = time.perf_counter()
    from v2vz_engine.model_source import default_model, locate

    located = locate(job.model or default_model())  # a wrong name fails in milliseconds, before torch loads
    from v2vz_engine import media
    from v2vz_engine.models import load_model
    from v2vz_engine.pipeline import VideoEditPipeline
    from v2vz_engine.prompt_length import prompt_note
    from v2vz_engine.run import as_resource_error, run_job

    job, _ = media.resolve(job)  # fail fast, before the model loads
    for name, text in (("prompt", job.prompt), ("source prompt", job.source_prompt)):
        note = prompt_note(name, text)
        if note:
            say(f"note: {note}")
    with err.status("loading model", spinner="dots") if not quiet else contextlib.nullcontext():
        pipeline = VideoEditPipeline(load_model(located.spec, device, cache_dir))

    with StageBars(quiet) as bars:
        try:
            result = run_job(job, pipeline, bars.step)
        except Exception as exc:
            resource = as_resource_error(exc)
            if resource is None:
                raise
            raise resource from exc
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


def run_remote(job: EditJob, jsonl: bool, quiet: bool) -> None:
    """Submit the job to the daemon, then follow it to its end."""
    from v2vz.client import Client, absolute_paths

    began = time.perf_counter()
    job = absolute_paths(job)
    with Client() as client:
        reply = client.submit(job)
        if jsonl:  # stderr stays for errors: what a person reads comes in the `submitted` line
            submitted = {"type": "submitted", "job_id": reply.job_id, "position": reply.queue_position}
            emit_json(submitted | ({"notes": list(reply.notes)} if reply.notes else {}))
        else:
            ahead = f", {reply.queue_position} job(s) ahead of it" if reply.queue_position else ""
            say(f"job {reply.job_id} accepted{ahead}: `v2vz attach {reply.job_id}` follows it from anywhere")
            for note in reply.notes:
                say(f"note: {note}")
        follow(client, reply.job_id, 0, jsonl, quiet, began=began, frames=job.frames)
