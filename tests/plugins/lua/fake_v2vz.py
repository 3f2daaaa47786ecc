"""A fake `v2vz` client for the Resolve script tests: `edit`, `final` and `attach` with `--events jsonl` print the
events docs/events.md describes (submitted, queued, progress, frame, done) at once and write tiny PNG frames into
`--out DIR`, so that the Python and the Lua script can be run on the same timelines fast and deterministically.

$V2VZ_FAKE_STATE names a folder: jobs.json (every job: its folder and frames, for `final` and `attach`) and
calls.jsonl (every command line, for the tests to compare).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
STEPS = 4  # progress steps of the edit stage: each quarter is one console line


def value(args: list[str], flag: str, default: str = "") -> str:
    return args[args.index(flag) + 1] if flag in args else default


def emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


def main(args: list[str]) -> int:
    state = Path(os.environ["V2VZ_FAKE_STATE"])
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "calls.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(args) + "\n")
    registry = state / "jobs.json"
    jobs = json.loads(registry.read_text()) if registry.exists() else {}
    command = args[0] if args else ""
    if command == "attach":
        job = jobs.get(args[1])
        if job is None:
            emit({"type": "error", "error": "JobNotFound", "status": "NOT_FOUND", "message": f"no job {args[1]}"})
            print(f"error: no job {args[1]}", file=sys.stderr)
            return 2
        return replay(args[1], job)
    if command == "edit":
        frames, preview = int(value(args, "--frames", "1")), "--preview" in args
    elif command == "final":
        preview_job = jobs.get(args[1])
        if preview_job is None:
            print(f"error: no job {args[1]}", file=sys.stderr)
            return 2
        frames, preview = preview_job["frames"], False
    else:
        print(f"error: the fake client knows no {command!r}", file=sys.stderr)
        return 2
    out = Path(value(args, "--out"))
    if any(out.glob("frame_*.png")):
        print(f"error: {out} already holds frames", file=sys.stderr)
        return 2
    job_id = f"job{len(jobs) + 1:04d}"
    jobs[job_id] = {"out": str(out.resolve()), "frames": frames, "preview": preview}
    registry.write_text(json.dumps(jobs))
    emit({"type": "submitted", "job_id": job_id, "position": 0, "take": None, "output": None, "preview": preview})
    out.mkdir(parents=True, exist_ok=True)
    (out / "v2vz.json").write_text(json.dumps({"job": job_id, "args": args}))
    for index in range(frames):
        (out / f"frame_{index:06d}.png").write_bytes(PNG)
    return replay(job_id, jobs[job_id])


def replay(job_id: str, job: dict) -> int:
    """The job's events from `queued` to `done` (a finished job's history, as `v2vz attach` replays it)."""
    sequence = 0

    def event(kind: str, **fields) -> None:
        nonlocal sequence
        sequence += 1
        emit({"job_id": job_id, "sequence": sequence, "time": 1767225600.0 + sequence, "type": kind, **fields})

    def progress(stage: str, step: int, total: int) -> None:
        event("progress", stage=stage, step=step, total=total, cached=False, window=1, windows=1)

    out = Path(job["out"])
    paths = [str(out / f"frame_{index:06d}.png") for index in range(job["frames"])]
    event("queued", position=0)
    progress("start", 0, 1)
    progress("window", 1, 1)
    for step in range(1, STEPS + 1):
        progress("edit", step, STEPS)
    for index, path in enumerate(paths):
        event("frame", index=index, path=path)
    progress("write", 1, 1)
    event("done", output=None, frame_paths=paths, take=None, preview=job["preview"], sidecar=None, timings={},
          inversion_cached=False, seconds=0.01, frames=len(paths))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
