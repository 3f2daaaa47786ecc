"""What the CLI prints: the two consoles, one-line errors, JSON lines, and the progress bars of a job's stages.

Every command module imports these and nothing from another command, so there is no import circle.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Self

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from v2vz.api.errors import V2vzError
from v2vz.api.events import Stage, error_line
from v2vz.api.text import printable

err = Console(stderr=True)
out = Console()

STAGE_LABELS = {
    Stage.WINDOW: "window",
    Stage.INVERSION: "DDIM inversion",
    Stage.NULL_TEXT: "null-text optimization",
    Stage.EDIT: "editing",
}
STATUS_LABELS = {  # stages without a bar
    Stage.START: "starting",
    Stage.LOAD_MODEL: "loading model",
    Stage.WRITE: "writing outputs",
    Stage.ANCHORS: "editing the anchor frames",
    Stage.RETRY: "a worker died: retrying its window elsewhere",
}


def print_line(text: str) -> None:
    """One plain line on stdout, control characters escaped (printable), never wrapped: a command's result."""
    out.print(printable(text), highlight=False, markup=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr and an exit code: what the CLI does for every error a user can fix."""
    err.print(f"[bold red]error:[/] {escape(printable(message))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def refuse(error: V2vzError, jsonl: bool = False) -> typer.Exit:
    """fail() for a contract error, with its exit code; with --events jsonl also its typed `error` line on stdout."""
    if jsonl:
        emit_json(error_line(error))
    return fail(str(error), error.exit_code)


def say(message: str) -> None:
    """One plain line on stderr (no markup, never wrapped, control characters escaped)."""
    err.print(printable(message), highlight=False, markup=False, soft_wrap=True)


def emit_json(data: dict[str, Any]) -> None:
    """One JSON object on one line of stdout, flushed at once (plugins read the lines as they come)."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def emit_json_list(rows: list[dict[str, Any]]) -> None:
    sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    sys.stdout.flush()


class CountColumn(MofNCompleteColumn):
    """`3/50` for a stage, nothing for the status line (which has no total)."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else super().render(task)


class StageBarColumn(BarColumn):
    """A stage's bar; none for the status line (a bar without a total is drawn full, which reads as finished)."""

    def render(self, task: Task):
        return Text("") if task.total is None else super().render(task)


class EtaColumn(TimeRemainingColumn):
    """The time a stage has left (`-:--:--` until its rate is known), nothing for the status line.

    StageBars computes it from the events' own times (`left`): rich's estimate from when updates arrive would read
    a replayed history (`v2vz attach` of a running job) as 43 steps in a millisecond. The window bar's is the whole
    job's time left."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        left = task.fields.get("left")
        if left is None:
            return Text("-:--:--", style="progress.remaining")
        minutes, seconds = divmod(max(0, round(left)), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


class ElapsedColumn(TimeElapsedColumn):
    """A stage's time so far, from the events' own times when StageBars knows them (`elapsed`)."""

    def render(self, task: Task) -> Text:
        elapsed = task.fields.get("elapsed")
        if elapsed is None:
            return super().render(task)
        minutes, seconds = divmod(max(0, round(elapsed)), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.elapsed")


LINE_INTERVAL = 5.0  # seconds between two plain progress lines of one stage (logs, pipes, CI); $V2VZ_PROGRESS_SECONDS


class JobClock:
    """The whole job's time left, from the windows done so far: a window takes what the finished ones took on
    average, and the window under way is as far along as its steps (against the steps a finished window had).

    Times are the events' own (the daemon's `time_unix`, or this process's clock for --local), never when they
    reach this process, so a replayed history estimates as the live job did.
    """

    def __init__(self) -> None:
        self.windows = 0
        self.started: list[tuple[int, float]] = []  # (window number, when it started), as seen (attach --after: late)
        self.window_steps: dict[str, int] = {}  # the current window's stage -> steps done
        self.steps_per_window: int | None = None  # the steps of a finished window, all its stages

    def window(self, number: int, windows: int, at: float) -> None:
        if self.started and number <= self.started[-1][0]:  # a window again (a restarted daemon runs it again)
            self.started = [seen for seen in self.started if seen[0] < number]
        elif self.started and self.window_steps:
            self.steps_per_window = sum(self.window_steps.values())
        self.windows = windows
        self.started.append((number, at))
        self.window_steps = {}

    @property
    def first_at(self) -> float | None:
        return self.started[0][1] if self.started else None

    def step(self, stage: str, step: int, total: int, cached: bool) -> None:
        """A bar stage's progress in the current window (a cached inversion counts as done)."""
        self.window_steps[stage] = total if cached else min(step, total)

    def left(self, at: float) -> float | None:
        """Seconds the whole job has left at time `at`; None before a window has finished (nothing to go by)."""
        if len(self.started) < 2 or self.windows < 2:
            return None
        (first, first_at), (current, current_at) = self.started[0], self.started[-1]
        per_window = (current_at - first_at) / (current - first)
        if self.steps_per_window:
            along = sum(self.window_steps.values()) / self.steps_per_window
        else:  # no step counts yet: the time the window has run so far
            along = (at - current_at) / per_window if per_window > 0 else 0.0
        return max(0.0, per_window * (self.windows - (current - 1) - min(along, 1.0)))


class ProgressDisplay:
    """What every progress display of the command shares (a job's stages here, `v2vz timeline`'s edits): rich bars
    on stderr when it is a terminal; plain lines at a sensible rate when it is a file or a pipe (a log shows what
    happens while it happens; $V2VZ_PROGRESS_SECONDS sets the rate); nothing with --quiet."""

    def __init__(self, quiet: bool, *columns: ProgressColumn) -> None:
        self.mode = "quiet" if quiet else ("bars" if err.is_terminal else "lines")
        self.progress = Progress(*columns, console=err, disable=self.mode != "bars", transient=False)
        self._interval = float(os.environ.get("V2VZ_PROGRESS_SECONDS") or LINE_INTERVAL)

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        """A line that stays (above the bars on a terminal); nothing with --quiet."""
        if self.mode == "bars":
            self.progress.console.print(printable(text), highlight=False, markup=False, soft_wrap=True)
        elif self.mode == "lines":
            say(text)


class StageBars(ProgressDisplay):
    """A job's progress on stderr: one bar per stage with its ETA on a terminal, plain lines otherwise, nothing
    with --quiet (ProgressDisplay).

    `at` (a daemon event's `time_unix`) times the estimates; without it, this process's clock when the step
    arrives (--local, where steps are reported as they happen).
    """

    def __init__(self, quiet: bool, status: str | None = None) -> None:
        super().__init__(
            quiet,
            TextColumn("[bold]{task.description:<24}"),
            StageBarColumn(),
            CountColumn(),
            ElapsedColumn(),
            EtaColumn(),
        )
        self._status = self.progress.add_task(status or "", total=None, visible=False)
        self._stages: dict[str, int] = {}
        self._said_status: str | None = None
        self._rates: dict[str, tuple[float, int]] = {}  # stage -> (its first event's time, its first step)
        self._said_at: dict[str, float] = {}  # stage -> when its last plain line was printed (this process's clock)
        self._window = ""
        self._job = JobClock()

    def queued(self, position: int) -> None:
        """A queued event: the jobs ahead of this one now (the daemon sends it again whenever that changes)."""
        self.status(f"queued: {position} job(s) ahead of it" if position else "queued: it runs next")

    def status(self, text: str | None) -> None:
        """Show `text` on the status line; None hides it."""
        if self.mode == "lines":
            if text is not None and text != self._said_status:
                say(text)
            self._said_status = text
            return
        if text is None:
            self.progress.update(self._status, visible=False)
        else:
            self.progress.update(self._status, description=escape(printable(text)), visible=True)

    def step(
        self,
        stage: str,
        step: int,
        total: int,
        cached: bool = False,
        window_of: int | None = None,
        at: float | None = None,
        reason: str = "",
    ) -> None:
        """One progress report: its stage's bar moves; a new window starts the stage bars again. A mask event's
        reason (frames with nothing to edit) is a note that stays."""
        at = time.monotonic() if at is None else at
        if stage == Stage.MASK:
            if reason:
                self.note(f"note: {reason}")
            return
        if stage not in STAGE_LABELS or (stage == Stage.WINDOW and total < 2):
            if stage != Stage.WINDOW:
                self.status(STATUS_LABELS.get(stage, stage))
            return
        if stage == Stage.WINDOW:
            self._window = f" (window {step}/{total})"
            self._rates.clear()
            self._job.window(step, total, at)
            for name, task in self._stages.items():
                if name != Stage.WINDOW:
                    self.progress.reset(task, left=None, elapsed=0.0)
        else:
            self._job.step(stage, step, total, cached)
        label = STAGE_LABELS[stage] + (" (cached)" if cached else "")
        total = max(total, 1)
        starts = stage not in self._rates  # its first report in this window: a plain line at once
        first = self._rates.setdefault(stage, (at, step))
        if stage == Stage.WINDOW:
            left = self._job.left(at)
        elif step > first[1] and step < total:
            left = (total - step) * (at - first[0]) / (step - first[1])
        else:
            left = 0.0 if step >= total else None
        if self.mode == "lines":
            self._line(stage, label, step, total, left, at, starts)
            return
        if stage not in self._stages:
            self._stages[stage] = self.progress.add_task(label, total=total)
        completed = total if cached else min(step, total)
        job_began = self._job.first_at
        elapsed = at - job_began if stage == Stage.WINDOW and job_began is not None else at - first[0]
        self.progress.update(
            self._stages[stage], description=label, total=total, completed=completed, left=left, elapsed=elapsed
        )
        window = self._stages.get(Stage.WINDOW)
        if window is not None and stage != Stage.WINDOW:
            self.progress.update(window, left=self._job.left(at))
        self.status(None)

    def _line(self, stage: str, label: str, step: int, total: int, left: float | None, at: float, starts: bool) -> None:
        """A plain line when a stage starts or ends, and at most every LINE_INTERVAL seconds in between."""
        now = time.monotonic()
        said = self._said_at.get(stage)
        if not starts and step < total and said is not None and now - said < self._interval:
            return
        self._said_at[stage] = now
        self._said_status = None
        where = "" if stage == Stage.WINDOW else self._window
        text = f"{label} {step}/{total}{where}"
        if stage == Stage.WINDOW:
            if left is not None:
                text += f", the whole job about {_duration(left)} left"
        else:
            if left is not None and step < total:
                text += f", about {_duration(left)} left"
            job_left = self._job.left(at)
            if job_left is not None:
                text += f" (the whole job: about {_duration(job_left)} left)"
        say(text)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 90 else f"{seconds // 60} min {seconds % 60:02d} s"
