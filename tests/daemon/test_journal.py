"""The daemon's SQLite job journal: queue order, atomic claims, events, cancellation and recovery after a crash."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from v2vz.api.job import EditJob, EditOptions
from v2vz_daemon.journal import Journal


class Clock:
    """A fake time.time that moves one second per call, so every timestamp is distinct and predictable."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def make_job(n: int = 0, **changes) -> EditJob:
    fields = dict(
        source=Path(f"/clips/clip{n}.mp4"),
        prompt=f"a jeep on snow {n}",
        source_prompt="a car on a road",
        start=n,
        frames=4,
        options=EditOptions(steps=20, seed=n),
        output=Path(f"/out/{n}.mp4"),
        model="tiny",
    )
    fields.update(changes)
    return EditJob(**fields)


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "state" / "journal.sqlite"  # the parent does not exist yet


@pytest.fixture
def journal(path):
    with Journal(path, clock=Clock()) as j:
        yield j


def kinds(journal: Journal, job_id: str) -> list[str]:
    return [event.kind for event in journal.events_after(job_id, 0)]


def test_submit_then_get_round_trips_the_job(journal, path):
    job = make_job(1, out_frames_dir=Path("/out/frames"), options=EditOptions.preset("published", steps=30))
    record = journal.submit(job, client="premiere", stream_frames=True)
    assert path.exists()
    assert len(record.job_id) == 12 and int(record.job_id, 16) >= 0
    assert record.state == "queued" and record.attempts == 0
    assert record.started is None and record.finished is None
    assert record.client == "premiere" and record.stream_frames is True
    assert record.result == {} and record.reason == "" and record.cancel_requested is False
    assert journal.get(record.job_id) == record
    assert journal.get(record.job_id).job == job
    assert journal.get("000000000000") is None


def test_list_is_newest_first_and_limited(journal):
    ids = [journal.submit(make_job(n)).job_id for n in range(5)]
    assert [r.job_id for r in journal.list()] == ids[::-1]
    assert [r.job_id for r in journal.list(limit=2)] == ids[:-3:-1]
    with pytest.raises(ValueError):
        journal.list(limit=0)


def test_queued_event_and_queue_position_are_1_based_in_submission_order(journal):
    ids = [journal.submit(make_job(n)).job_id for n in range(3)]
    assert [journal.events_after(i, 0)[0].payload for i in ids] == [{"position": p} for p in (1, 2, 3)]
    assert [journal.queue_position(i) for i in ids] == [1, 2, 3]
    journal.claim_next()
    assert [journal.queue_position(i) for i in ids] == [0, 1, 2]  # running is not queued
    late = journal.submit(make_job(9)).job_id
    assert journal.events_after(late, 0)[0].payload == {"position": 3}
    with pytest.raises(KeyError):
        journal.queue_position("nope")


def test_claim_next_takes_the_oldest_queued_job_once(journal):
    ids = [journal.submit(make_job(n)).job_id for n in range(3)]
    first = journal.claim_next()
    assert first.job_id == ids[0] and first.state == "running"
    assert first.attempts == 1 and first.started is not None and first.started > first.submitted
    assert journal.get(ids[0]) == first
    assert [journal.claim_next().job_id for _ in range(2)] == ids[1:]
    assert journal.claim_next() is None


def test_previews_run_ahead_of_queued_finals_each_in_submission_order(journal):
    finals = [journal.submit(make_job(n)).job_id for n in range(2)]
    previews = [journal.submit(make_job(n, preview=True)).job_id for n in (5, 6)]
    assert [journal.events_after(i, 0)[0].payload["position"] for i in finals + previews] == [1, 2, 1, 2]
    assert [journal.queue_position(i) for i in finals + previews] == [3, 4, 1, 2]
    late = journal.submit(make_job(7)).job_id
    assert journal.queue_position(late) == 5
    assert [journal.claim_next().job_id for _ in range(5)] == [*previews, *finals, late]


def test_a_journal_of_schema_1_is_migrated_and_keeps_its_queue(tmp_path):
    from v2vz_daemon import journal as journal_module

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in journal_module._split_sql(journal_module._SCHEMA_V1):
            db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (1)")
        record = make_job(1).to_dict()
        record["out_mp4"] = record.pop("output")  # as protocol 4 wrote it
        db.execute(
            "INSERT INTO jobs (job_id, state, job, submitted) VALUES ('aaaaaaaaaaaa', 'queued', ?, 1.0)",
            (__import__("json").dumps(record),),
        )
    db.close()
    with Journal(old) as migrated:
        preview = migrated.submit(make_job(2, preview=True)).job_id
        assert migrated.get("aaaaaaaaaaaa").job.output == Path("/out/1.mp4")
        assert [migrated.claim_next().job_id for _ in range(2)] == [preview, "aaaaaaaaaaaa"]
    with sqlite3.connect(old) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (2,)
    db.close()


