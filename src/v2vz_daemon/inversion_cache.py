"""The on-disk inversion cache: a re-prompt of the same clip skips DDIM inversion and null-text optimization.

This is the disk LRU only. Its keys are the engine's (`v2vz_engine.inversion.cache_key`): they come from the decoded
frames' content (never the file path or mtime), so an edited or replaced source file gets a new key instead of a
stale entry, while a copy of the same clip under another name still hits.

LRU bookkeeping uses each entry's own mtime (set with os.utime on every get and put), not an index database:
the "last used" stamp lives in the same inode as the data, so it can never disagree with the files. There is no
index to rebuild after a crash between writing a file and recording it, nothing to lock between two processes
sharing the folder, and entries deleted or copied by hand are simply seen or not on the next scan. An index would
have to be reconciled with the folder anyway, making it a cache of a cache. The scan is cheap: entries are
megabytes, so a cache of a few GiB holds at most hundreds of files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
from pathlib import Path

from v2vz_engine.inversion import Inversion

log = logging.getLogger(__name__)

_KEY_META = "v2vz_cache_key"  # written into each file's meta: a file renamed or copied to another key is refused
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_STALE_TEMP_SECONDS = 3600  # Inversion.save's temporary files older than this were left by a killed process


def _well_formed(inversion: Inversion) -> bool:
    """z_T (F, 4, h, w); null-text's nulls (steps, 77, D) and direct's trajectory (steps + 1, F, 4, h, w) if there."""
    z_T, nulls, trajectory = inversion.z_T, inversion.nulls, inversion.trajectory
    return (
        z_T.ndim == 4
        and (nulls is None or nulls.ndim == 3)
        and (trajectory is None or (trajectory.ndim == 5 and trajectory.shape[1:] == z_T.shape))
    )


class InversionCache:
    """Inversions on disk under folder/<key[:2]>/<key>.inv, least recently used evicted beyond max_bytes.

    Safe to share the folder between processes (atomic writes, mtime stamps); `hits` and `misses` count this
    object's lookups only.
    """

    def __init__(self, folder: Path, max_bytes: int = 2 * 1024**3) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more, got {max_bytes}")
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._last_stamp = 0
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Where the entry for `key` lives; the key must be a sha256 hex (it becomes a file name)."""
        if not _KEY_RE.fullmatch(key):
            raise ValueError(f"not a cache key (64 lowercase hex digits): {key!r}")
        return self.folder / key[:2] / f"{key}.inv"

    def get(self, key: str) -> Inversion | None:
        """The cached inversion (on the CPU) or None; a hit becomes the most recently used entry."""
        path = self.path(key)
        try:
            inversion = Inversion.load(path)
            stored_key = inversion.meta.pop(_KEY_META, None)
            if stored_key != key or not _well_formed(inversion):
                raise ValueError(f"the file holds {'another entry' if stored_key != key else 'malformed tensors'}")
        except FileNotFoundError:
            return self._count(None)
        except Exception as error:  # safetensors, JSON and OS errors alike: a file we cannot use is a miss
            if not path.exists():  # evicted by another process while we read it
                return self._count(None)
            log.warning("inversion cache: dropping unreadable entry %s (%s: %s)", path, type(error).__name__, error)
            path.unlink(missing_ok=True)
            return self._count(None)
        self._touch(path)
        return self._count(inversion)

    def put(self, key: str, inversion: Inversion) -> Path | None:
        """Save atomically, then evict least recently used entries (never this one) until size <= max_bytes.

        None when the entry cannot be written (a full disk): caching is an optimisation, never a job's failure.

        An entry larger than max_bytes on its own is kept and everything else is evicted.
        """
        path = self.path(key)
        stored = dataclasses.replace(inversion, meta={**inversion.meta, _KEY_META: key})
        try:
            stored.save(path)
        except OSError as error:  # a full disk: the job goes on, its re-prompts just miss the cache
            log.warning("inversion cache: cannot store %s (%s)", path.name, error.strerror or error)
            return None
        self._touch(path)
        self._evict(keep=path)
        self._sweep_stale_temporaries()
        return path

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def clear(self) -> None:
        """Remove every entry and stale temporary; folders and fresh temporaries stay for a concurrent writer."""
        for path, _, _ in self._entries():
            path.unlink(missing_ok=True)
        self._sweep_stale_temporaries()

    # -- helpers ---------------------------------------------------------------------------------------------

    def _count(self, inversion: Inversion | None) -> Inversion | None:
        with self._lock:
            if inversion is None:
                self.misses += 1
            else:
                self.hits += 1
        return inversion

    def _touch(self, path: Path) -> None:
        """Mark as used now; stamps strictly increase within this process so back-to-back uses keep their order."""
        with self._lock:
            stamp = max(time.time_ns(), self._last_stamp + 1)
            self._last_stamp = stamp
        with contextlib.suppress(FileNotFoundError):  # evicted by another process meanwhile: the caller has it
            os.utime(path, ns=(stamp, stamp))

    def _entries(self) -> list[tuple[Path, int, int]]:
        """(path, size, mtime_ns) of every entry; files that vanish during the scan are skipped."""
        entries = []
        for path in self.folder.glob("??/*.inv"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((path, stat.st_size, stat.st_mtime_ns))
        return entries

    def _evict(self, keep: Path) -> None:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        for path, size, _ in sorted(entries, key=lambda entry: (entry[2], entry[0].name)):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            log.info("inversion cache: evicted %s (%d bytes)", path.name, size)

    def _sweep_stale_temporaries(self, max_age: float = _STALE_TEMP_SECONDS) -> None:
        """Remove temporaries of saves killed mid-write; recent ones may belong to another process still writing."""
        cutoff = time.time() - max_age
        for path in self.folder.glob("??/.*.tmp"):
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                continue
