"""A job's events as typed records: each form (journal record, wire message, JSON line) from one class, and back."""

from __future__ import annotations

import json

import pytest

from v2vz.api.events import JobOutcome, JobState, ProgressUpdate, Stage, event_to_dict
from v2vz.api.v1 import editor_pb2 as pb


def test_is_terminal_is_true_for_the_ended_states_only():
    assert [state for state in JobState if state.is_terminal()] == ["done", "failed", "cancelled"]
    assert not JobState("queued").is_terminal() and not JobState.RUNNING.is_terminal()


def test_a_progress_update_survives_the_journal_the_wire_and_the_json_line():
    retry = ProgressUpdate(Stage.RETRY, 1, 3, False, window=2, windows=4, reason="worker-2 died")
    record = json.loads(json.dumps(retry.to_record()))  # the journal stores JSON
    wire = ProgressUpdate.from_record(record).to_wire()
    assert wire == pb.Progress(stage="retry", step=1, total=3, window=2, windows=4, reason="worker-2 died")
    assert ProgressUpdate.from_wire(wire) == retry
    line = event_to_dict(pb.JobEvent(job_id="j", sequence=5, progress=wire))
    assert line == {"job_id": "j", "sequence": 5, "time": 0.0, "type": "progress", **record}
    assert "reason" not in ProgressUpdate(Stage.EDIT, 2, 50).to_record()  # only a retry has one


def test_a_progress_record_of_an_older_daemon_has_no_window():
    old = {"stage": "start", "step": 0, "total": 1, "cached": False}
    assert ProgressUpdate.from_record(old).to_wire() == pb.Progress(stage="start", step=0, total=1)


@pytest.mark.parametrize(
    "outcome",
    [
        JobOutcome(
            JobState.DONE,
            output="/o/out.mp4",
            frame_paths=("/o/f/00000.png",),
            timings={"edit": 1.5},
            seconds=2.0,
            frames=1,
            take=3,
            preview=True,
            sidecar="/o/out.mp4.json",
        ),
        JobOutcome(JobState.FAILED, reason="out of memory", code="RESOURCE_EXHAUSTED"),
        JobOutcome(JobState.CANCELLED, reason="cancelled before it started"),
    ],
)
def test_an_outcome_survives_the_journal_and_the_wire(outcome):
    payload = json.loads(json.dumps({**outcome.result(), "reason": outcome.reason}))  # Journal.finish's event
    restored = JobOutcome.from_record(outcome.state, payload)
    assert restored == outcome
    event = pb.JobEvent(job_id="j", sequence=9, **{outcome.state: restored.to_wire()})
    assert JobOutcome.from_wire(event) == outcome
    assert event_to_dict(event)["type"] == outcome.state


def test_the_out_mp4_of_protocol_4_journals_is_read_as_the_output():
    old = {"out_mp4": "/o/old.mp4", "frame_paths": ["/o/f/0.png", "/o/f/1.png"], "reason": ""}
    done = JobOutcome.from_record("done", old)
    assert (done.output, done.frames) == ("/o/old.mp4", 2)  # frames: counted from the paths when not recorded
    assert done.to_wire().output == "/o/old.mp4" and "out_mp4" not in done.result()
