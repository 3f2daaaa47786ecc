"""A run's record beside OUT (`OUT.v2vz-run.json`): the jobs it submitted, so that a re-run re-attaches to them.

`--no-wait` ends once the jobs are submitted; an interrupted `--wait` run leaves the same record. Running the same
command again reads it, follows those jobs (never submits them again) and writes OUT when they are done; the record
goes once OUT is written. It holds what OUT needs without planning again: each edit's clips (their names and record
ranges), its job and take. The input's SHA-256 ties it to the timeline it was made from. Written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import opentimelineio as otio

from v2vz.api.errors import InvalidArgument
from v2vz.api.files import write_atomic
from v2vz.api.safe_json import load_file

STATE_SUFFIX = ".v2vz-run.json"
STATE_FORMAT = "v2vz-timeline-run"
STATE_VERSION = 1


def state_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + STATE_SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def range_to_json(time_range: otio.opentime.TimeRange) -> list[list[float]]:
    return [
        [time_range.start_time.value, time_range.start_time.rate],
        [time_range.duration.value, time_range.duration.rate],
    ]


def range_from_json(data: list[list[float]]) -> otio.opentime.TimeRange:
    (start, start_rate), (duration, duration_rate) = data
    return otio.opentime.TimeRange(
        otio.opentime.RationalTime(start, start_rate), otio.opentime.RationalTime(duration, duration_rate)
    )


@dataclass
class ClipPlace:
    """A source clip an edit replaces: its place in the input, its name and its record range."""

    key: str
    name: str
    record: list[list[float]]  # range_to_json
    timecode_clock: bool = False  # its timeline counts media frames from their start timecode


@dataclass
class EditRecord:
    """One submitted job and the clips it edits (clips that ask for the same edit share one job)."""

    job_id: str
    take: int
    output: str
    sidecar: str
    source: str
    start: int
    frames: int
    prompt: str
    source_prompt: str
    model: str
    options: dict[str, str]
    clips: list[ClipPlace]
    state: str = "submitted"  # then done, failed or cancelled, as the job ended
    reason: str = ""
    matte: str | None = None  # a local edit's matte (absolute) and its frame for the range's first frame
    matte_start: int = 0
    loras: list[list] = field(default_factory=list)  # [[absolute path, scale], ...] in the order they stack


@dataclass
class RunState:
    input: str
    input_sha256: str
    output: str
    track: str
    media_dir: str
    container: str
    created: float
    edits: list[EditRecord] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # the lines of the clips left alone, to show again
    rate: str | None = None  # --rate, for a format that stores none (EDL)
    format: str = STATE_FORMAT
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"


def write_state(path: Path, state: RunState) -> Path:
    return write_atomic(Path(path), state.to_json())


class RecordWriter:
    """Keeps the run record on disk as the run changes it, in time linear in the number of jobs.

    The record is one JSON document, rewritten whole (atomically): written after every one of 10,000 submissions
    it costs the square of their number (about 2 s a write at 10,000 jobs, hours in all). A change is written at
    once when the last write is long enough ago (`min_seconds`, and four times as long as that write took, so
    writing never takes more than a fifth of the run), else at the next change after that or at `flush`, which
    every way out of a run calls (done, Ctrl-C, a lost daemon). Only a killed process can lose the last changes:
    their jobs are then submitted again by the next run, as new takes (nothing is overwritten)."""

    def __init__(self, path: Path, state: RunState, min_seconds: float = 1.0) -> None:
        self.path, self.state, self.min_seconds = Path(path), state, min_seconds
        self.writes = 0
        self._due = 0.0  # time.monotonic() from when a change is written at once
        self._pending = False

    def changed(self) -> None:
        self._pending = True
        if time.monotonic() >= self._due:
            self.flush()

    def flush(self) -> None:
        """Write the record now if it changed since it was last written."""
        if not self._pending:
            return
        started = time.monotonic()
        write_state(self.path, self.state)
        took = time.monotonic() - started
        self._pending, self.writes = False, self.writes + 1
        self._due = time.monotonic() + max(self.min_seconds, 4 * took)


def read_state(path: Path) -> RunState | None:
    """The run recorded at `path`, or None when there is none; InvalidArgument for a file that is not one."""
    path = Path(path)
    try:
        data = load_file(path, path.name)  # nesting checked first: a deep file is refused, never a crash
    except FileNotFoundError:
        return None
    except (OSError, InvalidArgument) as error:
        raise InvalidArgument(f"{path} is not a v2vz timeline run ({error}): remove it to start a new run") from None
    try:
        if data.get("format") != STATE_FORMAT:
            raise ValueError("not a run record")
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"version {data.get('version')}, this v2vz reads {STATE_VERSION}")
        edits = [
            EditRecord(**{**edit, "clips": [ClipPlace(**clip) for clip in edit["clips"]]}) for edit in data["edits"]
        ]
        return RunState(**{**data, "edits": edits})
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise InvalidArgument(f"{path} is not a v2vz timeline run ({error}): remove it to start a new run") from None


def remove_state(path: Path) -> None:
    Path(path).unlink(missing_ok=True)
