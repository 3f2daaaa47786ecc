"""`v2vz attach`, `v2vz cancel`, `v2vz jobs`: the daemon's jobs, one at a time or as a list."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from v2vz.api.errors import V2vzError
from v2vz.api.wire import summary_to_dict
from v2vz.cli.follow import EventsOption, follow
from v2vz.cli.output import emit_json_list, fail, out, refuse, say

JobArgument = Annotated[str, typer.Argument(metavar="JOB", help="The job id (`v2vz jobs` lists them).")]


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
    """Cancel a daemon job (queued, or running: it stops at the next diffusion step); prints its state."""
    from v2vz.client import Client

    try:
        with Client() as client:
            state = client.cancel(job_id)
    except V2vzError as exc:
        raise refuse(exc) from None
    out.print(f"{job_id}: {state}", highlight=False, markup=False, soft_wrap=True)


def _when(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S") if unix else ""


def jobs(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list on stdout instead of a table.")] = False,
) -> None:
    """The daemon's jobs: state, submission time, frames, source, prompt and the reason of a failure."""
    from v2vz.client import Client

    try:
        if limit < 1:
            raise fail(f"--limit must be 1 or more, got {limit}")
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
    table = Table("id", "state", "submitted", "frames", "source", "prompt", "reason", highlight=False)
    for job in listed:
        frames = f"{job.start}..{job.start + job.frames - 1}" if job.frames else ""
        row = (job.job_id, job.state, _when(job.submitted_unix), frames, Path(job.source).name, job.prompt, job.reason)
        table.add_row(*(Text(value) for value in row))
    out.print(table)
