"""`v2vz logs [JOB]`: what the daemon did, one line per job transition (submitted, started, done, failed, ...)."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Annotated

import typer

from v2vz.api.endpoint import DAEMON_LOG_NAME, STATE_FOLDER, cache_root, read_endpoint
from v2vz.api.errors import AmbiguousJob, DaemonUnavailable, JobNotFound, V2vzError
from v2vz.cli.output import fail, print_line, refuse

_JOB = re.compile(r"\bjob ([0-9a-f]{12})\b")


def log_path(cache_dir: Path | None) -> Path:
    """The daemon's log: named in its endpoint file while it runs, else in the state folder of `cache_dir`."""
    if cache_dir is None:
        try:
            named = read_endpoint().log_file
        except DaemonUnavailable:
            named = None
        if named:
            return Path(named)
    return cache_root(cache_dir) / STATE_FOLDER / DAEMON_LOG_NAME


def job_lines(lines: list[str], prefix: str) -> list[str]:
    """The lines about the one job whose id starts with `prefix` (AmbiguousJob when several do)."""
    prefix = prefix.strip().lower()
    ids = {match for line in lines for match in _JOB.findall(line) if match.startswith(prefix)}
    if not ids:
        raise JobNotFound(f"the daemon's log says nothing of a job {prefix!r}: `v2vz jobs` lists the known ones")
    if len(ids) > 1:
        shown = ", ".join(sorted(ids)[:5]) + (", ..." if len(ids) > 5 else "")
        raise AmbiguousJob(f"{prefix!r} starts more than one job id ({shown}): give more of it")
    (job_id,) = ids
    return [line for line in lines if job_id in line]


def logs(
    job_id: Annotated[
        str | None, typer.Argument(metavar="[JOB]", help="Only this job's lines (its id or any unique start of it).")
    ] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="The last N lines.")] = 50,
    cache_dir: Annotated[
        Path | None, typer.Option(help="The daemon's --cache-dir, to read its log while it is not running.")
    ] = None,
) -> None:
    """Show the daemon's log: a line per job transition, with outputs, times and reasons."""
    if lines < 1:
        raise fail(f"--lines must be 1 or more, got {lines}")
    path = log_path(cache_dir)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read().splitlines()
    except FileNotFoundError:
        raise fail(f"no daemon log at {path}: the daemon has not run with this cache folder (--cache-dir)") from None
    except OSError as exc:
        raise fail(f"cannot read {path} ({exc.strerror or exc})") from None
    try:
        chosen = job_lines(text, job_id) if job_id else text
    except V2vzError as exc:
        raise refuse(exc) from None
    for line in deque(chosen, maxlen=lines):
        print_line(line)  # a log written by an older daemon may hold a prompt's or a path's control characters
