"""A watched clip's job: which files are clips, and the settings of `v2vz.toml` overlaid by the clip's `NAME.toml`.

Unit-tested without a daemon: the functions here read the folder and return an EditJob, or the line that says why
the clip waits, or raise InvalidArgument naming the file, the key and what it must be.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

from v2vz.api.errors import InvalidArgument, one_line
from v2vz.api.job import RETIRED_OPTIONS, EditJob, EditOptions, Lora
from v2vz.api.safe_json import MAX_DEPTH, nesting_depth
from v2vz.api.wire import parse_option, unknown_option
from v2vz.watchfolder.naming import free_output

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mxf"})
DEFAULTS_NAME = "v2vz.toml"
JOB_KEYS = (
    "prompt",
    "source_prompt",
    "start",
    "frames",
    "preset",
    "format",
    "codec",
    "audio",
    "matte",
    "matte_start",
    "save_mask",
    "loras",
    "model",
)
PATH_KEYS = ("matte", "save_mask")  # relative ones: the matte's to IN_DIR, the masks' to OUT_DIR
MATTE_MARK = ".matte"  # NAME.matte.mp4: a matte by its name, never a clip, even before a sidecar names it
OUTPUT_FORMATS = ("mp4", "mov")  # what a watch folder delivers: one file per clip
OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(EditOptions))
TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", "~")


def is_video(name: str) -> bool:
    """A name the watcher edits: a video extension, not hidden, not a temporary file of a copy in progress."""
    lowered = name.lower()
    if name.startswith((".", "~")) or lowered.endswith(TEMP_SUFFIXES):
        return False
    return Path(lowered).suffix in VIDEO_SUFFIXES


def is_matte_name(name: str) -> bool:
    """A video named as a matte (`shot.matte.mp4`, any case): the watcher never edits it as a clip."""
    return Path(name).stem.lower().endswith(MATTE_MARK)


def readable(path: Path) -> bool:
    """The file can be opened for reading (a copier on Windows, for one, holds it locked until it is done)."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Settings: v2vz.toml overlaid by NAME.toml


