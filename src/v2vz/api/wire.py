"""The typed values <-> the wire (v2vz.v1 messages): EditJob <-> SubmitEditRequest, a JobSummary as JSON.

Options travel as a name -> string map so that an old client and a new daemon (or the reverse) can still talk; the
daemon parses each value with the type of the EditOptions field of that name and refuses unknown names.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import MAX_LORAS, MAX_PATH_CHARS, RETIRED_OPTIONS, EditJob, EditOptions, Lora, parse_fps
from v2vz.api.v1 import editor_pb2 as pb

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(EditOptions)
    return {f.name: hints[f.name] for f in dataclasses.fields(EditOptions)}


def parse_option(name: str, text: str) -> Any:
    """A string from the wire -> the value of EditOptions.<name>, or InvalidArgument naming the option."""
    types_by_name = _field_types()
    if name not in types_by_name:
        raise InvalidArgument(unknown_option(name, types_by_name))
    kind = types_by_name[name]
    if get_origin(kind) in (types.UnionType, typing.Union):  # int | None: empty string means None
        if text.strip().lower() in ("", "none"):
            return None
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    try:
        if get_origin(kind) is Literal:
            if text not in get_args(kind):
                raise ValueError
            return text
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError
            return lowered in _TRUE
        return kind(text)
    except ValueError:
        expected = " or ".join(get_args(kind)) if get_origin(kind) is Literal else kind.__name__
        raise InvalidArgument(f"option {name} must be {expected}, got {text!r}") from None


def unknown_option(name: str, known: Iterable[str]) -> str:
    """`unknown option 'stepz': did you mean `steps`?`, or the known names when none is close."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown option {name[:40]!r}: did you mean `{close[0]}`?"
    return f"unknown option {name[:40]!r}; the options are {', '.join(known)}"


def options_to_map(options: EditOptions) -> dict[str, str]:
    """Every option of a job, as strings (the daemon gets the whole resolved set, not a preset name)."""
    return {
        f.name: "" if getattr(options, f.name) is None else str(getattr(options, f.name))
        for f in dataclasses.fields(options)
    }


def options_from_map(values: dict[str, str]) -> EditOptions:
    """Options from the wire: "preset" first, then each named field on top; validated.

    Retired options (an older client sends its whole set) are dropped: they no longer change anything."""
    values = {name: text for name, text in values.items() if name not in RETIRED_OPTIONS}
    preset = values.pop("preset", "default") or "default"
    parsed = {name: parse_option(name, text) for name, text in values.items()}
    options = dataclasses.replace(EditOptions.preset(preset), **parsed)
    options.validate()
    return options


def job_to_request(job: EditJob, *, stream_frames: bool = False, client: str = "v2vz-cli") -> pb.SubmitEditRequest:
    return pb.SubmitEditRequest(
        source_path=str(job.source),
        start=job.start,
        frames=job.frames,
        source_prompt=job.source_prompt,
        prompt=job.prompt,
        options=options_to_map(job.options),
        output=str(job.output) if job.output else "",
        out_frames_dir=str(job.out_frames_dir) if job.out_frames_dir else "",
        stream_frames=stream_frames,
        client=client,
        source_fps=str(job.source_fps) if job.source_fps is not None else "",
        model=job.model,
        codec=job.codec or "",
        no_audio=not job.audio,
        overwrite=job.overwrite,
        preview=job.preview,
        take=job.take or 0,
        matte=str(job.matte) if job.matte else "",
        matte_start=job.matte_start,
        mask_dir=str(job.mask_dir) if job.mask_dir else "",
        loras=loras_to_wire(job.loras),
    )


def loras_to_wire(loras: tuple[Lora, ...]) -> list[pb.Lora]:
    return [pb.Lora(path=str(lora.path), scale=lora.scale, digest=lora.digest or "") for lora in loras]


def loras_from_wire(loras: Iterable[pb.Lora]) -> tuple[Lora, ...]:
    return tuple(Lora(Path(lora.path), lora.scale, lora.digest or None) for lora in loras)


MAX_CLIENT_CHARS = 100
MAX_OPTION_CHARS = 100  # an option's name or value (numbers and names: a few characters)


