"""What a clip's media file is, for `v2vz timeline`: exact frame rate, frame count, size and start timecode.

The probe itself is the one the engine uses (`v2vz.media.probe`: torch-free, so the timeline plans its jobs in
milliseconds): a range that fits here fits the daemon's check at submit, a start timecode is taken or ignored by
the same rules, a rotated clip has its displayed size, and an image sequence is described as the engine reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

from v2vz.api.errors import InvalidArgument, V2vzError


@dataclass(frozen=True)
class MediaFacts:
    path: Path
    fps: Fraction
    frames: int
    width: int  # as displayed: a clip whose display matrix turns it is described upright, as the engine reads it
    height: int
    timecode: str | None  # the label of its first frame, e.g. "01:00:00:00"; None when the file has none


class MediaProblem(Exception):
    """The media cannot be used: the message is the reason (missing, not a video, undecodable)."""


def probe(path: Path) -> MediaFacts:
    """The facts of a clip's media; MediaProblem with one line when it is missing or cannot be read."""
    from v2vz.media.probe import probe as probe_media  # here, not at import: the command's --help never loads PyAV

    path = Path(path)
    if not path.exists():
        raise MediaProblem(f"its media {path} does not exist (relink it in the editor, or move the file back)")
    try:
        info = probe_media(path)
    except V2vzError as error:
        raise MediaProblem(f"its media {error}") from None
    return MediaFacts(path, info.fps, info.frame_count, info.width, info.height, info.timecode)


def timecode_fits(label: str, fps: Fraction) -> bool:
    """Whether a start timecode label exists at `fps`, by the engine's rules (v2vz.media.timecode.to_frames)."""
    return label_frames(label, fps) is not None


def label_frames(label: str, fps: Fraction) -> int | None:
    """The frame number a timecode label stands for at `fps`, counted as the engine counts it
    (v2vz.media.timecode.to_frames: drop-frame with `;` or `.`, which OTIO's own parser reads as non-drop), or None
    when the label does not exist there."""
    from v2vz.media.timecode import to_frames

    try:
        return to_frames(str(label), Fraction(fps))
    except InvalidArgument:
        return None


class MediaCache:
    """Each media file probed once per run (a timeline cuts many clips from one file)."""

    def __init__(self) -> None:
        self._facts: dict[Path, MediaFacts | MediaProblem] = {}

    def probe(self, path: Path) -> MediaFacts:
        path = Path(path)
        if path not in self._facts:
            try:
                self._facts[path] = probe(path)
            except MediaProblem as problem:
                self._facts[path] = problem
        found = self._facts[path]
        if isinstance(found, MediaProblem):
            raise MediaProblem(str(found))
        return found


def url_to_path(url: str, base: Path) -> Path:
    """A media reference's target as a local path: file:// URLs (localhost, percent-escapes, drive letters), plain
    absolute paths, and paths relative to the timeline's folder. ValueError for other URL schemes."""
    url = (url or "").strip()
    if not url:
        raise ValueError("its media reference names no file")
    parsed = urlparse(url)
    if parsed.scheme.lower() == "file":
        path = unquote(parsed.path)
        if re.match(r"^/[A-Za-z]:[/\\]", path):  # file:///C:/media/a.mov
            path = path[1:]
        if parsed.netloc and parsed.netloc.lower() != "localhost":
            path = f"//{parsed.netloc}{path}"
        return Path(path)
    if len(parsed.scheme) > 1 and "://" in url:
        raise ValueError(f"its media is at {url}, which is not a file v2vz can read")
    path = Path(unquote(url) if "%" in url else url).expanduser()
    return path if path.is_absolute() else Path(base) / path
