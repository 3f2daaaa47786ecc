"""`v2vz attach`, `v2vz cancel`, `v2vz jobs`: the daemon's jobs, one at a time or as a list."""

from __future__ import annotations

import datetime
from typing import Annotated

import typer

from v2vz.api.errors import EXIT_FAILED, V2vzError
from v2vz.api.events import JobState
from v2vz.api.wire import summary_to_dict
from v2vz.cli.follow import EventsOption, follow
from v2vz.cli.output import emit_json_list, fail, out, refuse, say

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
        out.print(f"{full_id}: already {reply.state}, nothing to cancel", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED)
    if reply.state == JobState.RUNNING:
        message = f"{full_id}: cancelling, it stops at its next diffusion step (`v2vz attach {full_id}` follows it)"
    else:
        message = f"{full_id}: {reply.state}"
    out.print(message, highlight=False, markup=False, soft_wrap=True)


def _when(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S") if unix else ""


def jobs(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list on stdout instead of a table.")] = False,
) -> None:
    """The daemon's jobs, newest first: id, state, when, how long, frames, model, output, prompt, reason, options."""
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
            out.print(line, highlight=False, markup=False, soft_wrap=True)


def job_block(job) -> list[str]:
    """A job as a few short lines, readable at any terminal width; its id whole, as attach and cancel take it."""
    row = summary_to_dict(job)
    took = f", took {row['seconds']:.1f} s" if row["seconds"] is not None else ""
    lines = [f"{job.job_id}  {job.state:<9} submitted {_when(job.submitted_unix)}{took}"]
    what = f"frames {job.start}..{job.start + job.frames - 1} of {job.source}" if job.frames else job.source
    output = job.output or job.out_frames_dir
    lines.append(f"    {what}" + (f" with {job.model}" if job.model else "") + (f" -> {output}" if output else ""))
    lines.append(f"    prompt: {job.prompt}")
    if row["options"]:
        lines.append("    options: " + " ".join(f"{name}={value}" for name, value in row["options"].items()))
    if job.reason:
        lines.append(f"    reason: {job.reason}")
    return lines