def read_toml(path: Path) -> dict[str, Any] | None:
    """The table of a TOML file; None when there is no such file; InvalidArgument when it is not valid TOML."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path.name} ({exc.strerror or type(exc).__name__})") from None
    try:
        text = data.decode("utf-8")
        # tomllib recurses per level of nested arrays and tables: 200,000 `[` exhaust the stack (RecursionError,
        # or a crash), so the nesting is measured first, without recursion.
        if nesting_depth(text) > MAX_DEPTH:
            raise InvalidArgument(f"{path.name} is not valid TOML (nested more than {MAX_DEPTH} levels deep): fix it")
        return tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise InvalidArgument(f"{path.name} is not valid TOML ({one_line(str(exc))}): fix it") from None


def check_settings(file_name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Typed values of one settings file, or InvalidArgument naming the file, the key and what it must be."""
    data = {key: value for key, value in data.items() if key not in RETIRED_OPTIONS}  # old sidecars still work
    unknown = sorted(key for key in data if key not in JOB_KEYS and key not in OPTION_NAMES)
    if unknown:
        message = unknown_option(unknown[0], [*JOB_KEYS, *OPTION_NAMES])
        if "did you mean" not in message:
            message = f"unknown option {unknown[0][:40]!r}: a sidecar holds {', '.join(JOB_KEYS)} and edit options"
        raise InvalidArgument(f"{file_name}: {message} (`v2vz edit --help` lists the options)")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "format" and value not in OUTPUT_FORMATS:
            raise InvalidArgument(f"{file_name}: format must be one of {', '.join(OUTPUT_FORMATS)}, got {value!r}")
        if key == "audio" and not isinstance(value, bool):
            raise InvalidArgument(f"{file_name}: audio must be true or false, got {value!r}")
        if key in ("format", "audio"):
            pass
        elif key == "loras":
            value = _loras(file_name, value)
        elif key in ("prompt", "source_prompt", "preset", "codec", "model"):
            if not isinstance(value, str):
                example = f'{key} = "..."'
                raise InvalidArgument(f"{file_name}: {key} must be a string in quotes ({example}), got {value!r}")
        elif key in PATH_KEYS:
            if not isinstance(value, str) or not value.strip():
                raise InvalidArgument(f'{file_name}: {key} must be a path in quotes ({key} = "..."), got {value!r}')
        elif key in ("start", "frames", "matte_start"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{file_name}: {key} must be a whole number, got {value!r}")
        else:
            text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
            try:
                value = parse_option(key, text)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{file_name}: {exc}") from None
        values[key] = value
    return values


def _loras(file_name: str, value: Any) -> tuple[Lora, ...]:
    """`loras = ["style.safetensors:0.8", {path = "ink.safetensors", scale = 0.5}]` (one string alone too)."""
    items = [value] if isinstance(value, str | dict) else value
    if not isinstance(items, list):
        items = [None]
    loras = []
    for item in items:
        if isinstance(item, str) and item.strip():
            loras.append(Lora.parse(item))
        elif isinstance(item, dict) and isinstance(item.get("path"), str) and set(item) <= {"path", "scale"}:
            scale = item.get("scale", 1.0)
            if isinstance(scale, bool) or not isinstance(scale, int | float):
                raise InvalidArgument(f"{file_name}: a LoRA's scale must be a number, got {scale!r}")
            loras.append(Lora(Path(item["path"]), float(scale)))
        else:
            raise InvalidArgument(
                f'{file_name}: loras must be a list of "PATH[:SCALE]" strings or {{path = "...", scale = 0.8}} '
                f"tables, got {item!r}"[:300]
            )
    return tuple(loras)


def resolve_job(video: Path, out_dir: Path, claimed: set[str] = frozenset()) -> EditJob | str:
    """The job of a video from its settings, or (a string) the line that says why it waits for a prompt.

    `claimed`: output paths of the jobs in flight, which the new job's output must not take.
    """
    sidecar = video.with_suffix(".toml")
    settings: dict[str, Any] = {}
    for path in (video.parent / DEFAULTS_NAME, sidecar):
        data = read_toml(path)
        if data is not None:
            settings.update(check_settings(path.name, data))
    missing = [key for key in ("prompt", "source_prompt") if not settings.get(key, "").strip()]
    if missing:
        wanted = " and ".join(f'{key} = "..."' for key in missing)
        return f"{video.name} waits: add {wanted} to {sidecar.name} or {DEFAULTS_NAME}"
    options = EditOptions.preset(
        settings.get("preset", "default"), **{k: v for k, v in settings.items() if k in OPTION_NAMES}
    )
    options.validate()
    matte = matte_path(video.parent, settings.get("matte"))
    if matte is not None and not os.path.lexists(matte):
        return f"{video.name} waits: its matte {matte} is not there (matte in {sidecar.name} or {DEFAULTS_NAME})"
    mask_root = None if settings.get("save_mask") is None else _beside(out_dir, settings["save_mask"])
    loras = settings.get("loras", ())  # relative ones are in IN_DIR, like a matte
    output = free_output(out_dir, video.stem, claimed, settings.get("format", "mp4"), mask_root)
    job = EditJob(
        source=video.resolve(),
        prompt=settings["prompt"],
        source_prompt=settings["source_prompt"],
        start=settings.get("start", 0),
        frames=settings.get("frames", 8),
        options=options,
        output=output,
        model=settings.get("model", "").strip(),  # "": the daemon's (a Wan model for `method = "flowedit"`)
        codec=settings.get("codec"),
        audio=settings.get("audio", True),
        matte=matte,
        matte_start=settings.get("matte_start", 0),
        mask_dir=None if mask_root is None else mask_root / output.stem,
        loras=tuple(dataclasses.replace(lora, path=_beside(video.parent, str(lora.path))) for lora in loras),
    )
    job.validate()
    return job


# ---------------------------------------------------------------------------------------------------------------
# Mattes: files a clip reads, never clips themselves


def _beside(folder: Path, text: str) -> Path:
    """A path of a settings file: `~` expanded, a relative one under `folder`, absolute (the daemon's rule)."""
    path = Path(text).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else folder / path))


def matte_path(in_dir: Path, text: str | None) -> Path | None:
    """The matte a sidecar or v2vz.toml names: a relative path is in IN_DIR, beside the clip and its sidecar."""
    return None if text is None else _beside(in_dir, text)


class MatteNames:
    """The names of the videos in IN_DIR that a sidecar or v2vz.toml names as `matte`: the watcher skips them.

    Every `*.toml` of the folder counts, whether its clip is there yet or not (a sidecar may come first). Each file is
    read again only when its size or time changes; a file that cannot be read names no matte (it fails its clip)."""

    def __init__(self, in_dir: Path):
        self.in_dir = in_dir
        self.read: dict[str, tuple[tuple[int, int], str | None]] = {}

    def named(self, names: list[str], leaving: str | None = None) -> set[str]:
        """The files directly in IN_DIR named as mattes by the TOML files among `names` (but `leaving`)."""
        found: set[str] = set()
        for name in names:
            if name == leaving or not name.lower().endswith(".toml") or name.startswith("."):
                continue
            matte = self.matte_of(name)
            if matte is not None and matte.parent == self.in_dir:
                found.add(matte.name)
        return found

    def matte_of(self, toml_name: str) -> Path | None:
        """The matte one settings file names (None: none, or the file is gone or broken)."""
        path = self.in_dir / toml_name
        try:
            info = path.stat()
        except OSError:
            self.read.pop(toml_name, None)
            return None
        signature = (info.st_size, info.st_mtime_ns)
        cached = self.read.get(toml_name)
        if cached is None or cached[0] != signature:
            cached = (signature, _matte_text(path))
            self.read[toml_name] = cached
        return matte_path(self.in_dir, cached[1])


def _matte_text(path: Path) -> str | None:
    try:
        value = (read_toml(path) or {}).get("matte")
    except InvalidArgument:
        return None
    return value if isinstance(value, str) and value.strip() else None
