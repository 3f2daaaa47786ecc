"""What a clip's media file is, read with PyAV alone: exact frame rate, frame count, size and start timecode.

The engine's probe (v2vz_engine.media) says the same, but importing it loads torch; this one stays torch-free so
that `v2vz timeline` plans its jobs in milliseconds. It counts frames the way the engine does (the stream's own
count, else a decode), so a range that fits here fits the daemon's check at submit; and it takes or ignores a start
timecode by the engine's rules (`timecode_fits`), so both count a clip's frames from the same first frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass(frozen=True)
class MediaFacts:
    path: Path
    fps: Fraction
    frames: int
    width: int
    height: int
    timecode: str | None  # the label of its first frame, e.g. "01:00:00:00"; None when the file has none


class MediaProblem(Exception):
    """The media cannot be used: the message is the reason (missing, not a video, undecodable)."""


def probe(path: Path) -> MediaFacts:
    """The facts of a video file; MediaProblem with one line when it is missing or cannot be read as video."""
    import av  # here, not at import: the command's --help never loads PyAV

    path = Path(path)
    if not path.exists():
        raise MediaProblem(f"its media {path} does not exist (relink it in the editor, or move the file back)")
    if not path.is_file():
        raise MediaProblem(f"its media {path} is not a file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise MediaProblem(f"its media {path} cannot be read as video ({_reason(error)})") from None
    try:
        if not container.streams.video:
            raise MediaProblem(f"its media {path} has no video stream")
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate
        if not fps or fps <= 0:
            raise MediaProblem(f"its media {path} does not say its frame rate (export it at a constant rate)")
        frames = stream.frames
        if frames <= 0:
            try:
                frames = sum(1 for _ in container.decode(stream))
            except av.FFmpegError as error:
                raise MediaProblem(f"its media {path} is damaged ({_reason(error)})") from None
        if frames <= 0:
            raise MediaProblem(f"its media {path} holds no decodable video frames")
        return MediaFacts(
            path, Fraction(fps), frames, stream.width, stream.height, _timecode(container, stream, Fraction(fps))
        )
    finally:
        container.close()


_LABEL = re.compile(r"^(\d{1,2})[:;.](\d{2})[:;.](\d{2})([:;.])(\d{2,3})$")  # the engine's (v2vz_engine.media.timecode)


def _timecode(container, stream, fps: Fraction) -> str | None:
    """The start timecode a file carries, found and checked as the engine's probe does: the video stream's tag,
    then the other streams' (a timecode track), then the container's (`TIMECODE` in Matroska: any case); a label
    that does not fit the rate is ignored (None), as the engine ignores it, so both count the clip from 0."""
    streams = [stream, *(s for s in container.streams if s.type != "video")]
    for tags in (*(s.metadata for s in streams), container.metadata):
        label = next((str(value) for key, value in (tags or {}).items() if key.lower() == "timecode" and value), None)
        if label:
            return label.strip() if timecode_fits(label, fps) else None
    return None


def timecode_fits(label: str, fps: Fraction) -> bool:
    """Whether a start timecode label exists at `fps`, by the engine's rules (v2vz_engine.media.timecode.to_frames,
    which this torch-free module cannot import)."""
    return label_frames(label, fps) is not None


def label_frames(label: str, fps: Fraction) -> int | None:
    """The frame number a timecode label stands for at `fps`, counted as the engine counts it, or None when the
    label does not exist there: HH:MM:SS:FF with minutes and seconds below 60 and frames below the nominal rate
    (30 for 30000/1001); drop-frame (`;` or `.` before the frames, which OTIO's own parser reads as non-drop) only
    at 30000/1001 and 60000/1001, where it skips the first 2 (4) labels of each minute but every tenth."""
    match = _LABEL.match(str(label).strip())
    fps = Fraction(fps)
    if match is None or fps <= 0:
        return None
    hours, minutes, seconds, separator, frames = (int(g) if g.isdigit() else g for g in match.groups())
    nominal = max(1, round(fps))
    if minutes > 59 or seconds > 59 or frames >= nominal:
        return None
    total = ((hours * 60 + minutes) * 60 + seconds) * nominal + frames
    if separator == ":":
        return total
    if fps != Fraction(nominal * 1000, 1001) or nominal % 30:
        return None
    dropped = nominal // 15  # labels skipped per minute: 2 at 29.97, 4 at 59.94
    if seconds == 0 and frames < dropped and minutes % 10:
        return None
    all_minutes = hours * 60 + minutes
    return total - dropped * (all_minutes - all_minutes // 10)


def _reason(error: BaseException) -> str:
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(reason).split())


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
