"""Run a `v2vz edit ... --events jsonl` job as a subprocess and read its events. Pure Python: no bpy here.

`sequence_problem` checks that an image strip's visible files are the numbered image sequence the daemon reads
from the first of them (the daemon's `engine/image_sequence.py` rules, restated here with the standard library).

A worker thread reads the client's JSON lines and puts each event (a dict) on a `queue.Queue`. The main thread of
Blender drains the queue (from `bpy.app.timers`, or in a loop in background mode); nothing here touches `bpy`.
After the last line the worker puts one `{"type": "exit", "returncode": N, "stderr": "..."}` item.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TERMINAL = frozenset({"done", "failed", "cancelled"})
CLIENT_ENV = "V2VZ_CLIENT"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")  # as the daemon's image_sequence.py
_NUMBERED = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$")  # prefix, the last run of digits, suffix


def find_client(configured: str = "") -> str | None:
    """The `v2vz` client: the preference if set, else $V2VZ_CLIENT, else `v2vz` on PATH. None when not found."""
    for candidate in (configured.strip(), os.environ.get(CLIENT_ENV, "").strip()):
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_file():
                return str(path)
            found = shutil.which(candidate)
            if found:
                return found
    return shutil.which("v2vz")


def split_numbered(name: str) -> tuple[str, int, str] | None:
    """(prefix, number, suffix) around the last run of digits of a file name, or None when it has no digit."""
    match = _NUMBERED.match(name)
    return (match.group(1), int(match.group(2)), match.group(3)) if match else None


def sequence_problem(paths: list[str]) -> str | None:
    """Why `paths` are not frames 0..n-1 of the image sequence the daemon reads from `paths[0]`, or None if they are.

    The daemon's sequence from a file `<prefix><number><suffix>` is that file, then the files beside it with the
    same prefix and suffix and a higher number, in number order (gaps in the numbering are fine); a name without
    digits is a single still. So the files must exist, be numbered alike in increasing order, and leave out no file
    of the pattern between two of them.
    """
    if not paths:
        return "it shows no images"
    for path in paths:
        if not os.path.isfile(path):
            return f"its image {path} does not exist"
    first = paths[0]
    name = os.path.basename(first)
    if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
        return f"{name} is not an image v2vz reads ({', '.join(IMAGE_SUFFIXES)})"
    pattern = split_numbered(name)
    if pattern is None:
        if len(paths) == 1:
            return None
        return f"{name} has no frame number in its name, so v2vz would read it as a single still image"
    prefix, number, suffix = pattern
    folder = os.path.dirname(first)
    following: dict[int, str] = {}
    try:
        names = os.listdir(folder or ".")
    except OSError as exc:
        return f"its folder {folder} cannot be listed ({exc.strerror or exc})"
    for other in names:
        parts = split_numbered(other)
        if parts is None or parts[0] != prefix or parts[2] != suffix or parts[1] <= number:
            continue
        if not os.path.isfile(os.path.join(folder, other)):
            continue
        if parts[1] in following:
            a, b = sorted((following[parts[1]], other))
            return f"{folder} holds two frames numbered {parts[1]} ({a} and {b}): rename or remove one"
        following[parts[1]] = other
    expected = [name] + [following[key] for key in sorted(following)]
    previous = name
    for index, path in enumerate(paths[1:], start=1):
        current = os.path.basename(path)
        if os.path.normcase(os.path.dirname(os.path.abspath(path))) != os.path.normcase(os.path.abspath(folder)):
            return f"{current} is not in the folder of {name} ({folder})"
        parts = split_numbered(current)
        if parts is None or parts[0] != prefix or parts[2] != suffix:
            return f"{current} is not numbered like {name} ({prefix}<number>{suffix})"
        if parts[1] <= split_numbered(previous)[1]:
            return f"{current} follows {previous} but its number is not higher: the images must go up in number"
        if index >= len(expected):  # cannot happen for an existing file numbered higher: kept for safety
            return f"{current} is not part of the sequence that starts at {name}"
        if expected[index] != current:
            return (
                f"{expected[index]} lies between {previous} and {current} but is not in the strip: v2vz reads "
                "every numbered image in order, so move the strip's images to a folder of their own"
            )
        previous = current
    return None


@dataclass
class EditRequest:
    """One `v2vz edit` job: a source range of a clip, the prompts, the main options and the PNG folder."""

    source: str
    start: int
    frames: int
    prompt: str
    source_prompt: str
    out_dir: str
    steps: int = 0  # 0: the daemon's default
    guidance: float = 0.0  # 0: default
    seed: int = -1  # -1: default
    size: int = 0  # 0: the model's own
    fast: bool = False
    preset: str = "default"
    window: int = 0  # frames edited together; 0: the daemon chooses (long strips arrive window by window)

    def command(self, client: str) -> list[str]:
        """The client's command line (events as JSON lines on stdout, PNG frames into out_dir)."""
        args = [client, "edit", self.source, "--prompt", self.prompt, "--source-prompt", self.source_prompt]
        args += ["--start", str(self.start), "--frames", str(self.frames), "--out", self.out_dir]
        if self.preset and self.preset != "default":
            args += ["--preset", self.preset]
        if self.steps > 0:
            args += ["--steps", str(self.steps)]
        if self.guidance > 0:
            args += ["--guidance", repr(float(self.guidance))]
        if self.seed >= 0:
            args += ["--seed", str(self.seed)]
        if self.size > 0:
            args += ["--size", str(self.size)]
        if self.window > 0:
            args += ["--window", str(self.window)]
        if self.fast:
            args.append("--fast")
        return [*args, "--events", "jsonl"]


