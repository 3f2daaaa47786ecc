"""`v2vz edit`: one edit, through the daemon (submit, then follow it) or in this process with --local."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated

import typer

from v2vz.api.errors import EXIT_INTERRUPTED, EXIT_LOST, DaemonUnavailable, InvalidArgument, JobLost, V2vzError
from v2vz.api.formats import CODECS, TAKE_FORMATS, default_codec, output_format
from v2vz.api.job import ATTENTION_LAYOUTS, INVERSIONS, METHODS, PRESETS, EditJob, EditOptions, Lora, parse_fps
from v2vz.api.takes import (
    Take,
    next_take,
    release_take,
    reserve_take,
    take_output,
    take_record,
    take_stem,
)
from v2vz.cli.follow import EventsOption, follow
from v2vz.cli.output import StageBars, emit_json, err, fail, refuse, say

TAKES_DIR_ENV = "V2VZ_TAKES_DIR"  # where takes go when neither --out nor --out-dir says: beside the source if unset


def split_output(given: str | None) -> tuple[Path | None, Path | None]:
    """(output file or frame pattern, PNG frames folder) that `--out` names; (None, None) without it: a take.

    A path without an extension, or ending in `/`, is a folder of 8-bit PNG frames; any other name must be one
    v2vz writes (v2vz.api.formats), so that `--out x.mkv` is refused at once rather than taken for a folder.
    """
    if given is None:
        return None, None
    out = Path(given).expanduser()
    if given.endswith(("/", "\\")) or not out.suffix:
        return None, out
    output_format(out)
    return out, None


def edit(
    source: Annotated[
        Path,
        typer.Argument(
            help="The clip to edit: a video (anything FFmpeg reads), a folder of frames, or the first image of a "
            "numbered sequence (frame_0001.png: it and the higher-numbered ones)."
        ),
    ],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What the edited clip should show.")],
    source_prompt: Annotated[str, typer.Option("--source-prompt", "-s", help="What the clip shows now.")],
    start: Annotated[int, typer.Option(help="First source frame (0-based).")] = 0,
    frames: Annotated[int, typer.Option(help="Number of frames to edit; 0: through the end of the clip.")] = 8,
    out: Annotated[
        str | None,
        typer.Option(
            help="Output: .mp4 (H.264, --codec h265), .mov (ProRes 422 HQ, --codec prores_4444 or dnxhr_hq), frames "
            "such as shot_%04d.exr / .png / .tif (16-bit), or a folder for 8-bit PNG frames. Default: the next take "
            "beside the source, NAME-v2vz-tN.mp4. An output that exists is refused unless --overwrite."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(help=f"Folder for the take files (default ${TAKES_DIR_ENV}, else beside the source)."),
    ] = None,
    take_format: Annotated[
        str | None,
        typer.Option("--format", help=f"Format of the take files: {', '.join(TAKE_FORMATS)} (mp4)."),
    ] = None,
    codec: Annotated[str | None, typer.Option(help=f"Codec of the output: {', '.join(CODECS)}.")] = None,
    audio: Annotated[bool, typer.Option("--audio/--no-audio", help="Keep the source's audio for the range.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an output that exists.")] = False,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview",
            help="The fast pass (direct inversion, 10 steps, half size), run ahead of queued finals; "
            "`v2vz final JOB` then makes the final of the same take.",
        ),
    ] = False,
    png_dir: Annotated[Path | None, typer.Option(help="Also write numbered 8-bit PNG frames here.")] = None,
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
    guidance: Annotated[
        float | None, typer.Option(help="Classifier-free guidance scale (7.5; flowedit: the target's, 13.5).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed (the VAE's sampled encoding; flowedit: its noise draws).")
    ] = None,
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
    window_links: Annotated[
        str | None,
        typer.Option(
            help="chained: each window attends to the previous one's last frames (one window after another). "
            "anchored: every window attends to ANCHORS+1 frames spread over the range, edited first, so a "
            "cluster (`v2vz serve --workers N`) runs all windows at once."
        ),
    ] = None,
    edit_only: Annotated[
        str | None,
        typer.Option(
            help="Edit only what these words of the prompts cover (e.g. 'car'; several: 'car wheels'): a mask from "
            "their cross-attention maps; the rest keeps the shot's own pixels (docs/media.md, 'Local edits')."
        ),
    ] = None,
    edit_only_threshold: Annotated[
        float | None,
        typer.Option(help="Share of a frame's strongest response to the words that counts as inside (0.3)."),
    ] = None,
    matte: Annotated[
        Path | None,
        typer.Option(
            help="Edit only where this matte is white (or opaque): a video, an image sequence or one image of the "
            "source's shape; frame i of the range uses the matte's frame MATTE_START + i."
        ),
    ] = None,
    matte_start: Annotated[int, typer.Option(help="The matte's frame that goes with the range's first frame.")] = 0,
    matte_feather: Annotated[
        float | None, typer.Option(help="Soften the matte's edge by a blur of this many source pixels (0).")
    ] = None,
    self_replace: Annotated[
        float | None,
        typer.Option(
            help="Fraction of the steps whose self-attention is the source's (0..1): keeps layout and motion (0)."
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help=f"Editing method: {', '.join(METHODS)} (vid2vid-zero: a Stable Diffusion model; flowedit: "
            "FlowEdit on a Wan 2.1 model, docs/methods.md)."
        ),
    ] = None,
    n_max: Annotated[
        int | None,
        typer.Option(help="flowedit: edit from this many steps before the end (0: 70% of --steps; 1..steps)."),
    ] = None,
    n_min: Annotated[
        int | None, typer.Option(help="flowedit: the last N steps sample the target plainly (0; below n-max).")
    ] = None,
    n_avg: Annotated[
        int | None, typer.Option(help="flowedit: noise draws averaged per step (1; 1..32, each costs a step).")
    ] = None,
    source_guidance: Annotated[
        float | None,
        typer.Option(help="flowedit: the source velocity's guidance (5.0; --guidance is the target's, 13.5)."),
    ] = None,
    lora: Annotated[
        list[str] | None,
        typer.Option(
            "--lora",
            help="Apply this LoRA (.safetensors, kohya/A1111 or diffusers format) at SCALE (1.0): PATH[:SCALE]; "
            "repeat for several. Scale 0 is the edit without it.",
        ),
    ] = None,
    save_mask: Annotated[
        Path | None,
        typer.Option(help="Write the local edit's masks here as 8-bit grey PNGs, numbered like the source's frames."),
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
            window_links=window_links,
            edit_only=edit_only,
            edit_only_threshold=edit_only_threshold,
            matte_feather=matte_feather,
            self_replace=self_replace,
            method=method,
            n_max=n_max,
            n_min=n_min,
            n_avg=n_avg,
            source_guidance=source_guidance,
        )
        output, frames_dir = split_output(out)
        if frames_dir and png_dir:
            raise fail("--out names a folder for PNG frames and --png-dir another: give one of them")
        if out is not None and (out_dir is not None or take_format is not None):
            raise fail("--out names the output; --out-dir and --format are for take names: give one or the other")
        job = EditJob(
            source=source,
            prompt=prompt,
            source_prompt=source_prompt,
            start=start,
            frames=frames,
            options=options,
            output=output,
            out_frames_dir=png_dir or frames_dir,
            model=model or "",
            source_fps=parse_fps(source_fps) if source_fps else None,
            codec=codec,
            audio=audio,
            overwrite=overwrite,
            preview=preview,
            matte=matte,
            matte_start=matte_start,
            mask_dir=save_mask,
            loras=tuple(Lora.parse(text) for text in lora or ()),
        )
        plan = TakePlan(out_dir, take_format or "mp4") if out is None else None
        run_edit(job, plan, local, events is not None, quiet, device=device, cache_dir=cache_dir)
    except V2vzError as exc:
        if isinstance(exc, DaemonUnavailable) and not isinstance(exc, JobLost) and not local:
            exc = type(exc)(f"{exc}, or pass --local to edit in this process")  # only `edit` has --local
        raise refuse(exc, events is not None) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None


@dataclass(frozen=True)
class TakePlan:
    """A job without --out gets the next take: in `folder` (None: $V2VZ_TAKES_DIR, else beside the source) in
    `container`'s format; `number` is a preview's take, for its final."""

    folder: Path | None = None
    container: str = "mp4"
    number: int | None = None

    def place(self, job: EditJob) -> tuple[Path, str]:
        """(folder, NAME) of the job's takes."""
        folder = self.folder or (Path(os.environ[TAKES_DIR_ENV]) if os.environ.get(TAKES_DIR_ENV) else None)
        source = Path(job.source).expanduser().absolute()
        return (folder or source.parent).expanduser().absolute(), take_stem(source)


