"""The watcher's progress: a rich bar per file on a terminal, plain lines (at most one a second per file) otherwise."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from v2vz.api.text import printable


class Reporter:
    """The watcher's lines; clip names, paths and reasons go through `printable` (control characters escaped)."""

    def __init__(self, console: Console):
        self.console = console
        self.lock = threading.RLock()
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not self.live,
        )
        self.tasks: dict[str, Any] = {}
        self.last: dict[str, tuple[str, float]] = {}

    def __enter__(self) -> Reporter:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def line(self, text: str) -> None:
        with self.lock:
            self.console.print(printable(text), markup=False, highlight=False, soft_wrap=True)

    def step(self, name: str, stage: str, step: int, total: int) -> None:
        with self.lock:
            if self.live:
                description = escape(printable(f"{name}: {stage}"))  # the column reads markup
                if name not in self.tasks:
                    self.tasks[name] = self.progress.add_task(description, total=total or None)
                self.progress.update(self.tasks[name], description=description, total=total or None, completed=step)
                return
            now = time.monotonic()
            previous = self.last.get(name)
            if previous is None or previous[0] != stage or step >= total or now - previous[1] >= 1.0:
                self.last[name] = (stage, now)
                self.line(f"{name}: {stage} {step}/{total}" if total else f"{name}: {stage}")

    def end(self, name: str, text: str) -> None:
        with self.lock:
            task = self.tasks.pop(name, None)
            if task is not None:
                self.progress.remove_task(task)
            self.last.pop(name, None)
            self.line(text)
