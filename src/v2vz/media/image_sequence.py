"""Image-sequence sources: a folder of frames, or one numbered image file and the siblings that follow it.

Two ways to name a sequence, both giving frames in order:

- a folder: its image files (one suffix only) in natural order, digit runs compared as numbers (frame_2 < frame_10);
- an image file: its name is prefix + the last run of digits + suffix (`shot1_0005.png` is "shot1_", 5, ".png").
  The sequence is that file, then the siblings with the same prefix and suffix and a higher number, in increasing
  number order: like FFmpeg's `-start_number`, the file given is frame 0 and gaps in the numbering are fine.
  A file name without digits is a one-frame sequence (a still).

Frames are read with Pillow as uint8 RGB (H, W, 3); 16-bit images are scaled to 8 bits, alpha is dropped. Every
error is a `v2vz.api.errors` exception with one line that names the file or folder. No PyAV and no torch here:
the timeline probes a sequence with this module too; the engine's image_sequence.py reads its frame ranges.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from v2vz.api.errors import MediaError, MediaNotFound

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

_NUMBERED = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$")  # prefix, the LAST run of digits, suffix (the lazy prefix
# stops at the first digit of the last run, since the suffix holds no digit)
_DIGITS = re.compile(r"([0-9]+)")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _has_image_suffix(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_image_source(path: Path) -> bool:
    """True for a folder (a sequence of frames) or a file with an image suffix (case-insensitive)."""
    path = Path(path)
    return path.is_dir() or _has_image_suffix(path)


def natural_key(name: str) -> tuple:
    """Sort key that compares digit runs as integers: frame_2 < frame_10 (ties broken by the exact name)."""
    parts = _DIGITS.split(name)  # text, digits, text, ... : even positions text, odd positions digits
    key = tuple(int(part) if index % 2 else part.casefold() for index, part in enumerate(parts))
    return (key, name)


def split_numbered(name: str) -> tuple[str, int, str] | None:
    """(prefix, number, suffix) around the last run of digits of a file name, or None when it has no digit."""
    match = _NUMBERED.match(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), match.group(3)


def _folder_files(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as error:
        raise MediaError(f"{folder} cannot be listed ({error.strerror or error}); check its permissions") from error
    images = [
        entry for entry in entries if not entry.name.startswith(".") and _has_image_suffix(entry) and entry.is_file()
    ]
    if not images:
        raise MediaError(
            f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}); give a folder of frames or a video file"
        )
    suffixes = sorted({entry.suffix.lower() for entry in images})
    if len(suffixes) > 1:
        raise MediaError(
            f"{folder} holds images of more than one kind ({', '.join(suffixes)}); keep one sequence per folder"
        )
    return sorted(images, key=lambda entry: natural_key(entry.name))


def _numbered_files(path: Path) -> list[Path]:
    parts = split_numbered(path.name)
    if parts is None:
        return [path]  # no digits: a still
    prefix, number, suffix = parts
    try:
        entries = list(path.parent.iterdir())
    except OSError as error:
        raise MediaError(
            f"{path.parent} cannot be listed ({error.strerror or error}); check its permissions"
        ) from error
    following: dict[int, Path] = {}
    for entry in entries:
        other = split_numbered(entry.name)
        if other is None or other[0] != prefix or other[2] != suffix or other[1] <= number:
            continue
        if not entry.is_file():
            continue
        if other[1] in following:
            first, second = sorted((following[other[1]].name, entry.name))
            raise MediaError(
                f"{path.parent} holds two frames numbered {other[1]} ({first} and {second}); rename or remove one"
            )
        following[other[1]] = entry
    return [path, *(following[key] for key in sorted(following))]


def sequence_files(path: Path) -> list[Path]:
    """The frames of an image-sequence source (a folder, or an image file and its higher-numbered siblings)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MediaNotFound(f"{path} does not exist; check the path")
    if path.is_dir():
        return _folder_files(path)
    if not _has_image_suffix(path):
        raise MediaError(
            f"{path} is not an image ({', '.join(IMAGE_SUFFIXES)}); give an image file, a folder of frames or a video"
        )
    if not path.is_file():
        raise MediaError(f"{path} is not a file; give an image file or a folder of frames")
    return _numbered_files(path)


def _one_line(error: BaseException) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not a known image format, or damaged"
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(reason).split())


def _to_rgb(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        # 0..65535 onto 0..255 with rounding (65535 -> 255, 32768 -> 128); Pillow's own conversion would clip.
        values = np.asarray(image).astype(np.int64)
        gray = ((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        raise MediaError(f"{path} holds 32-bit float pixels; export it as 8- or 16-bit PNG or TIFF")
    if mode != "RGB":
        try:
            image = image.convert("RGB")  # L, LA, RGBA, RGBX, P, PA, 1, CMYK, YCbCr: alpha is dropped
        except (ValueError, OSError) as error:
            raise MediaError(
                f"{path} has pixel mode {mode}, which cannot be turned into RGB ({_one_line(error)}); "
                "export it as 8-bit RGB"
            ) from error
    frame = np.asarray(image, dtype=np.uint8)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise MediaError(f"{path} did not decode to RGB pixels (shape {frame.shape}); export it as 8-bit RGB")
    return np.ascontiguousarray(frame)


def read_image(path: str | Path) -> np.ndarray:
    """One image as uint8 RGB (H, W, 3): grey, palette, CMYK and 16-bit images converted, alpha dropped."""
    path = Path(path)
    if not path.exists():
        raise MediaNotFound(f"{path} does not exist; check the path")
    if not path.is_file():
        raise MediaError(f"{path} is not a file; give an image file")
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(image, path)
    except MediaError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise MediaError(f"{path} cannot be read as an image ({_one_line(error)}); export it again") from error


def probe_sequence(path: str | Path) -> tuple[list[Path], int, int]:
    """The sequence's files and the width and height of its first frame (which is decoded, to catch damage early)."""
    files = sequence_files(Path(path))
    height, width = read_image(files[0]).shape[:2]
    return files, width, height
