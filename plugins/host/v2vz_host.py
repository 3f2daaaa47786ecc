# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the v2vz developers. MIT License (https://opensource.org/license/mit), so GPL plugins may ship it.
"""The `v2vz` client as the host plugins run it: find the command, run it with `--events jsonl`, follow its events.

The Blender extension and the Resolve script cannot import v2vz (a host's Python cannot install its dependencies),
so they run the client as a subprocess and read its JSON lines (docs/events.md). This module is their one reader:
standard library only, Python 3.8 syntax, no host API, because it runs inside Blender's Python and, under Resolve,
in the user's own one. Its stage, event-type and error names are held equal to `v2vz.api` by
tests/plugins/test_host_client.py.

A reader thread puts every JSON object the client prints on a `queue.Queue`, then one item of its own,
`{"type": "exit", "returncode": N, "stderr": "..."}`. The host's main thread takes them (`ClientRun.drain` from a
timer, or `ClientRun.wait` in a loop) and `JobTracker` turns them into what a host shows.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

CLIENT_NAME = "v2vz"
CLIENT_ENV = "V2VZ_CLIENT"  # the client's path, for a host whose PATH does not have it


class Stage:
    """The `stage` of a `progress` event (v2vz.api.events.Stage), in the order they come."""

    START = "start"
    LOAD_MODEL = "load-model"  # the job's model is loaded onto the daemon's device
    ANCHORS = "anchors"  # anchored windows: the anchor frames are edited first
    WINDOW = "window"
    INVERSION = "inversion"
    NULL_TEXT = "null-text"
    EDIT = "edit"
    MASK = "mask"  # a local edit's window is done: step of total frames had something to edit; reason: which not
    WRITE = "write"
    RETRY = "retry"  # a cluster worker died: its window runs again on another one


class EventType:
    """The `type` of a JSON line (v2vz.api.events.EventType)."""

    QUEUED, PROGRESS, FRAME = "queued", "progress", "frame"  # the daemon's events while a job runs
    DONE, FAILED, CANCELLED = "done", "failed", "cancelled"  # the daemon's terminal events: exactly one ends a job
    SUBMITTED = "submitted"  # `v2vz edit` only: the daemon accepted the job
    ERROR = "error"  # the job could not be submitted or followed: `error` names the class of v2vz.api.errors


EXIT = "exit"  # not a JSON line: the reader's last item, with the client's exit status and stderr
TERMINAL_TYPES = frozenset({EventType.DONE, EventType.FAILED, EventType.CANCELLED})


class ErrorKind:
    """The class names of the `error` line (v2vz.api.errors) that a host acts on instead of reading the message."""

    DAEMON_UNAVAILABLE = "DaemonUnavailable"  # no daemon, an unreadable endpoint file, nothing answers
    DAEMON_UNAUTHENTICATED = "DaemonUnauthenticated"  # the daemon refused the endpoint file's token
    JOB_LOST = "JobLost"  # the daemon went away while the job was followed: it may still run, re-attach later
    JOB_NOT_FOUND = "JobNotFound"  # the daemon knows no job of that id


DAEMON_UNREACHABLE = frozenset({ErrorKind.DAEMON_UNAVAILABLE, ErrorKind.DAEMON_UNAUTHENTICATED})


# ---------------------------------------------------------------------------------------------------------------
# Finding the client


def find_client(
    configured: str = "", client_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The `v2vz` command: `configured` (a host's preference), else $V2VZ_CLIENT, else the first line of the
    installer's `client_file`, else `v2vz` on PATH. A candidate that names no program is passed over. None: none."""
    environ = os.environ if environ is None else environ
    for candidate in (configured, environ.get(CLIENT_ENV, ""), installed_line(client_file, 0)):
        found = program(candidate.strip())
        if found:
            return found
    return shutil.which(CLIENT_NAME)


def program(candidate: str) -> str | None:
    """The program `candidate` names: an existing file, or a command on PATH."""
    if not candidate:
        return None
    path = Path(candidate).expanduser()
    return str(path) if path.is_file() else shutil.which(candidate)


