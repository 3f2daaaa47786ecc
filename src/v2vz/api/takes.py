"""Takes: every edit gets a name of its own (`NAME-v2vz-t3.mp4` beside the source) and nothing is overwritten.

A take number is reserved on the filesystem itself, so the CLI, `--local` runs, the watch folder and several
machines on one share all agree without a daemon: the reservation is an exclusive create (`O_EXCL` for a file,
`mkdir` for a frame folder) of the take's entry, then a scan that no other entry claims the same number.

Each output gets a sidecar JSON (`NAME-v2vz-t3.mp4.v2vz.json`) that holds the whole job: any take can be re-made
exactly (`job_from_record`), and a preview's final is the same job without `preview` (`final_of`).
Standard library only: the CLI, the client and the engine use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from v2vz.api import safe_json
from v2vz.api.errors import InvalidArgument, MediaNotFound, OutputUnwritable
from v2vz.api.files import write_atomic
from v2vz.api.formats import SEQUENCE_CONTAINERS, frame_pattern
from v2vz.api.job import MAX_FRAMES, EditJob

TAKE_TAG = "-v2vz-t"
PREVIEW_TAG = "-preview"
SIDECAR_SUFFIX = ".v2vz.json"
FRAMES_SIDECAR = "v2vz.json"  # in a folder of PNG frames that has no other output
RECORD_FORMAT = "v2vz-take"
RECORD_VERSION = 1
_SUFFIX_OF = {"tiff": "tif"}
_MAX_TRIES = 1000
_MAX_RECORD_BYTES = 16 * 2**20
MAX_TAKE = MAX_FRAMES - 1  # the highest number a job accepts (EditJob.validate): a higher stray name never counts
REPLACES_KEY = "replaces_preview"  # in a final's reserved record: the sidecar of the preview it replaces
WRITTEN_KEY = "written"  # in a done record: path -> [size, mtime_ns] of each file the take wrote, as it wrote it


@dataclass(frozen=True)
class Take:
    """A reserved take: its number, the output to write (a file or a frame pattern) and its sidecar."""

    number: int
    output: Path
    sidecar: Path
    preview: bool


def take_stem(source: Path) -> str:
    """The NAME of NAME-v2vz-tN: the source file's stem (a folder of frames: the folder's name).

    A `%` becomes `_`: `pct%04d.mov` or `100%done.mov` would otherwise give a take name that reads as a frame
    pattern (`%04d`, `%d`), which no video output may have."""
    source = Path(source)
    return ((source.name if source.suffix == "" else source.stem) or "clip").replace("%", "_")


def entry_name(stem: str, number: int, preview: bool) -> str:
    return f"{stem}{TAKE_TAG}{number}{PREVIEW_TAG if preview else ''}"


def take_output(folder: Path, stem: str, number: int, container: str, preview: bool = False) -> Path:
    """`folder/NAME-v2vz-tN.mp4`; frames go into a folder of their own, `NAME-v2vz-tN/NAME-v2vz-tN.%04d.exr`."""
    name = entry_name(stem, number, preview)
    suffix = _SUFFIX_OF.get(container, container)
    if container in SEQUENCE_CONTAINERS:
        return Path(folder) / name / f"{name}.%04d.{suffix}"
    return Path(folder) / f"{name}.{suffix}"


def hashed_pattern(pattern: Path) -> str:
    """A frame pattern's name with its frame number as `#`s, the usual notation of a sequence: `shot_%04d.exr` ->
    `shot_####.exr`. Every pattern that names other files keeps its separator and width, so `shot_%04d.exr`,
    `shot.%04d.exr` and `shot%04d.exr` in one folder get a sidecar (and a WAV) each."""
    name = Path(pattern).name
    match = frame_pattern(Path(pattern))
    if match is None:
        return name
    return name[: match.start()] + "#" * max(1, int(match.group(1) or 0)) + name[match.end() :]


def sidecar_path(output: Path | None, frames_dir: Path | None = None) -> Path:
    """Where the JSON of an output lives: `X.mp4` -> `X.mp4.v2vz.json` (so X.mp4 and X.mov keep a record each);
    `dir/shot_%04d.exr` -> `dir/shot_####.exr.v2vz.json`; a folder of PNG frames alone -> `folder/v2vz.json`."""
    if output is not None:
        output = Path(output)
        return output.with_name(hashed_pattern(output) + SIDECAR_SUFFIX)
    if frames_dir is not None:
        return Path(frames_dir) / FRAMES_SIDECAR
    raise InvalidArgument("a job without an output has no sidecar")


def _take_entries(folder: Path, stem: str) -> dict[int, list[str]]:
    """Take number -> the names in `folder` that belong to it (outputs, sidecars, frame folders, previews)."""
    pattern = re.compile(rf"^{re.escape(stem)}{re.escape(TAKE_TAG)}(\d+)(?:{PREVIEW_TAG})?(?:\..*)?$")
    found: dict[int, list[str]] = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return found
    except OSError as error:
        raise OutputUnwritable(f"cannot list {folder} ({error.strerror or error}) to number the take") from None
    for name in names:
        match = pattern.match(name)
        if match and len(match.group(1)) <= len(str(MAX_TAKE)) and 1 <= int(match.group(1)) <= MAX_TAKE:
            found.setdefault(int(match.group(1)), []).append(name)  # a stray t0 or t99999999 is no take
    return found


def _next_number(taken: dict[int, list[str]]) -> int:
    """After the highest take that has a number after it: a stray NAME-v2vz-t999999.mp4 (the highest number there
    is) is skipped past, so that it never blocks the takes of its clip."""
    room = [number + 1 for number in taken if number < MAX_TAKE and number + 1 not in taken]
    if room:
        return max(room)
    if 1 not in taken:
        return 1
    raise OutputUnwritable("every take number is in use in that folder: give --out or another --out-dir")


def next_take(folder: Path, stem: str) -> int:
    """The number the next take of NAME in `folder` would get now (reserve_take makes it so)."""
    return _next_number(_take_entries(Path(folder), stem))


def takes_in(folder: Path, stem: str) -> list[int]:
    """The take numbers of NAME already in `folder`, in order."""
    return sorted(_take_entries(Path(folder), stem))


def _claim(path: Path, directory: bool) -> bool:
    """Create `path` exclusively; False when it exists already."""
    try:
        if directory:
            path.mkdir()
        else:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno == errno.EEXIST:
            return False
        raise OutputUnwritable(f"cannot reserve a take in {path.parent} ({error.strerror or error})") from None
    return True


def _release(path: Path, directory: bool) -> None:
    with contextlib.suppress(OSError):
        path.rmdir() if directory else path.unlink()


def reserve_take(
    folder: Path,
    stem: str,
    container: str,
    preview: bool = False,
    number: int | None = None,
    record: dict | None = None,
) -> Take:
    """Reserve the next free take of NAME in `folder` (or take `number`, a preview's final) and return it.

    The final entry of the number (its sidecar, or its frame folder) is created exclusively, then `folder` is scanned
    again: any other entry of that number (a take another process reserved meanwhile, a file of another format)
    loses the reservation and the next number is tried. A given `number` may only meet its own preview's files.
    `record` is written into the reserved sidecar (state "reserved"), so the take is known before it is written.
    """
    folder = Path(folder)
    if number is not None and not 1 <= number <= MAX_TAKE:
        raise InvalidArgument(f"take must be between 1 and {MAX_TAKE}, got {number}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # unwritable, under a file, a read-only or virtual file system: one line, no traceback
        raise OutputUnwritable(f"cannot make the take folder {folder} ({error.strerror or error})") from None
    directory = container in SEQUENCE_CONTAINERS
    for _ in range(_MAX_TRIES):
        taken = _take_entries(folder, stem)
        candidate = number if number is not None else _next_number(taken)
        final = take_output(folder, stem, candidate, container)
        claim = final.parent if directory else sidecar_path(final)  # the final's frame folder, or its sidecar
        if not _claim(claim, directory):
            if number is not None:
                raise InvalidArgument(f"take {number} of {stem} exists already in {folder}: it has been made")
            continue
        own = {claim.name}
        if number is not None:  # a final may sit beside its own preview
            preview_name = entry_name(stem, candidate, True)
            own |= {name for name in taken.get(candidate, []) if name.startswith(preview_name)}
        others = set(_take_entries(folder, stem).get(candidate, [])) - own
        if others:
            _release(claim, directory)
            if number is not None:
                raise InvalidArgument(f"take {number} of {stem} is in use in {folder} ({sorted(others)[0]})")
            time.sleep(random.uniform(0.001, 0.02))  # two claimants in step must not meet again and again
            continue
        take = _make_take(folder, stem, candidate, container, preview, claim, directory)
        if record is not None:
            reserved = {"take": take.number, "preview": preview, "state": "reserved", "output": str(take.output)}
            if isinstance(record.get("job"), dict):
                reserved["job"] = record["job"] | {"output": str(take.output), "take": take.number}
            write_sidecar(take.sidecar, record | reserved)  # this take's own name, never take 1's
        if preview:  # the preview's own entries exist now: the final's claim is not needed any more
            _release(claim, directory)
        return take
    raise OutputUnwritable(f"cannot reserve a take of {stem} in {folder}: too many processes compete for it")


def _make_take(
    folder: Path, stem: str, number: int, container: str, preview: bool, claim: Path, directory: bool
) -> Take:
    output = take_output(folder, stem, number, container, preview)
    if preview:
        if directory:
            output.parent.mkdir(exist_ok=True)
        sidecar = sidecar_path(output)
        if not directory:  # the preview's sidecar marks its number before the final's claim goes
            _claim(sidecar, False)
    else:
        sidecar = sidecar_path(output)
    return Take(number, output, sidecar, preview)


def take_record(job: EditJob, state: str, **extra: Any) -> dict[str, Any]:
    """The sidecar's content: the whole job (to re-make it exactly) and what became of it.

    A done record also stamps each file the take wrote (its size and mtime): only those files, unchanged, are
    ever removed as this take's (`remove_take_files`), never a file someone put at one of its names later."""
    record = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "state": state,
        "take": job.take,
        "preview": job.preview,
        "job": job.to_dict(),
    } | extra
    if state == "done" and WRITTEN_KEY not in record:
        record[WRITTEN_KEY] = {str(path): stamp for path in _named_files(record) if (stamp := _stamp(path))}
    return record


