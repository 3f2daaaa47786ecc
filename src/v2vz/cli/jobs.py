"""`v2vz attach`, `v2vz cancel`, `v2vz jobs`: the daemon's jobs, one at a time or as a list."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated

import typer

from v2vz.api.errors import EXIT_FAILED, V2vzError
from v2vz.api.events import JobState
from v2vz.api.formats import frame_pattern
from v2vz.api.job import METHODS
from v2vz.api.wire import summary_to_dict
from v2vz.cli.follow import EventsOption, follow
from v2vz.cli.output import emit_json_list, fail, print_line, refuse, say

JobArgument = Annotated[
    str, typer.Argument(metavar="JOB", help="The job id, or any unique start of it (`v2vz jobs` lists them).")
]


def attach(
    job_id: JobArgument,
    after: Annotated[int, typer.Option(help="Only events after this sequence number (the last one you saw).")] = 0,
    events: EventsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Follow a daemon job to its end: a progress bar, or its events as JSON lines."""
    from v2vz.client import Client

    try:
        if after < 0:
            raise fail(f"--after must be 0 or more, got {after}")
        with Client() as client:
            follow(client, job_id, after, events is not None, quiet)
    except V2vzError as exc:
        raise refuse(exc, events is not None) from None


def cancel(job_id: JobArgument) -> None:
    """Cancel a daemon job: a queued one at once, a running one at its next diffusion step (its frames stay)."""
    from v2vz.client import Client

    try:
        with Client() as client:
            reply = client.cancel_job(job_id)
    except V2vzError as exc:
        raise refuse(exc) from None
    full_id = reply.job_id or job_id
    if reply.had_ended:
        print_line(f"{full_id}: already {reply.state}, nothing to cancel")
        raise typer.Exit(EXIT_FAILED)
    if reply.state == JobState.RUNNING:
        message = f"{full_id}: cancelling, it stops at its next diffusion step (`v2vz attach {full_id}` follows it)"
    else:
        message = f"{full_id}: {reply.state}"
    print_line(message)


def _when(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S") if unix else ""


def jobs(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list on stdout instead of a table.")] = False,
) -> None:
    """The daemon's jobs, newest first: id, state, when, how long, frames, model, output, prompt, reason, options,
    local edit (words, matte, masks)."""
    from v2vz.client import Client

    try:
        if not 1 <= limit <= 100_000:
            raise fail(f"--limit must be between 1 and 100000, got {limit}")
        with Client() as client:
            listed = client.jobs(limit)
    except V2vzError as exc:
        raise refuse(exc) from None
    if as_json:
        emit_json_list([summary_to_dict(job) for job in listed])
        return
    if not listed:
        say("no jobs yet: `v2vz edit CLIP -p PROMPT -s SOURCE_PROMPT` submits one")
        return
    for job in listed:
        for line in job_block(job):
            print_line(line)  # prompts, paths and reasons are user-given: control characters escaped


def _output_note(job) -> str:
    """` -> OUTPUT` as the job left it: a job that ended without writing does not claim its take's name (a later
    job may hold it now), and an output that is gone since (a preview its final replaced) says so."""
    output = job.output or job.out_frames_dir
    if not output:
        return ""
    if job.state in (JobState.CANCELLED, JobState.FAILED) and job.take:
        return f" -> nothing written (take {job.take} was not made)"
    if job.state == JobState.DONE and job.output and not _output_exists(job.output):
        return f" -> {output} (no longer there)"
    return f" -> {output}"


def _output_exists(output: str) -> bool:
    """Whether a done job's output is still there (a frame pattern: its folder)."""
    path = Path(output)
    return path.parent.is_dir() if frame_pattern(path) is not None else path.exists()


def job_block(job) -> list[str]:
    """A job as a few short lines, readable at any terminal width; its id whole, as attach and cancel take it."""
    row = summary_to_dict(job)
    took = f", took {row['seconds']:.1f} s" if row["seconds"] is not None else ""
    take = f"  take {job.take}" if job.take else ""
    kind = " (preview)" if job.preview else ""
    lines = [f"{job.job_id}  {job.state:<9} submitted {_when(job.submitted_unix)}{took}{take}{kind}"]
    what = f"frames {job.start}..{job.start + job.frames - 1} of {job.source}" if job.frames else job.source
    method = job.options.get("method") or METHODS[0]  # options hold what differs from the defaults
    with_model = f" with {job.model} ({method})" if job.model else f" ({method})"
    lines.append(f"    {what}{with_model}{_output_note(job)}")
    lines.append(f"    prompt: {job.prompt}")
    if row["options"]:
        lines.append("    options: " + " ".join(f"{name}={value}" for name, value in row["options"].items()))
    if row["loras"]:
        lines.append("    loras: " + ", ".join(lora_text(lora) for lora in row["loras"]))
    local = local_edit_text(row)
    if local:
        lines.append(f"    local edit: {local}")
    if job.reason:
        lines.append(f"    reason: {job.reason}")
    return lines


DIGEST_SHOWN = 12  # characters of a matte's sha256 in the table (--json has it whole)


def lora_text(lora: dict) -> str:
    """A LoRA of a job, for the table: PATH:SCALE and the start of its file's sha256."""
    digest = f" (sha256 {lora['digest'][:DIGEST_SHOWN]})" if lora["digest"] else ""
    return f"{lora['path']}:{lora['scale']:g}{digest}"


def local_edit_text(row: dict) -> str:
    """What a local edit is bounded by, for the table: its words, its matte (and the start of its digest, which
    tells two versions of one matte file apart) and where its masks go; "" for an edit of the whole frame."""
    parts = []
    words = row["options"].get("edit_only", "").strip()
    if words:
        parts.append(f"only {words!r}")
    if row["matte"]:
        digest = f" (sha256 {row['matte_digest'][:DIGEST_SHOWN]})" if row["matte_digest"] else ""
        start = f" from its frame {row['matte_start']}" if row.get("matte_start") else ""
        parts.append(f"matte {row['matte']}{start}{digest}")
    if row["mask_dir"]:
        parts.append(f"masks -> {row['mask_dir']}")
    return ", ".join(parts)
