"""Where a job writes, checked before any work: never onto its source, never where it cannot write.

`check_outputs` runs inside `media.resolve(job)`, so the CLI, the daemon (at submit) and `run_job` refuse the same
jobs; `write_error` turns an OSError met while writing (a disk that filled up meanwhile) into one line.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from v2vz.api.errors import DiskFull, InvalidArgument, OutputExists, OutputUnwritable, V2vzError
from v2vz.api.formats import frame_path
from v2vz.api.job import EditJob
from v2vz_engine.media.info import MediaInfo

PNG_FRAME_PREFIX = "frame_"  # frames folders: frame_000000.png, numbered from 0 within the job
MASK_PREFIX = "mask_"  # --save-mask: mask_000120.png for source frame 120, numbered like the source's frames
PREVIEW_MASK_PREFIX = "mask_preview_"  # a preview's: its final writes mask_*.png beside them, then they go
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


def check_outputs(job: EditJob, info: MediaInfo) -> None:
    """InvalidArgument when an output is the source (under any spelling, a link included) or a folder that holds it;
    OutputUnwritable when an output's place is a file where a folder must be, or cannot be written."""
    source = info.path
    fmt = job.output_format
    if job.output is not None and fmt is not None and not fmt.sequence:
        out = Path(job.output).expanduser()
        if out.is_dir():
            raise OutputUnwritable(f"the output {out} is a folder: give a file name ending in .{fmt.container}")
        if _same_file(out, source):
            raise InvalidArgument(
                f"the output {out} is the source {source}: an edit never replaces its source, give another --out"
            )
        _check_writable(out.parent, out)
    if job.output is not None and fmt is not None and fmt.sequence:
        pattern = Path(job.output).expanduser()
        folder = pattern.parent
        if folder.exists() and not folder.is_dir():
            raise OutputUnwritable(f"the folder of {pattern} is a file: give a folder for the frames")
        if info.is_sequence:
            sources = {os.path.realpath(path) for path in _source_frames(info)}
            for offset in range(job.frames):
                candidate = frame_path(pattern, job.start + offset)
                if os.path.realpath(candidate) in sources:
                    raise InvalidArgument(
                        f"the output frame {candidate} is a frame of the source: an edit never replaces its source, "
                        "give another --out"
                    )
        _check_writable(folder, pattern)
    if job.out_frames_dir is not None:
        _check_folder(Path(job.out_frames_dir).expanduser(), source, "frames folder", "PNG frames")
    if job.mask_dir is not None:
        _check_folder(Path(job.mask_dir).expanduser(), source, "mask folder", "masks")


def _check_folder(folder: Path, source: Path, what: str, holds: str) -> None:
    """A folder an edit writes into: a folder (or none yet), never the source's, writable."""
    if folder.exists() and not folder.is_dir():
        raise OutputUnwritable(f"the {what} {folder} is a file: give a folder for the {holds}")
    real, real_source = Path(os.path.realpath(folder)), Path(os.path.realpath(source))
    if real == real_source or real in real_source.parents:
        raise InvalidArgument(
            f"the {what} {folder} holds the source {source}: its frames would be overwritten, give a folder of its own"
        )
    _check_writable(folder, folder)


def check_spares(job: EditJob, inputs: list[Path], what: str) -> None:
    """InvalidArgument when a file the job writes is one of `inputs` (a matte's files): no input is ever written."""
    real = {os.path.realpath(path) for path in inputs}
    for path in output_files(job):
        if os.path.realpath(path) in real or any(_same_file(path, other) for other in inputs if path.exists()):
            raise InvalidArgument(f"{path} is {what}: an edit never writes over what it reads, give another output")


def mask_paths(job: EditJob) -> list[Path]:
    """The mask PNGs of `--save-mask`, one per frame of the range, numbered like the source's frames. A preview's
    have names of their own, so that its final (same folder) never meets them and removes them once it is done."""
    if job.mask_dir is None:
        return []
    folder = Path(job.mask_dir).expanduser()
    prefix = PREVIEW_MASK_PREFIX if job.preview else MASK_PREFIX
    return [folder / f"{prefix}{job.start + offset:06d}.png" for offset in range(job.frames)]


def output_files(job: EditJob) -> list[Path]:
    """The files the job's outputs will be, beside its take sidecar: what `refuse_existing` looks for."""
    files: list[Path] = []
    fmt = job.output_format
    if job.output is not None and fmt is not None:
        output = Path(job.output).expanduser()
        if fmt.sequence:
            files += [frame_path(output, job.start + offset) for offset in range(job.frames)]
        else:
            files.append(output)
    if job.out_frames_dir is not None:
        folder = Path(job.out_frames_dir).expanduser()
        files += [folder / f"{PNG_FRAME_PREFIX}{index:06d}.png" for index in range(job.frames)]
    return files + mask_paths(job)


def refuse_existing(job: EditJob) -> None:
    """OutputExists when a file the job would write is there already, unless the job says `overwrite`.

    Checked when a job is accepted (the daemon's SubmitEdit, `edit --local`), not when it runs: a job the daemon
    runs again after a restart finds its own first frames, and must not fail on them."""
    if job.overwrite:
        return
    for path in output_files(job):
        if os.path.lexists(path):
            raise OutputExists(
                f"{path} exists: an edit never overwrites an earlier one; leave --out out for the next take, "
                "give another --out, or add --overwrite"
            )


def _source_frames(info: MediaInfo) -> list[Path]:
    from v2vz_engine.media.image_sequence import sequence_files

    return sequence_files(info.path)


def _same_file(a: Path, b: Path) -> bool:
    """The same file whatever the spelling: equal real paths, or one inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_writable(folder: Path, output: Path) -> None:
    """Create and remove a file in the nearest folder that exists on the way to `folder`: the one honest test
    (permissions, a read-only filesystem, /proc, a full disk all show)."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputUnwritable(f"cannot write {output}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".v2vz-probe-", dir=existing)
    except OSError as error:
        raise write_error(output, error) from None
    os.close(fd)
    os.unlink(probe)


def write_error(path: Path, error: BaseException) -> V2vzError:
    """The one-line error for an OSError met while writing `path`: DiskFull for a full disk or quota."""
    if isinstance(error, V2vzError):
        return error
    code = getattr(error, "errno", None)
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    if code in _FULL:
        return DiskFull(f"the disk is full: cannot write {path} ({reason}); free some space and run the edit again")
    return OutputUnwritable(f"cannot write {path} ({reason}): choose an output folder you can write to")
