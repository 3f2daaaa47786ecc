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

import contextlib
import difflib
import json
import ntpath
import os
import posixpath
import queue
import re
import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

CLIENT_NAME = "v2vz"
CLIENT_ENV = "V2VZ_CLIENT"  # the client's path, for a host whose PATH does not have it
VENV_ENV = "VIRTUAL_ENV"  # an activated virtual environment: its bin/ (Scripts/ on Windows) holds the client
WINDOWS_SUFFIXES = (".exe", ".cmd")  # the client's names on Windows, after `v2vz`


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
    installer's `client_file`, else the client of the virtual environment $VIRTUAL_ENV, else `v2vz` on PATH (on
    Windows `v2vz.exe` or `v2vz.cmd`). A candidate that names no program is passed over. None: none."""
    environ = os.environ if environ is None else environ
    search_path = environ.get("PATH")
    for candidate in client_candidates(configured, installed_line(client_file, 0), environ):
        found = program(candidate, search_path)
        if found:
            return found
    return None


def client_candidates(configured: str, installed: str, environ: Mapping[str, str], os_name: str = os.name) -> list[str]:
    """What find_client tries, in order, under the path rules of `os_name` ("nt": Windows, else POSIX), so that a
    test on one OS checks the other's: the paths given (with `.exe`/`.cmd` added on Windows when they have no
    suffix), the virtual environment's client, then the bare names PATH is searched for."""
    candidates: list[str] = []
    for given in (configured, environ.get(CLIENT_ENV, ""), installed):
        candidates += client_files(given, os_name)
    candidates += venv_clients(environ.get(VENV_ENV, ""), os_name)
    candidates += client_names(os_name)
    return candidates


def client_names(os_name: str = os.name) -> list[str]:
    """The client's file names: pip writes `v2vz.exe` into a Windows environment (a shim may be `v2vz.cmd`) and a
    `v2vz` script elsewhere."""
    return [CLIENT_NAME + suffix for suffix in WINDOWS_SUFFIXES] if os_name == "nt" else [CLIENT_NAME]


def venv_clients(venv: str, os_name: str = os.name) -> list[str]:
    """The client of the virtual environment at `venv` ($VIRTUAL_ENV): `Scripts\\v2vz.exe` on Windows, `bin/v2vz`
    elsewhere. [] for no environment."""
    venv = unquoted(venv)
    if not venv:
        return []
    if os_name == "nt":
        return [ntpath.join(venv, "Scripts", name) for name in client_names(os_name)]
    return [posixpath.join(venv, "bin", CLIENT_NAME)]


def client_files(given: str, os_name: str = os.name) -> list[str]:
    """The files a configured path may mean. On Windows a path without a program suffix is also tried with `.exe`
    and `.cmd` (`C:\\venv\\Scripts\\v2vz` is `v2vz.exe` there); drive letters, backslashes, spaces and non-ASCII
    characters are kept as they are. [] for nothing given."""
    given = unquoted(given)
    if not given:
        return []
    if os_name == "nt" and ntpath.splitext(given)[1].lower() not in WINDOWS_SUFFIXES + (".bat", ".com"):
        return [given] + [given + suffix for suffix in WINDOWS_SUFFIXES]
    return [given]


def unquoted(text: str) -> str:
    """`text` without surrounding blanks and one pair of double quotes: Windows Explorer's "Copy as path" quotes a
    path, and people paste that into a host's preference."""
    text = str(text or "").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


def program(candidate: str, search_path: str | None = None) -> str | None:
    """The program `candidate` names: an existing file, or a command on PATH (`search_path`, else $PATH). A bare
    name (`v2vz.exe`) is only looked up on PATH, never taken from the current folder."""
    if not candidate:
        return None
    path = Path(candidate).expanduser()
    bare = path.name == candidate and not path.is_absolute()
    return str(path) if not bare and path.is_file() else shutil.which(candidate, path=search_path)