def installed_line(client_file: str | Path | None, index: int) -> str:
    """Line `index` of the file an installer wrote (line 0: the client's path), or "" when it has none."""
    if client_file is None:
        return ""
    try:
        lines = Path(client_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError):
        return ""
    return lines[index].strip() if index < len(lines) else ""


def events_command(client: str, args: list[str]) -> list[str]:
    """`v2vz <args> --events jsonl`: the client prints one JSON object per event on stdout."""
    return [client, *args, "--events", "jsonl"]


# ---------------------------------------------------------------------------------------------------------------
# A local edit: edit only what some words cover, or where a matte is white (docs/media.md, "Local edits")

MASK_FILE = "mask_%06d.png"  # what `--save-mask DIR` writes: one grey PNG per frame, numbered like the source's


@dataclass
class LocalEdit:
    """A local edit's options as a host collects them; `args()` gives the `v2vz edit` flags of those that were set,
    so every host passes them the same way."""

    edit_only: str = ""  # words of the prompts ("car", "car wheels"); "": the whole frame
    edit_only_threshold: float = 0.0  # 0: the client's default (0.3)
    matte: str = ""  # a video, the first image of a numbered sequence, or one image; "": no matte
    matte_start: int = 0  # the matte's frame that goes with the range's first frame
    matte_feather: float = 0.0  # soften the matte's edge by this many source pixels; 0: not at all
    self_replace: float = 0.0  # the fraction of the steps whose self-attention is the source's; 0: off
    save_mask: str = ""  # the folder for the final masks (MASK_FILE); "": not saved
    # LoRAs as `PATH[:SCALE]` (scale 1 if not given), each passed as `--lora`: they apply to the whole edit, local
    # or not (docs/models.md, "LoRAs").
    loras: list[str] = field(default_factory=list)

    @property
    def local(self) -> bool:
        """Whether the edit is local at all (words or a matte); self-replace alone repaints the whole frame."""
        return bool(self.edit_only.strip() or self.matte)

    def problem(self) -> str:
        """Why the client would refuse these options, as one line a host shows before it runs anything ("": none)."""
        if not 0.0 <= self.edit_only_threshold <= 1.0:
            return f"the edit-only threshold is a share between 0 and 1, not {self.edit_only_threshold:g}"
        if not 0.0 <= self.self_replace <= 1.0:
            return f"self-replace is a fraction of the steps between 0 and 1, not {self.self_replace:g}"
        if self.matte_start < 0 or self.matte_feather < 0:
            return "the matte's start frame and feather cannot be negative"
        if not self.matte and (self.matte_start or self.matte_feather):
            return "a matte start or feather needs a matte"
        if self.save_mask and not self.local:
            return "a mask is saved for a local edit only: give edit-only words or a matte too"
        if any(not str(lora).strip() for lora in self.loras):
            return "a LoRA needs a path: PATH or PATH:SCALE"
        return ""

    def args(self) -> list[str]:
        """The `v2vz edit` flags of the options that were set (none for an edit of the whole frame)."""
        args: list[str] = []
        words = " ".join(self.edit_only.split())
        if words:
            args += ["--edit-only", words]
        if self.edit_only_threshold > 0:
            args += ["--edit-only-threshold", repr(float(self.edit_only_threshold))]
        if self.matte:
            args += ["--matte", self.matte]
        if self.matte_start > 0:
            args += ["--matte-start", str(int(self.matte_start))]
        if self.matte_feather > 0:
            args += ["--matte-feather", repr(float(self.matte_feather))]
        if self.self_replace > 0:
            args += ["--self-replace", repr(float(self.self_replace))]
        if self.save_mask:
            args += ["--save-mask", self.save_mask]
        for lora in self.loras:
            args += ["--lora", str(lora).strip()]
        return args


LORA_SEPARATOR = ";"  # between the `PATH[:SCALE]` entries of a host's one-line LoRA field
_LORA_SCALE = re.compile(r":([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")  # as v2vz.api.job.Lora.parse reads it


def split_loras(text: str) -> list[str]:
    """A LoRA field's `PATH[:SCALE]` entries (`ink.safetensors:0.6; grain.safetensors`), blanks dropped."""
    return [entry.strip() for entry in str(text or "").split(LORA_SEPARATOR) if entry.strip()]


