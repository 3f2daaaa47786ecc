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
from dataclasses import dataclass, field
from pathlib import Path

import opentimelineio as otio

from v2vz.api.errors import InvalidArgument
from v2vz.api.files import write_atomic

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


def read_state(path: Path) -> RunState | None:
    """The run recorded at `path`, or None when there is none; InvalidArgument for a file that is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError, ValueError) as error:
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
