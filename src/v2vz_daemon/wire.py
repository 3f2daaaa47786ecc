"""The journal's records -> the wire (v2vz.v1 messages): a journal event as JobEvents, a job as a JobSummary.

The contract's own mappings (EditJob <-> SubmitEditRequest, the event records' forms) are in v2vz.api; this module
adds the two that start from the daemon's journal records, which the contract cannot import.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from v2vz.api.events import TERMINAL_TYPES, EventType, JobOutcome, ProgressUpdate
from v2vz.api.job import MAX_PATH_CHARS, MAX_PROMPT_CHARS
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.api.wire import changed_options, loras_to_wire
from v2vz_daemon.journal import EventRecord, JobRecord

FRAME_CHUNK = 1024 * 1024  # a streamed frame's PNG goes in chunks of this size


def to_wire(event: EventRecord, stream_frames: bool) -> Iterator[pb.JobEvent]:
    """One journal event as wire events: a frame with stream_frames is sent as PNG chunks with one sequence."""
    base = dict(job_id=event.job_id, sequence=event.sequence, time_unix=event.time)
    payload = event.payload
    if event.kind == EventType.QUEUED:
        # The journal counts from 1 (1: next to run); the wire counts the queued jobs ahead (0: next to run).
        position = max(0, payload.get("position", 1) - 1)
        yield pb.JobEvent(**base, queued=pb.Queued(position=position, requeued=bool(payload.get("recovered"))))
    elif event.kind == EventType.PROGRESS:
        yield pb.JobEvent(**base, progress=ProgressUpdate.from_record(payload).to_wire())
    elif event.kind == EventType.FRAME:
        yield from _frame_events(base, payload["index"], payload["path"], stream_frames)
    elif event.kind in TERMINAL_TYPES:
        yield pb.JobEvent(**base, **{event.kind: JobOutcome.from_record(event.kind, payload).to_wire()})


def _frame_events(base: dict, index: int, path: str, stream_frames: bool) -> Iterator[pb.JobEvent]:
    """A frame's event; with stream_frames its PNG in chunks of FRAME_CHUNK, every chunk with the same sequence."""
    data = b""
    if stream_frames:
        try:
            data = Path(path).read_bytes()
        except OSError:
            data = b""
    chunks = max(1, -(-len(data) // FRAME_CHUNK))
    for chunk in range(chunks):
        piece = data[chunk * FRAME_CHUNK : (chunk + 1) * FRAME_CHUNK]
        yield pb.JobEvent(**base, frame=pb.FrameReady(index=index, path=path, png=piece, chunk=chunk, chunks=chunks))


def job_summary(record: JobRecord) -> pb.JobSummary:
    """One job of ListJobs: what `v2vz jobs` shows (strings cut to the request limits: older journals had none)."""
    job = record.job
    return pb.JobSummary(
        job_id=record.job_id,
        state=record.state,
        source=str(job.source)[:MAX_PATH_CHARS],
        prompt=job.prompt[:MAX_PROMPT_CHARS],
        start=job.start,
        frames=job.frames,
        submitted_unix=record.submitted,
        finished_unix=record.finished or 0.0,
        reason=record.reason,
        attempts=record.attempts,
        started_unix=record.started or 0.0,
        output=str(job.output or ""),
        out_frames_dir=str(job.out_frames_dir or ""),
        model=job.model,
        options=changed_options(job.options),
        client=record.client,
        take=job.take or 0,
        preview=job.preview,
        source_prompt=job.source_prompt[:MAX_PROMPT_CHARS],
        codec=job.codec or "",
        no_audio=not job.audio,
        matte=str(job.matte or "")[:MAX_PATH_CHARS],
        matte_digest=job.matte_digest or "",
        mask_dir=str(job.mask_dir or "")[:MAX_PATH_CHARS],
        matte_start=job.matte_start,
        loras=loras_to_wire(job.loras),
    )
