"""The installed `v2vz` command run as a user runs it, and the one-line errors it must give."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .conftest import V2VZ


def run(args: list[str], env: dict | None = None, timeout: float = 120, cwd: Path | None = None, columns: int = 80):
    """`v2vz ARGS` in a terminal `columns` wide (rich wraps to it), with `env` on top of this process's."""
    env = {**os.environ, "COLUMNS": str(columns), **(env or {})}
    return subprocess.run([V2VZ, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def one_error(done, *words: str) -> str:
    """The one `error:` line of a refused command (exit 2), holding each of `words`."""
    said = lines(done.stderr)
    assert done.returncode == 2 and len(said) == 1 and said[0].startswith("error: "), (done.returncode, said)
    for word in words:
        assert word in said[0], said
    return said[0]


def run_in(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """`v2vz ARGS` with exactly `env` (a served daemon's environment, conftest.serve_tiny)."""
    return subprocess.run([V2VZ, *args], env=env, capture_output=True, text=True, timeout=timeout)


def jsonl(stdout: str) -> list[dict]:
    """The JSON lines of `--events jsonl`."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]