@dataclass
class JobState:
    """What the UI shows, updated from the events on the main thread (`apply`)."""

    job_id: str = ""
    status: str = "starting"
    progress: float = 0.0  # 0..1 within the current stage
    frames: dict[int, str] = field(default_factory=dict)  # index -> PNG path
    outcome: str = ""  # "", "done", "failed", "cancelled"
    reason: str = ""
    returncode: int | None = None

    @property
    def finished(self) -> bool:
        return self.returncode is not None

    def apply(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "submitted":
            self.job_id = str(event.get("job_id", ""))
            self.status = "submitted"
        elif kind == "queued":
            position = event.get("position", 0)
            self.status = f"queued (position {position})" if position else "queued (next)"
        elif kind == "progress":
            stage, step, total = event.get("stage", ""), event.get("step", 0), event.get("total", 0) or 1
            window, windows = event.get("window") or 0, event.get("windows") or 0
            where = f"window {window}/{windows}: " if windows > 1 and stage != "window" else ""
            self.status = f"{where}{stage} {step}/{total}" + (" (cached)" if event.get("cached") else "")
            self.progress = min(max(step / total, 0.0), 1.0)
        elif kind == "frame":
            if event.get("path"):
                self.frames[int(event["index"])] = str(event["path"])
            self.status = f"frame {int(event.get('index', 0)) + 1}"
        elif kind == "done":
            self.outcome, self.status, self.progress = "done", "done", 1.0
            for index, path in enumerate(event.get("frame_paths") or []):
                self.frames.setdefault(index, str(path))
        elif kind == "failed":
            self.outcome, self.status = "failed", "failed"
            self.reason = str(event.get("reason") or f"the job failed ({event.get('code', 'no reason given')})")
        elif kind == "cancelled":
            self.outcome, self.status = "cancelled", "cancelled"
            self.reason = "cancelled" + (f": {event['reason']}" if event.get("reason") else "")
        elif kind == "exit":
            self.returncode = int(event.get("returncode", 1))
            if not self.outcome:
                # No terminal event: the job was never submitted (no daemon, bad input) or the client lost it.
                self.outcome = "done" if self.returncode == 0 else "failed"
                self.status = self.outcome
                if self.returncode != 0:
                    self.reason = error_line(event.get("stderr", "")) or f"v2vz exited with status {self.returncode}"
        # unknown types are ignored (docs/events.md)


def error_line(stderr: str) -> str:
    """The client's `error: ...` line without its prefix (the last one), or its last non-empty line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:") :].strip()
    return lines[-1] if lines else ""


class JobRunner:
    """Starts the client and reads its events on a worker thread into `self.events` (a queue.Queue of dicts)."""

    def __init__(self, request: EditRequest, client: str, env: dict[str, str] | None = None) -> None:
        self.request = request
        self.client = client
        self.env = env
        self.events: queue.Queue[dict] = queue.Queue()
        self.state = JobState()
        self.process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        Path(self.request.out_dir).mkdir(parents=True, exist_ok=True)
        try:
            self.process = subprocess.Popen(
                self.request.command(self.client),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=self.env,
            )
        except OSError as exc:
            self.events.put({"type": "exit", "returncode": 127, "stderr": f"error: cannot run {self.client}: {exc}"})
            return
        self._thread = threading.Thread(target=self._read, name="v2vz-job", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None and process.stderr is not None
        stderr_parts: list[str] = []
        drain = threading.Thread(target=lambda: stderr_parts.append(process.stderr.read()), daemon=True)
        drain.start()
        for line in process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not an event line: ignore it
            if isinstance(event, dict):
                self.events.put(event)
        returncode = process.wait()
        drain.join(5)
        self.events.put({"type": "exit", "returncode": returncode, "stderr": "".join(stderr_parts)})

    def drain(self) -> list[dict]:
        """Main thread: take the events that arrived, apply them to `state` and return them."""
        taken = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return taken
            self.state.apply(event)
            taken.append(event)

    def cancel(self) -> str:
        """Ask the daemon to cancel the job (`v2vz cancel JOB`); the job's `cancelled` event follows."""
        if not self.state.job_id:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
            return "stopped before the job was submitted"
        try:
            done = subprocess.run(
                [self.client, "cancel", self.state.job_id],
                capture_output=True,
                text=True,
                timeout=30,
                env=self.env,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot cancel: {exc}"
        return done.stdout.strip() if done.returncode == 0 else error_line(done.stderr) or "cannot cancel"

    def run_to_completion(self, timeout: float | None = None, on_events=None) -> JobState:
        """Background mode: start (if needed) and drain until the client exits. Returns the final state."""
        if self.process is None and self.events.empty():
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.state.finished:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    self.cancel()
                    deadline = None
                continue
            self.state.apply(event)
            if on_events is not None:
                on_events([event])
        return self.state