def lora_path(entry: str) -> str:
    """The file of a `PATH[:SCALE]` entry: only a trailing `:number` is a scale (`C:\\ink.safetensors` is a path)."""
    entry = entry.strip()
    match = _LORA_SCALE.search(entry)
    return entry[: match.start()] if match and len(entry) > len(match.group(0)) else entry


def aligned_matte_frame(first: int, frames: int, matte_first: int, matte_frames: int, matte_source: int) -> int:
    """The matte's own frame that lines up with the range's first frame, for a matte laid over the source in a host's
    timeline: the range starts at timeline frame `first` for `frames` frames; the matte shows `matte_frames` frames
    from timeline frame `matte_first`, the first of them its own frame `matte_source`. ValueError (one line) when the
    matte does not cover the range."""
    if matte_first > first or matte_first + matte_frames < first + frames:
        raise ValueError(
            f"it covers timeline frames {matte_first}..{matte_first + matte_frames - 1}, the edit needs "
            f"{first}..{first + frames - 1}: extend or move it over the whole range"
        )
    return matte_source + first - matte_first


def mask_files(folder: str | Path, start: int, frames: int) -> list[str]:
    """The masks `--save-mask folder` writes for a range of `frames` source frames from `start`, in order."""
    return [str(Path(folder) / (MASK_FILE % (start + index))) for index in range(frames)]


# ---------------------------------------------------------------------------------------------------------------
# The checkpoints a model field offers (`v2vz models --json`, docs/models.md)

MODELS_TIMEOUT = 30.0  # seconds: `v2vz models` asks the daemon (3 s at most) and reads each checkpoint's header


def models_command(client: str, models_dirs: list[str] | tuple[str, ...] = ()) -> list[str]:
    """`v2vz models --json [--models-dir DIR]...`: the model folders beside $V2VZ_MODELS, which the client reads."""
    args = [client, "models", "--json"]
    for folder in models_dirs:
        if str(folder).strip():
            args += ["--models-dir", str(folder).strip()]
    return args


def checkpoint_choices(listing: str) -> list[tuple[str, str]]:
    """(label, value) of each usable checkpoint file in `v2vz models --json`'s output, in its order: value is what
    `--model` takes (the file's path), label what a menu shows (`dreamshaper_8.safetensors (SD 1.x, epsilon, 2.0
    GiB)`). Files the client would refuse (a `problem`) and other kinds of models are left out; [] for anything
    that is not such a list."""
    try:
        rows = json.loads(listing)
    except ValueError:
        return []
    if not isinstance(rows, list):
        return []
    choices = []
    for row in rows:
        if not isinstance(row, dict) or row.get("kind") != "file" or row.get("problem"):
            continue
        value = row.get("model")
        if not isinstance(value, str) or not value.strip():
            continue
        facts = [str(row[key]) for key in ("family", "prediction") if row.get(key)]
        size = row.get("size_bytes")
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            facts.append(human_size(size))
        label = Path(value).name + (f" ({', '.join(facts)})" if facts else "")
        choices.append((label, value))
    return choices


