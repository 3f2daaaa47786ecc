"""Writing files so that no reader ever sees half of one: the project's one atomic-write helper.

The data goes to a hidden temporary name in the target's own folder (so the rename stays on one filesystem and is
atomic), is flushed to disk, and then replaces the target. On any error the temporary file is removed and the target
is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def temporary_beside(target: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden file name next to `target` (created empty, mode 0600), for a writer that renames it later."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(
    target: str | Path, suffix: str = ".tmp", mode: int | None = None, fsync: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside `target` to write to; it replaces `target` when the block ends without error.

    mode: the file's permissions (default: those of the file it replaces, else what the umask gives a new file).
    fsync: flush the data to disk before the rename (records and state; outputs that can be made again skip it).
    """
    target = Path(target)
    temp = temporary_beside(target, suffix)
    try:
        yield temp
        replace_with(temp, target, mode, fsync)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def replace_with(temp: Path, target: Path, mode: int | None = None, fsync: bool = True) -> None:
    """Move a finished temporary file onto `target`, with `target`'s permissions (see atomic_path)."""
    if mode is None:
        try:
            mode = target.stat().st_mode & 0o7777
        except OSError:
            mode = _umask_mode()
    os.chmod(temp, mode)
    if fsync:
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
    os.replace(temp, target)


def write_atomic(target: str | Path, data: str | bytes, mode: int | None = None) -> Path:
    """Write text (UTF-8) or bytes to `target` atomically; returns the target."""
    target = Path(target)
    with atomic_path(target, mode=mode) as temp:
        temp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return target


def _umask_mode() -> int:
    """0666 less the umask: the mode `open()` would give a new file (mkstemp's 0600 would hide outputs from a team)."""
    return 0o666 & ~_current_umask()


def _current_umask() -> int:
    """The process's umask; read from /proc where it can be (setting it to read it back races with other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o077)
    os.umask(umask)
    return umask
