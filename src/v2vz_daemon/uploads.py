"""Files the daemon keeps for clients, and the temporaries an interrupted job leaves: uploads and sweeping.

UploadMedia stores a clip in the state folder's `uploads`, named by its digest (so the same clip is stored once);
at start the daemon removes the hidden partial files that the writes of a killed attempt, or an upload cut off,
left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from v2vz.api.errors import InvalidArgument
from v2vz.api.files import temporary_beside
from v2vz.api.formats import frame_pattern
from v2vz.api.job import EditJob
from v2vz.api.takes import sidecar_path
from v2vz.api.v1 import editor_pb2 as pb

log = logging.getLogger("v2vz.daemon")

_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,12}")  # an upload keeps its extension (FFmpeg reads it) if it is one
UPLOAD_PREFIX = ".upload."  # an upload's temporary, named until it is complete


@dataclass(frozen=True)
class StoredUpload:
    media_id: str
    size_bytes: int
    sha256: str


def store_upload(chunks: Iterable[pb.MediaChunk], uploads: Path) -> StoredUpload:
    """Write an upload's chunks to `uploads`, then name the file by its digest (and the name's extension).

    InvalidArgument for an empty upload; a cut-off upload leaves nothing behind."""
    uploads.mkdir(parents=True, exist_ok=True)
    digest, size, name = hashlib.sha256(), 0, ""
    temp = temporary_beside(uploads / "upload")  # named by its digest once complete
    try:
        with open(temp, "wb") as handle:
            for chunk in chunks:
                name = name or Path(chunk.filename).name
                digest.update(chunk.data)
                size += len(chunk.data)
                handle.write(chunk.data)
        if size == 0:
            raise InvalidArgument("the upload was empty: send the media's bytes")
        sha = digest.hexdigest()
        suffix = Path(name).suffix.lower()
        media_id = sha[:24] + (suffix if _SUFFIX.fullmatch(suffix) else "")
        os.replace(temp, uploads / media_id)
    finally:
        temp.unlink(missing_ok=True)
    return StoredUpload(media_id, size, sha)


def sweep_temporaries(job: EditJob) -> None:
    """Remove the hidden partial files (`.NAME.*.part.*`) a killed attempt of `job` left beside its outputs."""
    if job.output is not None:
        output = Path(job.output)
        if frame_pattern(output) is None:
            sweep_temporaries_in(output.parent, f".{output.name}.")
        else:  # `.shot_0012.exr.xxxx.part.exr`: every frame file's temporary starts with the pattern's text before %d
            sweep_temporaries_in(output.parent, "." + output.name[: frame_pattern(output).start()])
        sweep_temporaries_in(output.parent, f".{sidecar_path(output).name}.")
    if job.out_frames_dir is not None:
        sweep_temporaries_in(Path(job.out_frames_dir), ".frame_")


def sweep_temporaries_in(folder: Path, prefix: str) -> None:
    """Remove `prefix*.part.*` and `prefix*.tmp` files in `folder`: temporaries of writes that never finished."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and (".part." in name or name.endswith(".tmp")):
            with contextlib.suppress(OSError):
                (folder / name).unlink()
                log.info("removed %s, left by an interrupted job", folder / name)