@pytest.mark.parametrize("shared", [True, False], ids=["one-journal-many-threads", "one-journal-per-thread"])
def test_concurrent_claims_never_hand_out_a_job_twice(path, shared):
    setup = Journal(path)
    ids = {setup.submit(make_job(n)).job_id for n in range(40)}
    workers = 6
    journals = [setup] * workers if shared else [Journal(path) for _ in range(workers)]
    barrier = threading.Barrier(workers)
    claimed: list[list[str]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def claim_all(index: int) -> None:
        try:
            barrier.wait()
            while (record := journals[index].claim_next()) is not None:
                claimed[index].append(record.job_id)
        except BaseException as error:  # surfaced below: a thread's exception would otherwise be lost
            errors.append(error)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    everything = [job_id for got in claimed for job_id in got]
    assert len(everything) == len(set(everything)) == 40
    assert set(everything) == ids
    assert all(r.state == "running" and r.attempts == 1 for r in setup.list(limit=100))
    for j in set(journals):
        j.close()


def test_event_sequences_count_from_1_per_job(journal):
    a = journal.submit(make_job(1)).job_id
    b = journal.submit(make_job(2)).job_id
    journal.claim_next()
    e2 = journal.append_event(a, "progress", {"stage": "inversion", "step": 1, "total": 20})
    journal.append_event(b, "progress", {"stage": "decode", "step": 1, "total": 1})
    e3 = journal.append_event(a, "frame", {"index": 0, "path": "/out/frames/00000.png"})
    assert (e2.sequence, e3.sequence) == (2, 3)  # 1 is the queued event
    assert [e.sequence for e in journal.events_after(a, 0)] == [1, 2, 3]
    assert [e.sequence for e in journal.events_after(b, 0)] == [1, 2]
    assert journal.events_after(a, 1) == [e2, e3]
    assert journal.events_after(a, 3) == []
    assert e3.payload == {"index": 0, "path": "/out/frames/00000.png"} and e3.job_id == a
    with pytest.raises(KeyError):
        journal.events_after("nope", 0)


def test_concurrent_appends_get_distinct_consecutive_sequences(journal):
    job_id = journal.submit(make_job()).job_id
    journal.claim_next()

    def append(n: int) -> None:
        for step in range(25):
            journal.append_event(job_id, "progress", {"thread": n, "step": step})

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [e.sequence for e in journal.events_after(job_id, 0)] == list(range(1, 102))


def test_append_event_refuses_state_events_unknown_jobs_and_finished_jobs(journal):
    job_id = journal.submit(make_job()).job_id
    for kind in ("done", "failed", "cancelled", "queued", "bogus"):
        with pytest.raises(ValueError):
            journal.append_event(job_id, kind, {})
    with pytest.raises(KeyError):
        journal.append_event("nope", "progress", {})
    journal.claim_next()
    journal.finish(job_id, "done")
    with pytest.raises(ValueError):
        journal.append_event(job_id, "progress", {})
    assert kinds(journal, job_id) == ["queued", "done"]


def test_finish_records_result_and_its_event(journal):
    job_id = journal.submit(make_job()).job_id
    with pytest.raises(ValueError):
        journal.finish(job_id, "done")  # still queued: only a running job finishes
    journal.claim_next()
    with pytest.raises(ValueError):
        journal.finish(job_id, "running")
    result = {"output": "/out/0.mp4", "timings": {"inversion": 1.5}, "inversion_cached": False}
    journal.finish(job_id, "done", result=result)
    record = journal.get(job_id)
    assert record.state == "done" and record.result == result and record.finished > record.started
    last = journal.events_after(job_id, 0)[-1]
    assert (last.kind, last.payload) == ("done", {**result, "reason": ""})
    with pytest.raises(ValueError):
        journal.finish(job_id, "failed", "again")
    assert journal.get(job_id).state == "done"
    with pytest.raises(KeyError):
        journal.finish("nope", "done")


def test_cancel_queued_running_finished_and_unknown(journal):
    running, finished, queued = (journal.submit(make_job(n)).job_id for n in range(3))
    assert journal.claim_next().job_id == running
    assert journal.claim_next().job_id == finished
    journal.finish(finished, "failed", "boom", result={"code": "INTERNAL"})
    assert journal.events_after(finished, 1)[0].payload == {"code": "INTERNAL", "reason": "boom"}  # flat, for Failed

    assert journal.request_cancel(queued) == "cancelled"
    record = journal.get(queued)
    assert record.state == "cancelled" and record.finished is not None and record.reason
    assert kinds(journal, queued) == ["queued", "cancelled"]
    assert journal.claim_next() is None  # a cancelled job is never claimed

    assert journal.cancel_requested(running) is False
    assert journal.request_cancel(running) == "running"
    assert journal.get(running).state == "running" and journal.cancel_requested(running)
    assert journal.get(running).cancel_requested is True
    assert kinds(journal, running) == ["queued"]  # the worker writes the event when it actually stops
    journal.finish(running, "cancelled", "cancelled by the client")
    assert kinds(journal, running) == ["queued", "cancelled"]

    assert journal.request_cancel(finished) == "failed"
    assert journal.get(finished).reason == "boom"
    assert kinds(journal, finished) == ["queued", "failed"]
    assert journal.request_cancel(running) == "cancelled"  # already cancelled: unchanged, no second event
    assert kinds(journal, running) == ["queued", "cancelled"]

    with pytest.raises(KeyError):
        journal.request_cancel("nope")
    with pytest.raises(KeyError):
        journal.cancel_requested("nope")


def test_everything_survives_reopening_the_file(path):
    with Journal(path, clock=Clock()) as journal:
        done = journal.submit(make_job(1), client="resolve").job_id
        journal.claim_next()
        journal.append_event(done, "progress", {"stage": "edit", "step": 3, "total": 20})
        journal.finish(done, "done", result={"frame_paths": ["/out/a.png"]})
        waiting = journal.submit(make_job(2), stream_frames=True).job_id
        before = {r.job_id: r for r in journal.list()}
        events = {i: journal.events_after(i, 0) for i in (done, waiting)}
    with Journal(path) as journal:
        assert {r.job_id: r for r in journal.list()} == before
        assert {i: journal.events_after(i, 0) for i in (done, waiting)} == events
        assert journal.queue_position(waiting) == 1
        assert journal.append_event(waiting, "progress", {}).sequence == 2
        assert journal.claim_next().job_id == waiting


def crash_while_running(path: Path) -> str:
    """Claim the next job in another process that dies at once (os._exit: no close, no cleanup)."""
    script = textwrap.dedent(
        f"""
        import os
        from v2vz_daemon.journal import Journal
        record = Journal({str(path)!r}).claim_next()
        print(record.job_id, flush=True)
        os._exit(0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_recover_requeues_a_job_whose_daemon_died(path):
    with Journal(path) as journal:
        job_id = journal.submit(make_job(1)).job_id
        behind = journal.submit(make_job(2)).job_id
    assert crash_while_running(path) == job_id
    with Journal(path) as journal:
        assert journal.get(job_id).state == "running"  # nothing changes until recover()
        assert journal.recover() == [job_id]
        record = journal.get(job_id)
        assert record.state == "queued" and record.attempts == 1 and record.started is None
        assert journal.queue_position(job_id) == 1 and journal.queue_position(behind) == 2  # keeps its place
        last = journal.events_after(job_id, 0)[-1]
        assert (last.sequence, last.kind, last.payload) == (2, "queued", {"position": 1, "recovered": True})
        assert journal.recover() == []  # idempotent: nothing is running now
        again = journal.claim_next()
        assert again.job_id == job_id and again.attempts == 2


def test_recover_fails_a_job_after_max_attempts(path):
    with Journal(path) as journal:
        job_id = journal.submit(make_job()).job_id
    for attempt in (1, 2):
        journal = Journal(path)
        assert journal.claim_next().attempts == attempt
        del journal  # dropped without finishing: as far as the file knows, it is still running
        journal = Journal(path)
        assert journal.recover(max_attempts=3) == [job_id]
        journal.close()
    with Journal(path) as journal:
        assert journal.claim_next().attempts == 3
    with Journal(path) as journal:
        assert journal.recover(max_attempts=3) == []
        record = journal.get(job_id)
        assert record.state == "failed" and record.finished is not None
        assert record.reason.startswith("interrupted 3 times; the last attempt started at ")
        assert "resubmit it" in record.reason
        assert kinds(journal, job_id) == ["queued", "queued", "queued", "failed"]
        assert journal.events_after(job_id, 0)[-1].payload == {"reason": record.reason}
        assert journal.claim_next() is None


def test_recover_cancels_a_running_job_whose_cancel_was_pending(journal):
    job_id = journal.submit(make_job()).job_id
    journal.claim_next()
    journal.request_cancel(job_id)
    assert journal.recover() == []
    assert journal.get(job_id).state == "cancelled"
    assert kinds(journal, job_id) == ["queued", "cancelled"]


def test_a_newer_schema_or_a_foreign_file_is_refused_with_a_clear_error(tmp_path):
    newer = tmp_path / "newer.sqlite"
    Journal(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE schema_version SET version = 99")
    db.close()
    with pytest.raises(RuntimeError, match="newer v2vz"):
        Journal(newer)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RuntimeError, match="not a usable v2vz journal"):
        Journal(garbage)
