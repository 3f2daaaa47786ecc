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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from v2vz.api.errors import InvalidArgument, MediaNotFound, OutputUnwritable
from v2vz.api.files import write_atomic
from v2vz.api.formats import SEQUENCE_CONTAINERS, frame_pattern
from v2vz.api.job import EditJob

TAKE_TAG = "-v2vz-t"
PREVIEW_TAG = "-preview"
SIDECAR_SUFFIX = ".v2vz.json"
FRAMES_SIDECAR = "v2vz.json"  # in a folder of PNG frames that has no other output
RECORD_FORMAT = "v2vz-take"
RECORD_VERSION = 1
_SUFFIX_OF = {"tiff": "tif"}
_MAX_TRIES = 1000


@dataclass(frozen=True)
class Take:
    """A reserved take: its number, the output to write (a file or a frame pattern) and its sidecar."""

    number: int
    output: Path
    sidecar: Path
    preview: bool


def take_stem(source: Path) -> str:
    """The NAME of NAME-v2vz-tN: the source file's stem (a folder of frames: the folder's name)."""
    source = Path(source)
    return (source.name if source.suffix == "" else source.stem) or "clip"


def entry_name(stem: str, number: int, preview: bool) -> str:
    return f"{stem}{TAKE_TAG}{number}{PREVIEW_TAG if preview else ''}"


def take_output(folder: Path, stem: str, number: int, container: str, preview: bool = False) -> Path:
    """`folder/NAME-v2vz-tN.mp4`; frames go into a folder of their own, `NAME-v2vz-tN/NAME-v2vz-tN.%04d.exr`."""
    name = entry_name(stem, number, preview)
    suffix = _SUFFIX_OF.get(container, container)
    if container in SEQUENCE_CONTAINERS:
        return Path(folder) / name / f"{name}.%04d.{suffix}"
    return Path(folder) / f"{name}.{suffix}"


def sidecar_path(output: Path | None, frames_dir: Path | None = None) -> Path:
    """Where the JSON of an output lives: `X.mp4` -> `X.mp4.v2vz.json` (so X.mp4 and X.mov keep a record each);
    `dir/shot_%04d.exr` -> `dir/shot.exr.v2vz.json`; a folder of PNG frames alone -> `folder/v2vz.json`."""
    if output is not None:
        output = Path(output)
        match = frame_pattern(output)
        if match is None:
            return output.with_name(output.name + SIDECAR_SUFFIX)
        base = output.name[: match.start()].rstrip("._- ") or "frames"
        return output.with_name(base + output.suffix + SIDECAR_SUFFIX)
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
        if match:
            found.setdefault(int(match.group(1)), []).append(name)
    return found


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
    folder.mkdir(parents=True, exist_ok=True)
    directory = container in SEQUENCE_CONTAINERS
    for _ in range(_MAX_TRIES):
        taken = _take_entries(folder, stem)
        candidate = number if number is not None else max(taken, default=0) + 1
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
            write_sidecar(take.sidecar, record | {"take": take.number, "preview": preview, "state": "reserved"})
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
    """The sidecar's content: the whole job (to re-make it exactly) and what became of it."""
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "state": state,
        "take": job.take,
        "preview": job.preview,
        "job": job.to_dict(),
    } | extra


def write_sidecar(path: Path, record: dict[str, Any]) -> Path:
    """Write a sidecar atomically (a reader never sees half of it)."""
    write_atomic(Path(path), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return Path(path)


def read_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar's record; one-line errors for a missing or foreign file."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
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
        return sidecar_path(path)
    direct = path.with_name(path.name + SIDECAR_SUFFIX)
    if direct.exists():
        return direct
    match = re.match(r"^(.*?)[._-]?\d+$", path.stem)  # a frame of a sequence: shot_0012.exr -> shot.exr.v2vz.json
    if match:
        return path.with_name(match.group(1).rstrip("._- ") + path.suffix + SIDECAR_SUFFIX)
    return direct


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


def remove_take_files(record: dict[str, Any], sidecar: Path) -> list[Path]:
    """Remove the files a take's record names (its output file or frames, its PNG frames, its WAVs) and the
    sidecar itself: how a preview goes once its final replaced it. Returns what was removed."""
    removed: list[Path] = []
    names = [Path(name) for name in record.get("files") or []]
    if record.get("output") and frame_pattern(Path(record["output"])) is None:
        names.append(Path(record["output"]))
    frames_dir = record.get("frames_dir")
    if frames_dir:
        count = int(record.get("frame_count") or 0)
        names += [Path(frames_dir) / f"frame_{index:06d}.png" for index in range(count)]
    for path in [*dict.fromkeys(names), Path(sidecar)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    folders = {path.parent for path in removed}
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: a take folder of frames, a host's frames folder
    return removed