def run_edit(
    job: EditJob,
    plan: TakePlan | None,
    local: bool,
    jsonl: bool,
    quiet: bool,
    device: str = "auto",
    cache_dir: Path | None = None,
    on_done: Callable[[], None] | None = None,
    record_extra: dict[str, str] | None = None,
) -> None:
    """Check the job, reserve its take (with a plan), then run it here (--local) or on the daemon. A take whose job
    is refused, fails or is cancelled is given back; one whose job may still run (a detach, a lost daemon) is kept.
    `record_extra` goes into the reserved record (a final names the preview it replaces: takes.REPLACES_KEY)."""
    job = job.with_absolute_paths()  # --local records, as the daemon's do, where the source is from anywhere
    take: Take | None = None
    if plan is None:
        job.validate()  # the CLI's one check; media.resolve (--local) or the daemon checks the job it runs again
    else:
        folder, stem = plan.place(job)
        container = plan.container
        default_codec(container)  # --format checked before anything is made
        upcoming = plan.number or next_take(folder, stem)  # a refusal names the file to be written
        example = take_output(folder, stem, upcoming, container, job.preview)
        # The job as it will be, checked before its take is reserved: the take's own number differs from `upcoming`
        # only when another client reserved that one meanwhile (media.resolve or the daemon checks the real job).
        dataclasses.replace(job, output=example, take=plan.number or 1).validate()
        recorded = job if local or job.model else dataclasses.replace(job, model=_daemon_model())
        reserved = take_record(recorded, "reserved", **(record_extra or {}))
        take = reserve_take(folder, stem, container, job.preview, plan.number, reserved)
    try:
        if take is not None:
            job = dataclasses.replace(job, output=take.output, take=take.number)
        if local:
            if jsonl:
                raise fail("--events reports the daemon's job events: drop --local to use it")
            run_local(job, device, cache_dir, quiet)
        else:
            run_remote(job, jsonl, quiet)
    except BaseException as error:
        if take is not None and not (not local and _may_still_run(error)):
            release_take(take)  # refused, failed, cancelled, or a --local run that stopped: the number is free
        raise
    if on_done is not None:
        on_done()


