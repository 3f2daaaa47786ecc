"""What the CLI prints: the two consoles, one-line errors, JSON lines, and the progress bars of a job's stages.

Every command module imports these and nothing from another command, so there is no import circle.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from v2vz.api.errors import V2vzError
from v2vz.api.events import Stage, error_line

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


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr and an exit code: what the CLI does for every error a user can fix."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def refuse(error: V2vzError, jsonl: bool = False) -> typer.Exit:
    """fail() for a contract error, with its exit code; with --events jsonl also its typed `error` line on stdout."""
    if jsonl:
        emit_json(error_line(error))
    return fail(str(error), error.exit_code)


def say(message: str) -> None:
    """One plain line on stderr (no markup, never wrapped)."""
    err.print(message, highlight=False, markup=False, soft_wrap=True)


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
    """The time a stage has left (`-:--:--` until its rate is known), nothing for the status line."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else super().render(task)


LINE_INTERVAL = 5.0  # seconds between two plain progress lines of one stage (logs, pipes, CI); $V2VZ_PROGRESS_SECONDS


class StageBars:
    """A job's progress on stderr: one bar per stage with its ETA on a terminal; plain lines at a sensible rate
    when stderr is a file or a pipe (a log shows what happens while it happens); nothing with --quiet."""

    def __init__(self, quiet: bool, status: str | None = None) -> None:
        self.mode = "quiet" if quiet else ("bars" if err.is_terminal else "lines")
        self.progress = Progress(
            TextColumn("[bold]{task.description:<24}"),
            StageBarColumn(),
            CountColumn(),
            TimeElapsedColumn(),
            EtaColumn(),
            console=err,
            disable=self.mode != "bars",
            transient=False,
        )
        self._status = self.progress.add_task(status or "", total=None, visible=False)
        self._stages: dict[str, int] = {}
        self._said_status: str | None = None
        self._rates: dict[str, tuple[float, int, float]] = {}  # stage -> (first time, first step, last line time)
        self._window = ""
        self._interval = float(os.environ.get("V2VZ_PROGRESS_SECONDS") or LINE_INTERVAL)

    def __enter__(self) -> StageBars:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        """A line that stays (above the bars on a terminal)."""
        if self.mode == "bars":
            self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)
        elif self.mode == "lines":
            say(text)

    def queued(self, position: int) -> None:
        self.status(f"waiting in the queue: {position} job(s) ahead" if position else "waiting: next in the queue")

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
            self.progress.update(self._status, description=text, visible=True)

    def step(self, stage: str, step: int, total: int, cached: bool = False, window_of: int | None = None) -> None:
        """One progress report: its stage's bar moves; a new window starts the stage bars again."""
        if stage not in STAGE_LABELS or (stage == Stage.WINDOW and total < 2):
            if stage != Stage.WINDOW:
                self.status(STATUS_LABELS.get(stage, stage))
            return
        if stage == Stage.WINDOW:
            self._window = f" (window {step}/{total})"
            self._rates.clear()
            for name, task in self._stages.items():
                if name != Stage.WINDOW:
                    self.progress.reset(task)
        label = STAGE_LABELS[stage] + (" (cached)" if cached else "")
        total = max(total, 1)
        if self.mode == "lines":
            self._line(stage, label, step, total)
            return
        if stage not in self._stages:
            self._stages[stage] = self.progress.add_task(label, total=total)
        completed = total if cached else min(step, total)
        self.progress.update(self._stages[stage], description=label, total=total, completed=completed)
        self.status(None)

    def _line(self, stage: str, label: str, step: int, total: int) -> None:
        """A plain line when a stage starts or ends, and at most every LINE_INTERVAL seconds in between."""
        now = time.monotonic()
        first = self._rates.get(stage)
        if first is None:
            self._rates[stage] = (now, step, now)
        elif step < total and now - first[2] < self._interval:
            return
        else:
            self._rates[stage] = (first[0], first[1], now)
        self._said_status = None
        where = "" if stage == Stage.WINDOW else self._window
        text = f"{label} {step}/{total}{where}"
        if first is not None and step > first[1] and step < total:
            left = (total - step) * (now - first[0]) / (step - first[1])
            text += f", about {_duration(left)} left"
        say(text)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 90 else f"{seconds // 60} min {seconds % 60:02d} s"
