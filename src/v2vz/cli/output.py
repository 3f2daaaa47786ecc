"""What the CLI prints: the two consoles, one-line errors, JSON lines, and the progress bars of a job's stages.

Every command module imports these and nothing from another command, so there is no import circle.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, Task, TextColumn, TimeElapsedColumn
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
STATUS_LABELS = {Stage.START: "starting", Stage.WRITE: "writing outputs"}  # stages without a bar


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


class StageBars:
    """One progress bar per stage of a job on stderr, and a status line for what has no bar (queued, starting)."""

    def __init__(self, quiet: bool, status: str | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description:<24}"),
            BarColumn(),
            CountColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=quiet,
            transient=False,
        )
        self._status = self.progress.add_task(status or "", total=None, visible=False)
        self._stages: dict[str, int] = {}

    def __enter__(self) -> StageBars:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def status(self, text: str | None) -> None:
        """Show `text` on the status line; None hides it."""
        if text is None:
            self.progress.update(self._status, visible=False)
        else:
            self.progress.update(self._status, description=text, visible=True)

    def step(self, stage: str, step: int, total: int, cached: bool = False) -> None:
        """One progress report: its stage's bar moves; a new window starts the stage bars again."""
        if stage not in STAGE_LABELS or (stage == Stage.WINDOW and total < 2):
            if stage != Stage.WINDOW:
                self.status(STATUS_LABELS.get(stage, stage))
            return
        if stage == Stage.WINDOW:
            for name, task in self._stages.items():
                if name != Stage.WINDOW:
                    self.progress.reset(task)
        label = STAGE_LABELS[stage] + (" (cached)" if cached else "")
        total = max(total, 1)
        if stage not in self._stages:
            self._stages[stage] = self.progress.add_task(label, total=total)
        completed = total if cached else min(step, total)
        self.progress.update(self._stages[stage], description=label, total=total, completed=completed)
        self.status(None)