def human_size(size: int) -> str:
    """Bytes as `v2vz models` writes them: 2.13 GiB, 319.5 MiB, 1.2 KiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.{2 if unit == 'GiB' else 1}f} {unit}"
    return f"{size} B"


def model_choices(
    client: str | None,
    models_dirs: list[str] | tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = MODELS_TIMEOUT,
) -> list[tuple[str, str]]:
    """The checkpoints the client lists (checkpoint_choices), run as the hosts run it (`client` from find_client).
    Any failure (no client, a client too old for `--json`, a timeout, bad output) gives []: a model field then
    offers nothing and still takes what is typed."""
    if not client:
        return []
    try:
        done = subprocess.run(
            models_command(client, models_dirs),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            env=dict(env) if env is not None else None,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    except (OSError, ValueError, subprocess.SubprocessError):
        return []
    return checkpoint_choices(done.stdout) if done.returncode == 0 else []


class ModelChoices:
    """model_choices run once on a thread: a host's UI reads `get()` (what has arrived: [] until then) and never
    waits for the client unless it asks to (`wait` seconds at most)."""

    def __init__(self, fetch: Callable[[], list[tuple[str, str]]]) -> None:
        self.fetch = fetch
        self.choices: list[tuple[str, str]] = []
        self.done = threading.Event()
        self.started = False

    def start(self) -> ModelChoices:
        if not self.started:
            self.started = True
            threading.Thread(target=self._run, name="v2vz-models", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            self.choices = list(self.fetch())
        except Exception:  # noqa: BLE001 - a model list is a convenience: never an error in the host
            self.choices = []
        finally:
            self.done.set()

    def get(self, wait: float = 0.0) -> list[tuple[str, str]]:
        if wait > 0:
            self.done.wait(wait)
        return list(self.choices) if self.done.is_set() else []


# ---------------------------------------------------------------------------------------------------------------
# Reading the events


def parse_line(line: str) -> dict | None:
    """The JSON object on one line of the client's stdout, or None for anything else (docs/events.md: skip it)."""
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def error_line(stderr: str) -> str:
    """The client's last `error: ...` line without its prefix, else its last non-empty line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:") :].strip()
    return lines[-1] if lines else ""


def progress_text(event: dict) -> str:
    """A `progress` event as a status text, `window 2/5: edit 12/50 (cached)` (the window only when there are
    several), the same in every host; a local edit's mask: `window 2/5: 6 of 8 frames to edit: <reason>`."""
    stage = str(event.get("stage") or "")
    step, total = int(event.get("step") or 0), int(event.get("total") or 0) or 1
    window, windows = int(event.get("window") or 0), int(event.get("windows") or 0)
    where = f"window {window}/{windows}: " if windows > 1 and stage != Stage.WINDOW else ""
    if event.get("window") == 0 and stage in (Stage.INVERSION, Stage.NULL_TEXT, Stage.EDIT):
        where = "anchor frames: "  # an anchored job's first pass (daemons before protocol 2 send no window at all)
    if stage == Stage.RETRY:
        return f"{where}a worker died, editing it again (retry {step} of {total})"
    if stage == Stage.MASK:
        reason = str(event.get("reason") or "")
        return f"{where}{step} of {total} frames to edit" + (f": {reason}" if reason else "")
    return f"{where}{stage} {step}/{total}" + (" (cached)" if event.get("cached") else "")


