"""The state file `IN/.v2vz-watch.json`: NAME -> the daemon's job, once it accepted it, so a restarted watcher
re-attaches instead of submitting a clip again."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from v2vz.api import safe_json
from v2vz.api.errors import InvalidArgument, one_line
from v2vz.api.files import write_atomic

STATE_NAME = ".v2vz-watch.json"


class State:
    """`IN/.v2vz-watch.json`, written atomically on every change; shared by the scanning and the following thread."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.entries: dict[str, dict[str, Any]] = {}

    def load(self) -> str | None:
        """Read the file; returns a warning line when it was unreadable (then nothing is remembered)."""
        try:
            data = safe_json.loads(self.path.read_text(encoding="utf-8"), self.path.name)  # deep nesting: refused
        except FileNotFoundError:
            return None
        except (OSError, ValueError, InvalidArgument) as exc:
            return f"warning: ignoring the unreadable {self.path.name} ({one_line(str(exc))})"
        jobs = data.get("files") if isinstance(data, dict) else None
        if not isinstance(jobs, dict):
            return f"warning: ignoring {self.path.name}: it is not a watch state file"
        self.entries = {name: entry for name, entry in jobs.items() if isinstance(entry, dict)}
        return None

    def _save(self) -> None:
        write_atomic(self.path, json.dumps({"version": 1, "files": self.entries}, indent=2) + "\n")

    def put(self, name: str, entry: dict[str, Any]) -> None:
        with self.lock:
            self.entries[name] = entry
            self._save()

    def outputs(self) -> set[str]:
        """The output paths of every job in flight."""
        with self.lock:
            return {str(entry["out"]) for entry in self.entries.values() if entry.get("out")}

    def drop(self, name: str) -> None:
        with self.lock:
            if self.entries.pop(name, None) is not None:
                self._save()

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return sorted(self.entries.items(), key=lambda item: (item[1].get("order", 0), item[0]))