def installed_line(client_file: str | Path | None, index: int) -> str:
    """Line `index` of the file an installer wrote (line 0: the client's path), or "" when it has none. A byte order
    mark (Windows Notepad adds one when the file is saved) is not part of the first line."""
    if client_file is None:
        return ""
    try:
        lines = Path(client_file).read_text(encoding="utf-8-sig").splitlines()
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
# The marker grammar (docs/markers.md): one parser for the Resolve scripts and `v2vz timeline`

MARKER_NAME = "v2vz"  # the marker a Resolve clip's prompts are on
# Every key, in the spelling the docs use; a key is read case-blind with `-`, `_` and runs of spaces alike.
MARKER_KEYS = (
    "source",
    "prompt",
    "options",
    "preview",
    "edit only",
    "matte",
    "self replace",
    "show mask",
    "model",
    "lora",
    "method",
)
METHODS = ("vid2vid-zero", "flowedit")  # `method:` (v2vz.api.job.METHODS): "" is the client's default
REPEATED_KEYS = ("lora",)  # every line kept, in order; any other key given twice must say the same
YES, NO = ("yes", "y", "true", "on", "1"), ("no", "n", "false", "off", "0", "")
SEPARATORS = ";|"  # between fields on one line (a format that keeps only a marker's name: `source: a; prompt: b`)
# `options:` may hold these `v2vz edit` options (True: the option takes a value). The job's own ones (a matte, its
# start, LoRAs, edit-only words, self-replace) are taken out into their fields.
MARKER_OPTIONS = {
    "--preset": True,
    "--steps": True,
    "--guidance": True,
    "--seed": True,
    "--size": True,
    "--inversion": True,
    "--fast": False,
    "--attention": True,
    "--null-steps": True,
    "--window": True,
    "--anchors": True,
    "--window-links": True,
    "--edit-only-threshold": True,
    "--matte-feather": True,
    "--edit-only": True,
    "--self-replace": True,
    "--matte": True,
    "--matte-start": True,
    "--lora": True,
    "--method": True,
    "--n-max": True,
    "--n-min": True,
    "--n-avg": True,
    "--source-guidance": True,
}
FIELD_OPTIONS = {"--edit-only": "edit only", "--self-replace": "self replace", "--matte": "matte", "--method": "method"}
_KEY_AT = re.compile(r"[ \t]*([A-Za-z][A-Za-z _-]*?)[ \t]*:")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[0-9]+")
BLANK = " \t"  # the only spaces the grammar knows (every parser strips exactly these)
_LOOKS_LIKE_KEY = re.compile(r"[A-Za-z][A-Za-z_-]*(?: [A-Za-z_-]+){0,2}")


class MarkerError(ValueError):
    """A marker v2vz cannot use: `code` (docs/markers.md's table, the same in every parser), `key` (the field it is
    about, "" for the marker as a whole) and a one-line message that says what to write instead."""

    def __init__(self, code: str, key: str, message: str) -> None:
        super().__init__(message)
        self.code, self.key = code, key


@dataclass
class MarkerPrompts:
    """What a `v2vz` marker asks for, every value as written (hosts resolve paths; the client checks values)."""

    source: str = ""
    prompt: str = ""
    options: list[str] = field(default_factory=list)  # `v2vz edit` arguments: MARKER_OPTIONS' engine ones only
    preview: bool = False
    edit_only: str = ""
    matte: str = ""  # a path, a file:// URL, or (Resolve) `above`: the clip on the track above
    matte_start: int = 0
    self_replace: float = 0.0
    show_mask: bool = False
    model: str = ""
    loras: list[str] = field(default_factory=list)  # `PATH[:SCALE]`: `lora:` lines, then `--lora` options
    ignored: list[str] = field(default_factory=list)  # `word:` lines that are no v2vz key (a typo, or a note)
    method: str = ""  # vid2vid-zero or flowedit (a Wan model); "": the client's default

    def as_dict(self) -> dict:
        """The fields as plain JSON values: what tests compare across the Python and Lua parsers."""
        return {
            "source": self.source,
            "prompt": self.prompt,
            "options": list(self.options),
            "preview": self.preview,
            "edit_only": self.edit_only,
            "matte": self.matte,
            "matte_start": self.matte_start,
            "self_replace": self.self_replace,
            "show_mask": self.show_mask,
            "model": self.model,
            "loras": list(self.loras),
            "ignored": list(self.ignored),
            "method": self.method,
        }