@dataclass
class JobTracker:
    """What a host shows of a job, updated from its events one by one (`apply`) on the host's main thread."""

    job_id: str = ""
    status: str = "starting"
    progress: float = 0.0  # 0..1 within the current stage
    frames: dict[int, str] = field(default_factory=dict)  # index -> PNG path
    outcome: str = ""  # "", then "done", "failed" or "cancelled"
    reason: str = ""  # why it is not done, one line
    terminal: dict | None = None  # the done/failed/cancelled event; None: the events stopped before it
    error_kind: str = ""  # the `error` line's class name (ErrorKind): why the job was not submitted or followed
    error: str = ""  # that line's message, else the client's `error:` line on stderr
    returncode: int | None = None

    @property
    def finished(self) -> bool:
        """The client has exited: no event follows."""
        return self.returncode is not None

    def apply(self, event: dict) -> None:
        """Take one event (or the reader's exit item); unknown types and fields are ignored (docs/events.md)."""
        kind = event.get("type")
        if event.get("job_id") and not self.job_id:
            self.job_id = str(event["job_id"])
        if kind == EventType.SUBMITTED:
            self.status = "submitted"
        elif kind == EventType.QUEUED:
            position = event.get("position", 0)
            self.status = f"queued (position {position})" if position else "queued (next)"
        elif kind == EventType.PROGRESS:
            self.status = progress_text(event)
            step, total = int(event.get("step") or 0), int(event.get("total") or 0) or 1
            self.progress = min(max(step / total, 0.0), 1.0)
        elif kind == EventType.FRAME:
            if event.get("path"):
                self.frames[int(event["index"])] = str(event["path"])
            self.status = f"frame {int(event.get('index', 0)) + 1}"
        elif kind in TERMINAL_TYPES:
            self._end(event)
        elif kind == EventType.ERROR:
            self.error_kind, self.error = str(event.get("error") or ""), str(event.get("message") or "")
        elif kind == EXIT:
            self._exit(int(event.get("returncode", 1)), str(event.get("stderr") or ""))

    def _end(self, event: dict) -> None:
        kind = str(event["type"])
        self.terminal, self.outcome, self.status = event, kind, kind
        if kind == EventType.DONE:
            self.progress = 1.0
            for index, path in enumerate(event.get("frame_paths") or []):
                self.frames.setdefault(index, str(path))
        elif kind == EventType.FAILED:
            self.reason = str(event.get("reason") or f"the job failed ({event.get('code', 'no reason given')})")
        else:
            self.reason = "cancelled" + (f": {event['reason']}" if event.get("reason") else "")

    def _exit(self, returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.error = self.error or error_line(stderr)
        if not self.outcome:  # no terminal event: never submitted (no daemon, bad input), or the client lost it
            self.outcome = self.status = "failed"
            self.reason = self.error or f"v2vz exited with status {returncode} before the job ended"


class ClientRun:
    """One `v2vz ... --events jsonl` subprocess: a reader thread fills `events`, the host's thread fills `state`."""

    def __init__(self, command: list[str], env: Mapping[str, str] | None = None) -> None:
        self.command = list(command)
        self.env = dict(env) if env is not None else None
        self.events: queue.Queue = queue.Queue()
        self.state = JobTracker()
        self.process: subprocess.Popen | None = None
        self.start_error = ""  # why the client could not be started ("": it was)

    @property
    def error_kind(self) -> str:
        """The class name of the client's `error` line ("" when there was none): see ErrorKind."""
        return self.state.error_kind

    def start(self) -> None:
        """Start the client and its reader thread. A client that cannot start ends at once with status 127."""
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=self.env,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),  # no console window on Windows
            )
        except OSError as exc:
            self.start_error = exc.strerror or str(exc)
            stderr = f"error: cannot run {self.command[0]}: {self.start_error}"
            self.events.put({"type": EXIT, "returncode": 127, "stderr": stderr})
            return
        threading.Thread(target=self._read, name="v2vz-events", daemon=True).start()

    def _read(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None and process.stderr is not None
        stderr_parts: list[str] = []
        stderr = process.stderr
        drain = threading.Thread(target=lambda: stderr_parts.append(stderr.read()), daemon=True)
        drain.start()  # read at the same time: a full stderr pipe must never block the client
        try:
            for line in process.stdout:
                event = parse_line(line)
                if event is not None:
                    self.events.put(event)
        finally:  # the exit item always comes: a host waiting for it must never hang
            returncode = process.wait()
            drain.join(5)
            self.events.put({"type": EXIT, "returncode": returncode, "stderr": "".join(stderr_parts)})

    def drain(self) -> list[dict]:
        """Without waiting: take the items that arrived, apply them to `state` and return them (a host's timer)."""
        taken = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return taken
            self.state.apply(event)
            taken.append(event)

    def wait(self, on_event: Callable[[dict], None] | None = None) -> JobTracker:
        """Take the items until the client exits, calling on_event(event) for every JSON line on this thread."""
        while not self.state.finished:
            event = self.events.get()
            self.state.apply(event)
            if on_event is not None and event.get("type") != EXIT:
                on_event(event)
        return self.state

    def cancel(self) -> str:
        """Ask the daemon to cancel the job (its `cancelled` event follows); before it was submitted, stop the
        client. Returns one line to show."""
        if not self.state.job_id:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
            return "stopped before the job was submitted"
        return cancel_job(self.command[0], self.state.job_id, self.env)


def run_client(
    command: list[str], on_event: Callable[[dict], None] | None = None, env: Mapping[str, str] | None = None
) -> ClientRun:
    """Run the client to its end on this thread, calling on_event(event) for every JSON line as it comes."""
    run = ClientRun(command, env)
    run.start()
    run.wait(on_event)
    return run


def cancel_job(client: str, job_id: str, env: Mapping[str, str] | None = None) -> str:
    """`v2vz cancel JOB`: the daemon cancels the job (queued, or running: at the next step). One line to show."""
    try:
        done = subprocess.run(
            [client, "cancel", job_id],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(env) if env is not None else None,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot cancel: {exc}"
    return done.stdout.strip() if done.returncode == 0 else error_line(done.stderr) or "cannot cancel"
