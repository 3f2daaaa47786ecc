"""What an output's name means: its container, the codecs it may hold, and whether it is a frame sequence.

Torch-free and PyAV-free, so the CLI, the client and the daemon refuse an extension without a meaning at once,
before any work; the engine's writers (v2vz_engine/media/writers.py) turn an `OutputFormat` into a file.

- `.mp4`: H.264 (`h264`, 8-bit) or H.265 (`h265`, 10-bit Main 10); AAC audio.
- `.mov`: ProRes 422 HQ (`prores_422hq`, 10-bit 4:2:2, the default), ProRes 4444 (`prores_4444`, 10-bit 4:4:4
  samples; FFmpeg decodes ProRes 4444 as 12-bit), DNxHR HQ (`dnxhr_hq`, 8-bit 4:2:2, the codec's own depth; at least
  256x120), or H.264 / H.265 as in MP4; PCM audio.
- a frame pattern, `shot_%04d.exr` (16-bit half float, linear light), `.png` (16-bit RGB), `.tif`/`.tiff` (16-bit RGB):
  one file per frame numbered by its source frame; audio, when kept, goes to a WAV beside the frames.

`check_size` refuses, in one line that names the limit, a frame size the codec's encoder cannot write
(`SIZE_LIMITS`: H.265 under 16x16, DNxHR under 256x120, ...), so a job is refused at submit, not after its edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from v2vz.api.errors import InvalidArgument


@dataclass(frozen=True)
class OutputFormat:
    """How one output is written: `container` (mp4, mov, exr, png, tiff), `codec`, and `sequence` for frame files."""

    container: str
    codec: str
    sequence: bool

    @property
    def label(self) -> str:
        """A short human name, e.g. "ProRes 422 HQ in MOV", "16-bit PNG frames"."""
        return CODEC_LABELS[self.codec] + ("" if self.sequence else f" in {self.container.upper()}")


# Per extension: the codecs it may hold, the default first.
CONTAINER_CODECS: dict[str, tuple[str, ...]] = {
    "mp4": ("h264", "h265"),
    "mov": ("prores_422hq", "prores_4444", "dnxhr_hq", "h264", "h265"),
    "exr": ("exr_half",),
    "png": ("png16",),
    "tiff": ("tiff16",),
}
SUFFIX_CONTAINERS: dict[str, str] = {
    ".mp4": "mp4",
    ".mov": "mov",
    ".exr": "exr",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
}
SEQUENCE_CONTAINERS = frozenset({"exr", "png", "tiff"})
CODEC_LABELS: dict[str, str] = {
    "h264": "H.264",
    "h265": "H.265 10-bit",
    "prores_422hq": "ProRes 422 HQ",
    "prores_4444": "ProRes 4444",
    "dnxhr_hq": "DNxHR HQ",
    "exr_half": "half-float EXR frames",
    "png16": "16-bit PNG frames",
    "tiff16": "16-bit TIFF frames",
}
CODECS: tuple[str, ...] = tuple(CODEC_LABELS)  # what --codec accepts
TAKE_FORMATS: tuple[str, ...] = ("mp4", "mov", "exr", "png", "tiff")  # what --format accepts for default take names

_PATTERN = re.compile(r"%0?(\d*)d")  # printf-style frame number, as FFmpeg's image2 muxer reads it


def accepted() -> str:
    """The accepted output names, for an error message."""
    return (
        ".mp4 (h264, h265), .mov (prores_422hq, prores_4444, dnxhr_hq, h264, h265), a frame pattern such as "
        "shot_%04d.exr, shot_%04d.png or shot_%04d.tif, "
        "or a folder for 8-bit PNG frames (a path without an extension, or ending in /)"
    )


def frame_pattern(path: Path) -> re.Match[str] | None:
    """The one `%04d`-style frame number in a file name, or None."""
    matches = list(_PATTERN.finditer(Path(path).name))
    if len(matches) > 1:
        raise InvalidArgument(f"{path}: a frame pattern has one frame number (%04d), this name has {len(matches)}")
    return matches[0] if matches else None


def frame_path(pattern: Path, number: int) -> Path:
    """The file of frame `number` of a pattern (`shot_%04d.exr`, 12 -> shot_0012.exr)."""
    match = frame_pattern(pattern)
    if match is None:
        raise InvalidArgument(f"{pattern} has no frame number (%04d)")
    width = int(match.group(1) or 0)
    name = pattern.name
    return pattern.with_name(f"{name[: match.start()]}{number:0{width}d}{name[match.end() :]}")


def output_format(path: str | Path, codec: str | None = None) -> OutputFormat:
    """The format an output name asks for, with `codec` (None: the container's default) checked against it.

    InvalidArgument, listing what is accepted, for an extension without a meaning, a codec the container does not
    hold, a frame sequence without a frame number, or a video file name with one.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    container = SUFFIX_CONTAINERS.get(suffix)
    if container is None:
        what = f"the extension {suffix}" if suffix else "a name without an extension"
        raise InvalidArgument(f"--out {path}: v2vz does not write {what}; it writes {accepted()}")
    allowed = CONTAINER_CODECS[container]
    if codec is not None and codec not in allowed:
        known = codec in CODEC_LABELS
        reason = f"{suffix} files hold {', '.join(allowed)}" if known else f"known codecs: {', '.join(CODECS)}"
        raise InvalidArgument(f"--codec {codec} cannot be written to {path.name}: {reason}")
    sequence = container in SEQUENCE_CONTAINERS
    has_number = frame_pattern(path) is not None
    if sequence and not has_number:
        raise InvalidArgument(
            f"--out {path}: frame files need a frame number in the name, e.g. {path.stem}_%04d{path.suffix}"
        )
    if not sequence and has_number:
        raise InvalidArgument(f"--out {path}: a {suffix} file is one file; drop the frame number from its name")
    return OutputFormat(container=container, codec=codec or allowed[0], sequence=sequence)


@dataclass(frozen=True)
class SizeLimit:
    """The frame sizes one codec's FFmpeg encoder writes (and FFmpeg decodes back): each side from `least` to
    `most` pixels (None: no limit found), with the reason and the way out told to the user. ProRes 422's 16n+1
    widths are `check_size`'s own rule."""

    name: str
    least: tuple[int, int] = (1, 1)
    most: tuple[int, int] | None = None
    narrow: tuple[int, int] | None = None  # (n, m): a side under n pixels allows at most m on the other
    why: str = ""
    instead: str = "write ProRes 4444 to a .mov (--codec prores_4444) instead"


# Found by encoding and decoding each size with PyAV's bundled FFmpeg (tests/engine/test_media_edge_cases.py holds
# them to it).
SIZE_LIMITS: dict[str, SizeLimit] = {
    "h264": SizeLimit("H.264", most=(16384, 16384), why="libx264 refuses a side above 16384"),
    "h265": SizeLimit(
        "H.265",
        least=(16, 16),
        narrow=(32, 4216),
        why="libx265 needs at least one 16x16 block, and codes a frame under 32 pixels on a side in such blocks",
        instead="write H.264 (--codec h264) or ProRes (--codec prores_4444) instead",
    ),
    "dnxhr_hq": SizeLimit(
        "DNxHR",
        least=(256, 120),
        most=(16384, 8192),
        why="FFmpeg's DNxHR encoder refuses smaller frames and taller ones do not decode",
        instead="write ProRes (--codec prores_422hq) or H.264 instead",
    ),
    "prores_422hq": SizeLimit("ProRes 422"),  # any size (16385 wide too), but see the 16n+1 widths in check_size
    "prores_4444": SizeLimit("ProRes 4444"),
}


def check_size(fmt: OutputFormat, width: int, height: int, path: str | Path) -> None:
    """InvalidArgument, in one line naming the limit, when `fmt`'s encoder cannot write `width`x`height` frames
    correctly: the output keeps the source's size (never padded or cropped), so such a job is refused at submit,
    before any work, instead of failing after the whole edit."""
    name = Path(path).name
    limit = SIZE_LIMITS.get(fmt.codec)
    if limit is None:
        return
    if width < limit.least[0] or height < limit.least[1]:
        least = f"{limit.least[0]}x{limit.least[1]}"
        raise InvalidArgument(
            f"{limit.name} needs frames of at least {least}, {name} would be {width}x{height} ({limit.why}): "
            f"{limit.instead}"
        )
    if limit.most is not None and (width > limit.most[0] or height > limit.most[1]):
        most = f"{limit.most[0]}x{limit.most[1]}"
        reason = f" ({limit.why})" if limit.why else ""
        raise InvalidArgument(
            f"{limit.name} frames can be at most {most}, {name} would be {width}x{height}{reason}: {limit.instead}"
        )
    if limit.narrow is not None and min(width, height) < limit.narrow[0] and max(width, height) > limit.narrow[1]:
        raise InvalidArgument(
            f"{limit.name} frames under {limit.narrow[0]} pixels on a side can be at most {limit.narrow[1]} on the "
            f"other, {name} would be {width}x{height} ({limit.why}): {limit.instead}"
        )
    if fmt.codec == "prores_422hq" and width % 16 == 1:
        # FFmpeg's prores_ks drops the last chroma column there: the right edge decodes as garbage colour
        raise InvalidArgument(
            f"ProRes 422 cannot be written {width} pixels wide (16n+1) without a damaged right edge, {name} would "
            f"be {width}x{height}: write ProRes 4444 (--codec prores_4444) or DNxHR instead"
        )


def default_codec(take_format: str) -> str:
    """The codec a default take name of `take_format` (mp4, mov, exr, png, tiff) is written with."""
    if take_format not in CONTAINER_CODECS:
        raise InvalidArgument(f"--format {take_format}: choose one of {', '.join(TAKE_FORMATS)}")
    return CONTAINER_CODECS[take_format][0]