def check_request(request: pb.SubmitEditRequest) -> None:
    """Bounds on what a request may carry beyond the job's own checks: every string has a limit."""
    if len(request.client) > MAX_CLIENT_CHARS:
        raise InvalidArgument(f"client is {len(request.client)} characters long; at most {MAX_CLIENT_CHARS}")
    if len(request.options) > len(dataclasses.fields(EditOptions)) + 1:
        raise InvalidArgument(f"{len(request.options)} options given; there are {len(dataclasses.fields(EditOptions))}")
    for name, value in request.options.items():
        if len(name) > MAX_OPTION_CHARS or len(value) > MAX_OPTION_CHARS:
            raise InvalidArgument(f"option {name[:40]!r} or its value is longer than {MAX_OPTION_CHARS} characters")
    if max(len(request.source_fps), len(request.media_id), len(request.codec)) > MAX_OPTION_CHARS:
        raise InvalidArgument(f"source_fps, media_id and codec are at most {MAX_OPTION_CHARS} characters")
    if len(request.loras) > MAX_LORAS:
        raise InvalidArgument(f"{len(request.loras)} LoRAs given; at most {MAX_LORAS}")
    for lora in request.loras:
        if len(lora.path) > MAX_PATH_CHARS or len(lora.digest) > MAX_OPTION_CHARS:
            raise InvalidArgument(f"a LoRA's path is at most {MAX_PATH_CHARS} characters, a digest {MAX_OPTION_CHARS}")


def job_from_request(request: pb.SubmitEditRequest, model: str, source: Path | None = None) -> EditJob:
    """The typed job of a request (source given when the daemon resolved an uploaded media id); validated.

    model: the daemon's own, for a request that names none."""
    check_request(request)
    if source is None:
        if not request.source_path:
            raise InvalidArgument("no source: give source_path (a file the daemon can read) or an uploaded media_id")
        source = Path(request.source_path)
    job = EditJob(
        source=source,
        prompt=request.prompt,
        source_prompt=request.source_prompt,
        start=request.start,
        frames=request.frames,
        options=options_from_map(dict(request.options)),
        output=Path(request.output) if request.output else None,
        out_frames_dir=Path(request.out_frames_dir) if request.out_frames_dir else None,
        model=request.model or model,
        source_fps=parse_fps(request.source_fps) if request.source_fps else None,
        codec=request.codec or None,
        audio=not request.no_audio,
        overwrite=request.overwrite,
        preview=request.preview,
        take=request.take or None,
        matte=Path(request.matte) if request.matte else None,
        matte_start=request.matte_start,
        mask_dir=Path(request.mask_dir) if request.mask_dir else None,
        loras=loras_from_wire(request.loras),
    )
    job.validate()
    return job


def changed_options(options: EditOptions) -> dict[str, str]:
    """The options that differ from the defaults, as wire strings: what `v2vz jobs` shows of a job's settings."""
    defaults = options_to_map(EditOptions())
    return {name: value for name, value in options_to_map(options).items() if defaults[name] != value}


def summary_to_dict(job: pb.JobSummary) -> dict[str, Any]:
    """One row of `v2vz jobs --json`."""
    return {
        "job_id": job.job_id,
        "state": job.state,
        "source": job.source,
        "prompt": job.prompt,
        "start": job.start,
        "frames": job.frames,
        "submitted": job.submitted_unix or None,
        "finished": job.finished_unix or None,
        "reason": job.reason,
        "attempts": job.attempts,
        "started": job.started_unix or None,
        "seconds": round(job.finished_unix - job.started_unix, 3) if job.finished_unix and job.started_unix else None,
        "model": job.model,
        "output": job.output or None,
        "out_frames_dir": job.out_frames_dir or None,
        "take": job.take or None,
        "preview": job.preview,
        "codec": job.codec or None,
        "audio": not job.no_audio,
        "options": dict(sorted(job.options.items())),
        "client": job.client,
        "matte": job.matte or None,
        "matte_start": job.matte_start,
        "matte_digest": job.matte_digest or None,
        "mask_dir": job.mask_dir or None,
        "loras": [{"path": lora.path, "scale": lora.scale, "digest": lora.digest or None} for lora in job.loras],
    }
