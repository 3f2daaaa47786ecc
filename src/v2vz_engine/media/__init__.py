"""Media: what a job reads (a video file or an image sequence) and writes (MP4, MOV, EXR/PNG/TIFF frames, PNGs).

`resolve(job)` is the one check of a job against its source that the CLI (`--local`), the daemon (at submit) and
`run_job` all call: the source exists and decodes, a source frame rate is only given for an image sequence, and the
range lies inside the clip (frames=0 becomes "through the end"); a matte covers the range with the source's shape
(matte.py; its digest goes into the job). `probe` (the torch-free `v2vz.media.probe`, which
`v2vz timeline` uses too) and `iter_frames` read either kind.
`open_writer` (writers.py) writes an edit in the format its output name asks for, with the source's audio,
timecode and colour tags (docs/media.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from v2vz.api.errors import InvalidArgument, RangeError
from v2vz.api.job import EditJob
from v2vz.media.probe import DEFAULT_SEQUENCE_FPS, is_image_sequence, probe
from v2vz_engine.media import image_sequence, video, writers
from v2vz_engine.media.frames import resize_frames, working_size, write_masks, write_png_frames
from v2vz_engine.media.info import ColourTags, MediaInfo
from v2vz_engine.media.matte import check_matte, matte_notes, read_matte
from v2vz_engine.media.outputs import check_outputs, check_spares, write_error
from v2vz_engine.media.writers import ClipWriter, open_writer

__all__ = [
    "DEFAULT_SEQUENCE_FPS",
    "ClipWriter",
    "ColourTags",
    "MediaInfo",
    "check_range",
    "is_image_sequence",
    "iter_frames",
    "matte_notes",
    "read_matte",
    "open_writer",
    "probe",
    "read_frames",
    "resize_frames",
    "resolve",
    "working_size",
    "write_error",
    "write_masks",
    "write_png_frames",
]


def check_range(info: MediaInfo, start: int, count: int) -> None:
    """Raise a one-line error unless frames start..start+count-1 all exist in the clip."""
    if start < 0:
        raise InvalidArgument(f"start frame {start} is negative; frames are numbered from 0")
    if count < 1:
        raise InvalidArgument(f"frame count {count} must be at least 1")
    last = start + count - 1
    if last >= info.frame_count:
        raise RangeError(
            f"frames {start}..{last} are outside {info.path} ({info.frame_count} frames, 0..{info.frame_count - 1})"
        )


def resolve(job: EditJob, checked: bool = False) -> tuple[EditJob, MediaInfo]:
    """The job checked against its source, with frames=0 made the real count, and the source as the job reads it
    (an image sequence at the job's frame rate). Its outputs are checked too: never the source, always writable.
    Raises the one-line V2vzError of the first problem. `checked`: the caller has just run `job.validate()` (the
    daemon's admission, after `job_from_request`): the job is checked once per side."""
    if not checked:
        job.validate()
    info = probe(job.source)
    job = job.through_end(info.frame_count)
    if job.source_fps is not None:
        if not info.is_sequence:
            raise InvalidArgument(
                f"a source frame rate is for image sequences; {info.path} is a video at {info.fps} fps of its own"
            )
        info = dataclasses.replace(info, fps=job.source_fps)
    check_range(info, job.start, job.frames)
    check_outputs(job, info)
    if any(lora.digest is None for lora in job.loras):  # the daemon's admission digests them first, itself
        from v2vz_engine.loras import resolve_loras

        job = resolve_loras(job)  # each file a LoRA, its digest recorded (the inversion depends on it)
    if job.matte is not None:
        matte = check_matte(job, info)
        check_spares(job, _files_of(matte.info), f"a frame of the matte {job.matte}")
        job = dataclasses.replace(job, matte_digest=matte.digest)
    if job.output is not None and not job.output_format.sequence:
        writers.check_codec_size(job.output_format, info.width, info.height, Path(job.output))
    return job, info


def _files_of(info: MediaInfo) -> list[Path]:
    return image_sequence.sequence_files(info.path) if info.is_sequence else [info.path]


def iter_frames(path: str | Path, start: int, count: int, info: MediaInfo | None = None) -> Iterator[np.ndarray]:
    """Frames start..start+count-1 one at a time as uint8 RGB (H, W, 3), decoding only from the nearest keyframe.

    One container stays open while the caller consumes frames, so a long range is decoded once and never held in
    memory as a whole (windowed edits read a window at a time). Errors come as one-line V2vzError exceptions.
    """
    if start < 0 or count < 1:
        check_range(MediaInfo(Path(path), 0, 0, Fraction(1), 0, False), start, count)
    info = info or probe(path)  # a caller that probed already saves a second probe (a frame count may mean a decode)
    check_range(info, start, count)
    if info.is_sequence:
        files = image_sequence.sequence_files(info.path)
        yield from image_sequence.iter_sequence_frames(files, start, count, info.width, info.height)
        return
    yield from video.iter_video_frames(info, start, count)


def read_frames(path: str | Path, start: int, count: int) -> tuple[np.ndarray, MediaInfo]:
    """Frames start..start+count-1 as uint8 RGB (count, H, W, 3), decoding only from the nearest keyframe."""
    if start < 0 or count < 1:
        check_range(MediaInfo(Path(path), 0, 0, Fraction(1), 0, False), start, count)
    info = probe(path)
    return np.stack(list(iter_frames(path, start, count, info))), info