def _stamp(path: Path) -> list[int] | None:
    """[size, mtime_ns] of a plain file (None: not there, or not a plain file)."""
    try:
        status = os.lstat(path)
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns] if stat.S_ISREG(status.st_mode) else None


def _named_files(record: dict[str, Any]) -> list[Path]:
    """The files a record says its take wrote: its output file or frames and WAVs, its PNG frames."""
    names = [Path(name) for name in record.get("files") or []]
    if record.get("output") and frame_pattern(Path(record["output"])) is None:
        names.append(Path(record["output"]))
    frames_dir = record.get("frames_dir")
    if frames_dir:
        count = int(record.get("frame_count") or 0)
        names += [Path(frames_dir) / f"frame_{index:06d}.png" for index in range(count)]
    return list(dict.fromkeys(names))


def write_sidecar(path: Path, record: dict[str, Any]) -> Path:
    """Write a sidecar atomically (a reader never sees half of it)."""
    write_atomic(Path(path), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return Path(path)


def read_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar's record; one-line errors for a missing or foreign file."""
    path = Path(path)
    try:
        facts = path.stat()
        if not stat.S_ISREG(facts.st_mode):  # a FIFO or a device would block or never end
            raise InvalidArgument(f"{path} is not a v2vz take record (not a regular file)")
        if facts.st_size > _MAX_RECORD_BYTES:  # a record is a few KB; never read a huge file into memory
            raise InvalidArgument(f"{path} is not a v2vz take record (over {_MAX_RECORD_BYTES // 2**20} MiB)")
        record = safe_json.loads(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise MediaNotFound(f"{path} does not exist: no v2vz take is recorded there") from None
    except (OSError, UnicodeError, ValueError) as error:
        raise InvalidArgument(f"{path} is not a v2vz take record ({error})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or "job" not in record:
        raise InvalidArgument(f"{path} is not a v2vz take record")
    return record


def job_from_record(record: dict[str, Any]) -> EditJob:
    """The job a sidecar records, ready to submit again."""
    try:
        return EditJob.from_dict(record["job"])
    except (TypeError, KeyError, ValueError) as error:
        raise InvalidArgument(f"the take record's job cannot be read ({error})") from None


def sidecar_of(path: Path) -> Path:
    """The sidecar for a path a user gives: the sidecar itself, an output file, a frame of a pattern, or a folder."""
    path = Path(path).expanduser()
    if path.name.endswith(SIDECAR_SUFFIX) or path.name == FRAMES_SIDECAR:
        return path
    if path.is_dir():
        inside = sorted(path.glob("*" + SIDECAR_SUFFIX)) or sorted(path.glob(FRAMES_SIDECAR))
        if inside:
            return inside[0]
        raise MediaNotFound(f"{path} holds no v2vz take record ({SIDECAR_SUFFIX})")
    if frame_pattern(path) is not None:
        return _existing(sidecar_path(path), _legacy_sidecar(path))
    direct = path.with_name(path.name + SIDECAR_SUFFIX)
    if direct.exists():
        return direct
    match = re.match(r"^(.*?)(\d+)(\D*)$", path.name)  # a frame of a sequence: shot_0012.exr -> shot_####.exr
    if match:
        hashed = path.with_name(match.group(1) + "#" * len(match.group(2)) + match.group(3) + SIDECAR_SUFFIX)
        before = match.group(1).rstrip("._- ")
        return _existing(hashed, path.with_name(before + path.suffix + SIDECAR_SUFFIX) if before else None)
    return direct


def _legacy_sidecar(pattern: Path) -> Path:
    """Where earlier versions kept a pattern's sidecar (`shot.exr.v2vz.json`, shared by shot_ and shot.)."""
    match = frame_pattern(pattern)
    base = pattern.name[: match.start()].rstrip("._- ") if match else pattern.stem
    return pattern.with_name((base or "frames") + pattern.suffix + SIDECAR_SUFFIX)


def _existing(current: Path, legacy: Path | None) -> Path:
    """The current name, unless only an older version's record is there."""
    return legacy if legacy is not None and not current.exists() and legacy.exists() else current


def final_of(preview: EditJob, output: Path | None = None, frames_dir: Path | None = None) -> EditJob:
    """The final of a preview: the same job without the preview pass, for the same take number.

    With no output given, a preview's default take name (`NAME-v2vz-t3-preview.mp4`) becomes the final's
    (`NAME-v2vz-t3.mp4`); the caller reserves it with `reserve_take(..., number=preview.take)`.
    """
    if not preview.preview:
        raise InvalidArgument("that take is not a preview: it is final already")
    return dataclasses.replace(preview, preview=False, output=output, out_frames_dir=frames_dir, overwrite=False)


def release_take(take: Take) -> None:
    """Give back a take whose job never wrote it (refused at submit, failed, cancelled): its reserved sidecar and an
    empty frame folder go; a sidecar the engine completed, and any output file, stay."""
    try:
        if read_sidecar(take.sidecar).get("state") != "reserved":
            return
    except (MediaNotFound, InvalidArgument):
        return
    with contextlib.suppress(OSError):
        take.sidecar.unlink()
    if frame_pattern(take.output) is not None:
        with contextlib.suppress(OSError):
            take.output.parent.rmdir()  # only when empty


def remove_replaced(sidecar: Path, kept: list[Path]) -> list[Path]:
    """An `--overwrite` that wrote over an earlier take: the files the earlier record stamps and the new job did not
    write again (frames beyond the new range, a WAV the new job has no audio for) go, so that the output is the new
    job's alone. Only files unchanged since the earlier job wrote them; nothing when there is no earlier record."""
    try:
        earlier = read_sidecar(sidecar)
    except (MediaNotFound, InvalidArgument):
        return []
    stamps = earlier.get(WRITTEN_KEY)
    if not isinstance(stamps, dict):
        return []
    keep = {os.path.abspath(path) for path in kept}
    removed: list[Path] = []
    for name, stamp in stamps.items():
        path = Path(name)
        if os.path.abspath(path) not in keep and _stamp(path) == stamp:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def moved_from(record: dict[str, Any], sidecar: Path) -> Path | None:
    """The folder a take's files were written in, when its sidecar has been moved out of it since (None: not moved).
    A take moved with its sidecar is found where the sidecar is now."""
    output = record.get("output")
    if not output:
        return None
    written = sidecar_path(Path(output)).parent
    here = Path(sidecar).absolute().parent
    return written if os.path.normpath(written) != os.path.normpath(here) else None


def remove_take_files(record: dict[str, Any], sidecar: Path) -> list[Path]:
    """Remove the files a take's record names (its output file or frames, its PNG frames, its WAVs) and the
    sidecar itself: how a preview goes once its final replaced it. Returns what was removed.

    Only what this take wrote goes: a file whose size or mtime differ from the record's stamp (someone else's file
    put at that name since) stays. A take moved with its sidecar is removed where it is now. Records of older
    versions carry no stamps: their named files go as before."""
    removed: list[Path] = []
    stamps = record.get(WRITTEN_KEY)
    old_folder, new_folder = moved_from(record, sidecar), Path(sidecar).absolute().parent
    for named in _named_files(record):
        path = new_folder / named.name if old_folder is not None and named.parent == old_folder else named
        if isinstance(stamps, dict) and stamps.get(str(named)) != _stamp(path):
            continue  # not the file this take wrote (or not stamped): never someone else's
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    with contextlib.suppress(FileNotFoundError):
        Path(sidecar).unlink()
        removed.append(Path(sidecar))
    folders = {path.parent for path in removed}
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: a take folder of frames, a host's frames folder
    return removed


def replaced_preview(sidecar: Path, job: EditJob) -> Path | None:
    """The preview a final's reserved record says it replaces (`v2vz final` without --keep-preview writes it), read
    before the final's done record is written over it; None for any other take."""
    try:
        record = read_sidecar(sidecar)
    except (MediaNotFound, InvalidArgument):
        return None
    named = record.get(REPLACES_KEY)
    if not isinstance(named, str) or job.preview or job.take is None:
        return None
    return Path(named)


def remove_replaced_preview(preview_sidecar: Path, final: EditJob) -> list[Path]:
    """Remove a preview's own files once its final is done, whoever runs the final (the daemon finishes it even when
    the client that asked for it is gone): only a done preview of the same take and clip, only the files it wrote."""
    try:
        record = read_sidecar(preview_sidecar)
        preview = job_from_record(record)
    except (MediaNotFound, InvalidArgument):
        return []
    same_take = preview.preview and preview.take == final.take and Path(preview.source) == Path(final.source)
    if not same_take or record.get("state") != "done":
        return []
    return remove_take_files(record, preview_sidecar)
