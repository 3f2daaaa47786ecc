"""Image-sequence sources: the frames of a sequence read a range at a time.

Which files make a sequence, and how one image becomes uint8 RGB, is the torch-free `v2vz.media.image_sequence`
(the timeline probes sequences with it too); its names are kept here so the engine's callers import them as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from v2vz.api.errors import InvalidArgument, MediaError, RangeError
from v2vz.media.image_sequence import (
    IMAGE_SUFFIXES,
    is_image_source,
    natural_key,
    probe_sequence,
    read_image,
    sequence_files,
    split_numbered,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "is_image_source",
    "iter_sequence_frames",
    "natural_key",
    "probe_sequence",
    "read_image",
    "sequence_files",
    "split_numbered",
]


def iter_sequence_frames(
    files: Sequence[Path], start: int, count: int, width: int, height: int
) -> Iterator[np.ndarray]:
    """Frames start..start+count-1 of the sequence one at a time, each uint8 RGB (height, width, 3)."""
    if start < 0:
        raise InvalidArgument(f"start frame {start} is negative; frames are numbered from 0")
    if count < 1:
        raise InvalidArgument(f"frame count {count} must be at least 1")
    last = start + count - 1
    if last >= len(files):
        where = files[0] if files else "the sequence"
        raise RangeError(
            f"frames {start}..{last} are outside the image sequence from {where} "
            f"({len(files)} frames, 0..{len(files) - 1})"
        )
    for path in files[start : start + count]:
        frame = read_image(path)
        if frame.shape[:2] != (height, width):
            raise MediaError(
                f"{path} is {frame.shape[1]}x{frame.shape[0]} but the sequence is {width}x{height}; "
                "give frames of one size"
            )
        yield frame
