"""Following a daemon job to its end: progress bars or JSON lines while it runs, then its outcome as an exit code."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from v2vz.api.errors import EXIT_INTERRUPTED, V2vzError
from v2vz.api.events import EventType, event_to_dict, outcome
from v2vz.cli.output import StageBars, emit_json, fail, refuse, say

if TYPE_CHECKING:
    from v2vz.api.v1 import editor_pb2 as pb
    from v2vz.client import Client


class EventsFormat(StrEnum):
    jsonl = "jsonl"


EventsOption = Annotated[
    EventsFormat | None,
    typer.Option(
        "--events",
        help="jsonl: no progress bar; one JSON object per job event on stdout (see docs/events.md).",
    ),
]


def follow(
    client: Client,
    job_id: str,
    after: int,
    jsonl: bool,
    quiet: bool,
    began: float | None = None,
    frames: int | None = None,
) -> None:
    """Follow a job to its end (progress bars or JSON lines); exits non-zero unless it is done."""
    last: pb.JobEvent | None = None
    try:
        if jsonl:
            for last in client.follow(job_id, after):  # noqa: B007 - the last event is the outcome
                emit_json(event_to_dict(last))
        else:
            last = follow_with_bars(client, job_id, after, quiet)
    except KeyboardInterrupt:
        say(
            f"detached from job {job_id}, which keeps running: `v2vz attach {job_id}` follows it again, "
            f"`v2vz cancel {job_id}` cancels it"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except V2vzError as exc:
        raise refuse(exc, jsonl) from None
    ended = outcome(job_id, last)
    if not ended.done:
        raise fail(ended.message, ended.exit_code)
    if not jsonl:
        say(wrote_line(last.done, began, frames))


def follow_with_bars(client: Client, job_id: str, after: int, quiet: bool) -> pb.JobEvent | None:
    """Follow a job with one progress bar per stage on stderr; returns its last (terminal) event."""
    last = None
    with StageBars(quiet, f"job {job_id}") as bars:
        for last in client.follow(job_id, after):  # noqa: B007 - the last event is the outcome
            kind = last.WhichOneof("kind")
            if kind == EventType.QUEUED:
                if last.queued.requeued:
                    bars.note(f"the daemon restarted while job {job_id} ran: it runs again from its start")
                position = last.queued.position
                bars.queued(position)
            elif kind == EventType.PROGRESS:
                step = last.progress
                bars.step(step.stage, step.step, step.total, step.cached, at=last.time_unix, reason=step.reason)
            elif kind in (EventType.DONE, EventType.FAILED, EventType.CANCELLED):
                bars.status(None)
    return last


def wrote_line(done: pb.Done, began: float | None, frames: int | None) -> str:
    """`wrote OUT: N frames in S s`, the last line of a job that is done: the same for `edit` and `attach`, since
    both take the job's own run time from the daemon (older daemons: the time followed, or the stages' sum)."""
    outputs = [done.output] if done.output else []
    if done.frame_paths:
        outputs.append(f"{len(done.frame_paths)} PNG frames in {Path(done.frame_paths[0]).parent}")
    count = done.frames or frames or len(done.frame_paths)
    followed = time.perf_counter() - began if began is not None else sum(done.timings.values())
    seconds = done.seconds or followed
    counted = done.frame_paths and not done.output  # `N PNG frames in DIR` alone: its count is not said twice
    line = f"wrote {', '.join(outputs) or 'nothing'}" + (f": {count} frames" if count and not counted else "")
    line += f" in {seconds:.1f} s"
    return line + (" (inversion from the cache)" if done.inversion_cached else "")
