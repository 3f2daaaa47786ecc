"""Admission: whether the daemon takes a SubmitEdit request, and the resolved job it runs if so.

Everything a request can be refused for is checked here, synchronously, before anything is recorded: paths that must
be absolute, a remote client's confinement to --media-root and to the models it may name, a model that is nowhere,
the media's real frame count and outputs that never touch the source, takes that exist already, and two jobs in
flight that would write one file. No gRPC here: the servicer says whether the caller is remote.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from v2vz.api.errors import InvalidArgument, MediaNotFound, OutputExists, PathNotAllowed
from v2vz.api.job import EditJob
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.api.wire import job_from_request
from v2vz_daemon import security
from v2vz_daemon.config import DaemonConfig
from v2vz_daemon.journal import Journal


def admit(request: pb.SubmitEditRequest, config: DaemonConfig, journal: Journal, *, remote: bool = False) -> EditJob:
    """The resolved job of a request, or the V2vzError that refuses it (nothing recorded, nothing written).

    remote: the call came from beyond this machine's Unix socket, so its paths and model are confined. A request
    that streams frames without outputs of its own gets a frames folder in the state folder (set on the request).
    """
    from v2vz_engine import media
    from v2vz_engine.loras import resolve_loras
    from v2vz_engine.media.outputs import refuse_existing
    from v2vz_engine.methods import check_method
    from v2vz_engine.model_source import locate, model_family

    source = _source(request, config)
    if not request.output and not request.out_frames_dir and request.stream_frames:
        request.out_frames_dir = str(streamed_frames_root(config) / uuid.uuid4().hex[:12])
    for name in ("output", "out_frames_dir", "matte", "mask_dir"):
        value = getattr(request, name)
        if value and not Path(value).is_absolute():
            raise InvalidArgument(f"{name} {value!r} must be an absolute path (the daemon has its own cwd)")
    job = job_from_request(request, config.model, source)
    if remote:
        confine(job, request, config)
        allowed = (config.model, *config.allowed_models)
        if job.model not in allowed:
            raise PathNotAllowed(
                f"model {job.model[:100]!r} is not one this daemon offers remote clients: {', '.join(allowed)}"
            )
    locate(job.model)  # a model that is nowhere fails now, in milliseconds, not when the job starts
    check_method(job.options, model_family(job.model), job.model)  # flowedit on an SD model, vid2vid-zero on Wan
    job = resolve_loras(job, absolute=True)  # each LoRA file checked, its digest recorded
    job, _ = media.resolve(job, checked=True)  # the real frame count, outputs that never touch the source
    refuse_existing(job)  # takes never overwrite (unless the job says so) ...
    refuse_shared_outputs(job, journal)  # ... and two jobs in flight never write one file
    return job


def _source(request: pb.SubmitEditRequest, config: DaemonConfig) -> Path | None:
    """An uploaded media's file (None: the request names its own source_path, which must be absolute)."""
    if request.WhichOneof("source") == "media_id":
        source = uploads_folder(config) / Path(request.media_id).name
        if not source.is_file():
            raise MediaNotFound(f"no uploaded media {request.media_id!r}: upload it with UploadMedia first")
        return source
    if request.source_path and not Path(request.source_path).is_absolute():
        raise InvalidArgument(f"source path {request.source_path!r} must be absolute (the daemon has its own cwd)")
    return None


def uploads_folder(config: DaemonConfig) -> Path:
    """Where UploadMedia stores clips, named by their digest."""
    return config.state_dir / "uploads"


def streamed_frames_root(config: DaemonConfig) -> Path:
    """Where the frames of a job that only streams them are written (a folder per job)."""
    return config.state_dir / "frames"


def confine(job: EditJob, request: pb.SubmitEditRequest, config: DaemonConfig) -> None:
    """Remote clients name only paths inside --media-root (uploads and streamed frames are the daemon's own)."""
    roots = config.media_roots
    if request.WhichOneof("source") != "media_id":
        security.confine(str(job.source), roots, "source")
    own = (streamed_frames_root(config),)
    if job.output is not None:
        security.confine(str(job.output), roots, "output")
    if job.out_frames_dir is not None:
        security.confine(str(job.out_frames_dir), own if request.stream_frames else roots, "frames folder")
    if job.matte is not None:
        security.confine(str(job.matte), roots, "matte")
    if job.mask_dir is not None:
        security.confine(str(job.mask_dir), roots, "mask folder")
    for lora in job.loras:
        security.confine(str(lora.path), roots, "LoRA")


def refuse_shared_outputs(job: EditJob, journal: Journal) -> None:
    """OutputExists when a queued or running job writes one of this job's files."""
    from v2vz_engine.media.outputs import output_files

    mine = {os.path.realpath(path): path for path in output_files(job)}
    for other in journal.unfinished():
        for path in output_files(other.job):
            if os.path.realpath(path) in mine:
                raise OutputExists(
                    f"job {other.job_id} ({other.state}) writes {path} already: give this edit another --out, "
                    "or leave --out out for a take of its own"
                )


def submit_notes(job: EditJob) -> list[str]:
    """What SubmitEdit's reply notes: a prompt longer than the text encoder reads, a matte that is resampled."""
    from v2vz_engine import media
    from v2vz_engine.prompt_length import prompt_note

    prompts = (("prompt", job.prompt), ("source prompt", job.source_prompt))
    notes = [note for note in (prompt_note(name, text) for name, text in prompts) if note]
    if job.matte is not None:
        notes += media.matte_notes(job, media.probe(job.source))
    return notes