def marker_key(name: str) -> str:
    """A key as the table spells it ("" when it is none): `Edit-Only`, `edit_only`, `edit  only` are `edit only`."""
    key = " ".join(name.replace("-", " ").replace("_", " ").lower().split())
    return key if key in MARKER_KEYS else ""


def _key_at(line: str, position: int) -> tuple[str, int] | None:
    """(key, where its value starts) when a known `KEY:` starts at `position`, else None."""
    match = _KEY_AT.match(line, position)
    if match is None:
        return None
    key = marker_key(match.group(1))
    return (key, match.end()) if key else None


def marker_fields(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The marker's fields in order, as (key, value), and its ignored `word:` lines (docs/markers.md). A field starts
    at the start of a line, or after `;`, `|` or a blank when a key follows (an EDL keeps `SOURCE: A CAR PROMPT: A
    JEEP`); its value runs to the next field or the line's end, and on over the lines below that start with a space
    or tab (each joined with one space). A value that starts with `"` ends at the next `"` (a `\\` makes the next
    character literal): it may then hold `;`, `|`, `key:` and edge spaces."""
    fields: list[tuple[str, str]] = []
    ignored: list[str] = []
    open_field: int | None = None  # the field a continuation line goes on (None: none, or a quoted one)
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line[:1] in (" ", "\t") and open_field is not None:
            more = line.strip(BLANK)
            if more:
                key, value = fields[open_field]
                fields[open_field] = (key, f"{value} {more}" if value else more)
            continue
        found = _key_at(line, 0)
        open_field = None
        if found is None:
            head, colon, _ = line.partition(":")
            if colon and _LOOKS_LIKE_KEY.fullmatch(head.strip(BLANK)):
                ignored.append(line.strip(BLANK))
            continue
        while found is not None:
            key, start = found
            value, separator, quoted = _value(line, start, key)
            fields.append((key, value))
            open_field = None if quoted else len(fields) - 1
            found = _key_at(line, separator + 1) if separator < len(line) else None
    return fields, ignored


def _value(line: str, start: int, key: str) -> tuple[str, int, bool]:
    """The value from `start`: (the value, where its separator is or the line's end, whether it was quoted)."""
    position = start
    while position < len(line) and line[position] in BLANK:
        position += 1
    if position < len(line) and line[position] == '"':
        closing, text = _closing_quote(line, position + 1)
        if closing < 0:
            raise MarkerError("unclosed-quote", key, f"its {key}: opens a quote that the line does not close")
        rest = closing + 1
        if line[rest:].strip(BLANK) and _field_after(line, rest) < 0:
            raise MarkerError("after-quote", key, f"its {key}: has text after the closing quote: put it inside")
        return text, _field_after(line, rest) if line[rest:].strip(BLANK) else len(line), True
    for index in range(position, len(line)):
        if line[index] in SEPARATORS + BLANK and _key_at(line, index + 1) is not None:
            return line[position:index].strip(BLANK), index, False
    return line[position:].strip(BLANK), len(line), False


def _field_after(line: str, position: int) -> int:
    """Where the separator before the next field is, right after a quoted value (blanks, then `;`, `|` or a blank
    and a key): its index, or -1 when something else follows."""
    while position < len(line) and line[position] in BLANK:
        position += 1
    if position < len(line) and line[position] in SEPARATORS and _key_at(line, position + 1) is not None:
        return position
    if position > 0 and line[position - 1] in BLANK and _key_at(line, position) is not None:
        return position - 1
    return -1


def _closing_quote(line: str, position: int) -> tuple[int, str]:
    """The index of the `"` that closes a quote opened before `position` (-1: none) and the text between, unescaped."""
    text: list[str] = []
    while position < len(line):
        char = line[position]
        if char == "\\" and position + 1 < len(line):
            text.append(line[position + 1])
            position += 2
            continue
        if char == '"':
            return position, "".join(text)
        text.append(char)
        position += 1
    return -1, "".join(text)


def parse_marker(text: str) -> MarkerPrompts:
    """What a marker's text (its name, then its note) asks for; MarkerError (one line, a code from the docs' table)
    for a marker that cannot be used, before anything runs."""
    fields, ignored = marker_fields(text)
    values: dict[str, str] = {}
    loras: list[str] = []
    for key, value in fields:
        if key in REPEATED_KEYS:
            if not value.strip(BLANK):
                raise MarkerError("empty-lora", key, "a lora: line needs a path: write `lora: PATH` or PATH:SCALE")
            loras.append(value)
        elif key in values and values[key] != value:
            raise MarkerError("twice", key, f"it gives {key}: twice with different values: keep one")
        else:
            values[key] = value
    missing = [key for key in ("source", "prompt") if not values.get(key, "").strip(BLANK)]
    if missing:
        raise MarkerError(
            "missing",
            missing[0],
            f"it has no {' and no '.join(f'`{k}:`' for k in missing)} line: write a line "
            "`source: <what the clip shows>` and a line `prompt: <the edit>`",
        )
    prompts = MarkerPrompts(source=values["source"], prompt=values["prompt"], ignored=ignored)
    prompts.preview = _yes_no(values, "preview")
    prompts.show_mask = _yes_no(values, "show mask")
    prompts.edit_only, prompts.matte = values.get("edit only", ""), values.get("matte", "")
    prompts.model = values.get("model", "")
    prompts.self_replace = _fraction(values.get("self replace", ""), "self replace")
    options, taken = _options(values.get("options", ""))
    for option, given in taken.items():
        key = FIELD_OPTIONS.get(option, "")
        line = values.get(key, "") if key else ""
        if option != "--lora" and (len(set(given)) > 1 or (line and line != given[0])):
            said = ", ".join(repr(value) for value in dict.fromkeys(([line] if line else []) + given))
            raise MarkerError("twice", key or "options", f"it gives {key or option} twice ({said}): keep one")
    if "--matte-start" in taken:
        said = taken["--matte-start"][0]
        if not _WHOLE.fullmatch(said) or int(said) >= 1_000_000:
            message = f"its options: --matte-start takes a whole number of frames from 0, not {said!r}"
            raise MarkerError("bad-number", "options", message)
        prompts.matte_start = int(said)
    prompts.edit_only = taken.get("--edit-only", [prompts.edit_only])[0]
    prompts.matte = taken.get("--matte", [prompts.matte])[0]
    prompts.method = taken.get("--method", [values.get("method", "")])[0].strip(BLANK).lower()
    if prompts.method not in ("", *METHODS):
        said = prompts.method
        raise MarkerError("bad-method", "method", f"it says 'method: {said}': write one of {', '.join(METHODS)}")
    if "--self-replace" in taken:
        prompts.self_replace = _fraction(taken["--self-replace"][0], "self replace")
    prompts.options = options
    prompts.loras = loras + taken.get("--lora", [])
    if any(not lora.strip(BLANK) for lora in prompts.loras):
        raise MarkerError("empty-lora", "lora", "a --lora option needs a path: --lora PATH or PATH:SCALE")
    if prompts.matte_start and not prompts.matte:
        raise MarkerError("matte-start", "matte", "a matte start is for a matte: add a `matte: PATH` line")
    return prompts


def _yes_no(values: dict[str, str], key: str) -> bool:
    said = values.get(key, "")
    if said.strip(BLANK).lower() in YES:
        return True
    if said.strip(BLANK).lower() in NO:
        return False
    raise MarkerError("yes-no", key, f"it says '{key}: {said}': write '{key}: yes' or '{key}: no'")


def _fraction(said: str, key: str) -> float:
    said = said.strip(BLANK)
    if not said:
        return 0.0
    if not _NUMBER.fullmatch(said) or not 0.0 <= float(said) <= 1.0:
        raise MarkerError(
            "bad-number", key, f"it says '{key}: {said}': write a fraction of the steps from 0 to 1, such as 0.4"
        )
    return float(said)


def _options(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The `options:` value's engine options as `v2vz edit` arguments, and the job's options taken out (name ->
    every value given, in order). Words are split as a POSIX shell does (quote a value with spaces)."""
    try:
        words = shlex.split(text)
    except ValueError:
        message = f"its options line {text!r} cannot be read (it opens a quote it does not close)"
        raise MarkerError("bad-options", "options", message) from None
    arguments: list[str] = []
    taken: dict[str, list[str]] = {}
    index = 0
    while index < len(words):
        word = words[index]
        option, has_value, value = word.partition("=")
        if word.startswith("-") and any(blank in option for blank in " \t\r\n"):
            raise MarkerError(
                "quoted-option",
                "options",
                f"its options line has {word!r} in quotes, as one word: write the options without quotes "
                "(quote only a value with spaces)",
            )
        if option not in MARKER_OPTIONS:
            near = difflib.get_close_matches(option, list(MARKER_OPTIONS), 1)
            hint = f": did you mean {near[0]}?" if near else f" (it may hold {', '.join(MARKER_OPTIONS)})"
            raise MarkerError("unknown-option", "options", f"its options: unknown option {word!r}{hint}")
        if not MARKER_OPTIONS[option]:
            if has_value:
                raise MarkerError("option-value", "options", f"its options: {option} takes no value")
            arguments.append(option)
            index += 1
            continue
        if not has_value:
            if index + 1 >= len(words):
                raise MarkerError("option-value", "options", f"its options: {option} needs a value")
            index += 1
            value = words[index]
        if option in FIELD_OPTIONS or option in ("--lora", "--matte-start"):
            taken.setdefault(option, []).append(value)
        else:
            arguments += [option, value]
        index += 1
    return arguments, taken


def marker_text(values: Mapping[str, object]) -> str:
    """A marker's text for `values` (key -> text, `lora` -> a list), every value quoted: what a host's own form
    (the Studio dialog) gives, so that it is read by parse_marker like a marker and refused the same way."""

    def quoted(text: object) -> str:
        return '"' + " ".join(str(text).splitlines()).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for key, value in values.items():
        if marker_key(key) == "lora":
            lines += [f"lora: {quoted(entry)}" for entry in value or ()]  # type: ignore[union-attr]
        elif value is not None and str(value).strip(BLANK):
            lines.append(f"{marker_key(key) or key}: {quoted(value)}")
    return "\n".join(lines)


def marker_help(script: str = "Workspace > Scripts > Edit > v2vz Re-prompt clip") -> str:
    """What to write, for a clip without a `v2vz` marker: the one line a host shows."""
    return (
        'add a marker named "v2vz" on the clip whose note has two lines, "source: <what the clip shows>" and '
        '"prompt: <the edit>" (optional lines: "options: --steps 30", "preview: yes", "edit only: WORDS", '
        f'"matte: above|PATH", "model: NAME", "lora: PATH[:SCALE]"; docs/markers.md), then run {script} again'
    )


# ---------------------------------------------------------------------------------------------------------------
# The command lines: an edit, and a preview's final (the same in every host)

KIND_EDIT, KIND_PREVIEW, KIND_FINAL = "edit", "preview", "final"  # what a host's job is
FRAME_PATTERN = "frame_%06d.png"  # the PNG frames `v2vz edit --out FOLDER` writes, numbered from 0
FRAME_FILE = re.compile(r"frame_\d{6}\.png")
CLIENT_RECORD = "v2vz.json"  # the client's record of a job in its folder of PNG frames (what `v2vz final` reads)


@dataclass
class EditRequest:
    """One `v2vz edit` job a host asks for: a source range of a clip, the prompts, the options and the PNG folder.
    Typed options (a host's fields) and `options` (a marker's `v2vz edit` arguments, MARKER_OPTIONS) both go in."""

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
    fast: bool = False  # the client's old name of inversion "direct"
    inversion: str = ""  # direct, null-text or negative-prompt; "": the preset's
    preset: str = "default"
    window: int = 0  # frames edited together; 0: the daemon chooses (long clips arrive window by window)
    model: str = ""  # "": the daemon's
    preview: bool = False  # the fast pass (`--preview`); `v2vz final JOB` makes its final
    method: str = ""  # vid2vid-zero or flowedit (METHODS); "": the client's default
    options: list[str] = field(default_factory=list)  # more `v2vz edit` arguments, from a marker's `options:`
    local: LocalEdit = field(default_factory=LocalEdit)  # edit-only words, a matte, self-replace, LoRAs

    def args(self) -> list[str]:
        """The `v2vz edit` arguments (without the client and `--events`): only the options that were set."""
        args = ["edit", self.source, "--prompt", self.prompt, "--source-prompt", self.source_prompt]
        args += ["--start", str(int(self.start)), "--frames", str(int(self.frames)), "--out", self.out_dir]
        if self.preset and self.preset != "default":
            args += ["--preset", self.preset]
        for flag, value, given in (
            ("--steps", str(self.steps), self.steps > 0),
            ("--guidance", repr(float(self.guidance)), self.guidance > 0),
            ("--seed", str(self.seed), self.seed >= 0),
            ("--size", str(self.size), self.size > 0),
            ("--window", str(self.window), self.window > 0),
            ("--inversion", self.inversion, bool(self.inversion)),
        ):
            args += [flag, value] if given else []
        args += ["--fast"] if self.fast else []
        args += ["--method", self.method] if self.method else []
        args += list(self.options)
        args += ["--model", self.model] if self.model else []
        args += ["--preview"] if self.preview else []
        return args + self.local.args()

    def command(self, client: str) -> list[str]:
        """The client's command line: events as JSON lines on stdout, PNG frames into out_dir."""
        return events_command(client, self.args())


def edit_request(
    marker: MarkerPrompts, source: str, start: int, frames: int, out_dir: str, local: LocalEdit | None = None
) -> EditRequest:
    """The edit a marker asks for on a source range. `local`: its local edit as the host resolved it (a matte found
    on the timeline, paths made absolute); None: the marker's own words, matte and LoRAs as written."""
    if local is None:
        local = LocalEdit(marker.edit_only, matte=marker.matte, matte_start=marker.matte_start)
        local.self_replace, local.loras = marker.self_replace, list(marker.loras)
    request = EditRequest(source, start, frames, marker.prompt, marker.source, out_dir, model=marker.model)
    request.preview, request.options, request.local = marker.preview, list(marker.options), local
    request.method = marker.method
    return request


@dataclass
class FinalRequest:
    """`v2vz final PREVIEW_JOB`: the preview's final (the same clip, range, prompts, model and options without the
    preview pass) into a fresh PNG folder. The preview's files stay (`--keep-preview`) while the timeline shows
    them: the host removes them (remove_job_files) once the final has replaced the preview."""

    preview_job: str
    out_dir: str

    def args(self) -> list[str]:
        return ["final", self.preview_job, "--out", self.out_dir, "--keep-preview"]

    def command(self, client: str) -> list[str]:
        return events_command(client, self.args())


def next_step(kind: str, outcome: str, placed: bool) -> str:
    """What a host does once a job has ended: "final" (a placed preview: make its final now, the same action),
    "drop-preview" (a placed final: its preview's files go), "" (nothing more)."""
    if outcome != "done" or not placed:
        return ""
    return {KIND_PREVIEW: "final", KIND_FINAL: "drop-preview"}.get(kind, "")


def remove_job_files(folder: str | Path, also: tuple[str, ...] = ()) -> list[str]:
    """Delete what a job wrote into its frames folder (its `frame_NNNNNN.png`, the client's `v2vz.json`, and the
    host's own files named in `also`: regular files only, never a link), then the folder when nothing else is left:
    anything a user put there stays, and so does the folder. Returns the names removed. A preview's folder goes this
    way once its final has replaced it, and a failed job's partial frames."""
    removed: list[str] = []
    folder = str(folder)
    if not folder or not os.path.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        ours = FRAME_FILE.fullmatch(name) or name == CLIENT_RECORD or name in also
        if ours and os.path.isfile(path) and not os.path.islink(path):
            try:
                os.remove(path)
            except OSError:
                continue
            removed.append(name)
    with contextlib.suppress(OSError):  # something else is in it (the user's): it stays
        os.rmdir(folder)
    return removed


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