def _may_still_run(error: BaseException) -> bool:
    """The client stopped following, but the daemon's job goes on (a detach, a daemon that went away)."""
    if isinstance(error, typer.Exit):
        return error.exit_code in (EXIT_INTERRUPTED, EXIT_LOST)
    return isinstance(error, KeyboardInterrupt | JobLost)


def run_local(job: EditJob, device: str, cache_dir: Path | None, quiet: bool) -> None:
    """Load the engine in-process and run the job with a rich progress bar."""
    began = time.perf_counter()
    from v2vz_engine.model_source import default_model, locate

    located = locate(job.model or default_model())  # a wrong name fails in milliseconds, before torch loads
    from v2vz_engine.loras import resolve_loras  # torch-free: a file that is no LoRA fails before torch loads

    job = resolve_loras(job)  # each LoRA checked and digested: what the sidecar records
    from v2vz_engine import media
    from v2vz_engine.media.outputs import refuse_existing
    from v2vz_engine.methods import check_method, load_editor
    from v2vz_engine.model_source import model_family
    from v2vz_engine.prompt_length import prompt_note
    from v2vz_engine.run import as_resource_error, run_job

    job, info = media.resolve(job)  # fail fast, before the model loads; run_job reads with this probe
    check_method(job.options, model_family(located.spec), located.spec)  # before the model loads too
    refuse_existing(job)
    for name, text in (("prompt", job.prompt), ("source prompt", job.source_prompt)):
        note = prompt_note(name, text)
        if note:
            say(f"note: {note}")
    for note in media.matte_notes(job, info):
        say(f"note: {note}")
    with err.status("loading model", spinner="dots") if not quiet else contextlib.nullcontext():
        pipeline = load_editor(located.spec, device, cache_dir)

    with StageBars(quiet) as bars:
        try:
            result = run_job(job, pipeline, bars.step, info=info)
        except Exception as exc:
            resource = as_resource_error(exc)
            if resource is None:
                raise
            raise resource from exc
    info = result.source
    take = f"take {job.take}{' (preview)' if job.preview else ''}: " if job.take else ""
    outputs = [str(p) for p in (result.output,) if p] + (
        [f"{len(result.frame_paths)} PNG frames in {job.out_frames_dir}"] if result.frame_paths else []
    )
    fps = Fraction(info.fps)
    counted = result.frame_paths and not result.output  # `N PNG frames in DIR` alone: its count is not said twice
    what = f"{take}wrote {', '.join(outputs)}" + ("" if counted else f": {job.frames} frames")
    say(
        f"{what} at {info.width}x{info.height}, {fps} fps "
        f"(worked at {result.working_size[0]}x{result.working_size[1]}) in {time.perf_counter() - began:.1f} s"
    )


def _daemon_model() -> str:
    """The model the daemon runs a job that names none with: what a queued take's record says (never ""). Asked
    before the take is reserved, so a daemon that is not there costs no reservation."""
    from v2vz.client import Client

    with Client() as client:
        info = client.info()
    return info.default_model or info.model


def run_remote(job: EditJob, jsonl: bool, quiet: bool) -> None:
    """Submit the job to the daemon, then follow it to its end."""
    from v2vz.client import Client

    began = time.perf_counter()
    job = job.with_absolute_paths()
    with Client() as client:
        reply = client.submit(job)
        if jsonl:  # stderr stays for errors: what a person reads comes in the `submitted` line
            submitted = {"type": "submitted", "job_id": reply.job_id, "position": reply.queue_position}
            submitted |= {"take": job.take, "output": str(job.output) if job.output else None, "preview": job.preview}
            emit_json(submitted | ({"notes": list(reply.notes)} if reply.notes else {}))
        else:
            ahead = f", {reply.queue_position} job(s) ahead of it" if reply.queue_position else ""
            what = f" (take {job.take}{', preview' if job.preview else ''}: {job.output})" if job.take else ""
            say(f"job {reply.job_id}{what} accepted{ahead}: `v2vz attach {reply.job_id}` follows it from anywhere")
            for note in reply.notes:
                say(f"note: {note}")
        follow(client, reply.job_id, 0, jsonl, quiet, began=began, frames=job.frames)
