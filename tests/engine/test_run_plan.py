"""run_spans in steps (run.py): a job is checked and probed once on each side, and its windows are scheduled by the
links WindowPlan.depends_on says, not by a second copy of them."""

from __future__ import annotations

import dataclasses
from collections import Counter
from concurrent.futures import Future
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from v2vz.api.job import EditJob, EditOptions
from v2vz.cli.main import app
from v2vz_engine import media
from v2vz_engine.run import DeviceFacts, run_job, run_spans
from v2vz_engine.spans import ANCHOR_PASS, SpanResult
from v2vz_engine.windows import WindowPlan

from .test_windows import moving_ball_frames, write_lossless_clip

QUICK = EditOptions(steps=2, size=32, inversion="direct")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often EditJob.validate and media.resolve (a probe: an MKV's decodes the whole file) run."""
    counted: Counter[str] = Counter()
    validate, resolve = EditJob.validate, media.resolve

    def counting_validate(job: EditJob) -> None:
        counted["validate"] += 1
        validate(job)

    def counting_resolve(job: EditJob):
        counted["resolve"] += 1
        return resolve(job)

    monkeypatch.setattr(EditJob, "validate", counting_validate)
    monkeypatch.setattr(media, "resolve", counting_resolve)
    return counted


@pytest.fixture
def mkv(tmp_path: Path) -> Path:
    return write_lossless_clip(tmp_path / "clip.mkv", moving_ball_frames(6, 40, 24))


@pytest.mark.parametrize("out", ["--out", "--out-dir"], ids=["output file", "take"])
def test_local_edit_checks_its_job_once_and_the_engine_once_and_probes_the_clip_once(
    out: str, mkv: Path, tmp_path: Path, model_cache: Path, calls: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = tmp_path / ("edited.mp4" if out == "--out" else "takes")
    args = ["edit", str(mkv), "-p", "a blue ball", "-s", "a red ball", "--frames", "0", "--steps", "2"]
    args += ["--size", "32", "--inversion", "direct", out, str(target)]
    args += ["--local", "--model", "tiny", "--cache-dir", str(model_cache)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = target if out == "--out" else next(target.glob("*.mp4"))
    assert media.probe(written).frame_count == 6
    # The CLI's check before anything is reserved or loaded, then media.resolve's before the model loads; run_job
    # reads the clip with that probe instead of checking and probing it again.
    assert calls == {"validate": 2, "resolve": 1}


def test_run_job_with_the_info_of_a_resolved_job_neither_checks_nor_probes_it_again(
    pipeline, mkv: Path, tmp_path: Path, calls: Counter[str]
) -> None:
    job = EditJob(mkv, "a blue ball", "a red ball", frames=0, options=QUICK, out_frames_dir=tmp_path / "once")
    alone = run_job(job, pipeline)
    assert calls == {"validate": 1, "resolve": 1} and len(alone.frame_paths) == 6
    resolved, info = media.resolve(dataclasses.replace(job, out_frames_dir=tmp_path / "given"))
    calls.clear()
    given = run_job(resolved, pipeline, info=info)
    assert calls == {}
    assert [p.read_bytes() for p in given.frame_paths] == [p.read_bytes() for p in alone.frame_paths]


class InstantRunner:
    """A runner of `capacity` that returns each span's frames unedited at once, recording how many windows were
    in flight (submitted, not yet written) whenever it got one."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.submitted: list[tuple[int, ...]] = []
        self.in_flight_at_submit: list[int] = []
        self.written: set[int] = set()

    def facts(self, model: str) -> DeviceFacts:
        return DeviceFacts(native_size=32, dtype_bytes=2, free_bytes=None)

    def submit(self, task, anchors, progress, cancel) -> Future[SpanResult]:
        if task.window != ANCHOR_PASS:
            unwritten = [span for span in self.submitted if not set(span) <= self.written]
            self.in_flight_at_submit.append(len(unwritten))
            self.submitted.append(task.indices)
        future: Future[SpanResult] = Future()
        trajectories = torch.zeros(1, 2, len(task.trajectory_positions), 4, 1, 1)
        future.set_result(SpanResult(task.frames, trajectories))
        return future


@pytest.mark.parametrize(("links", "in_flight"), [("chained", [0, 0, 0, 0]), ("anchored", [0, 1, 2, 2])])
def test_windows_are_submitted_as_their_links_allow(links: str, in_flight: list[int], mkv_12: Path, tmp_path: Path):
    options = QUICK.replace(window=3, window_links=links)
    job = EditJob(mkv_12, "a blue ball", "a red ball", frames=0, options=options, out_frames_dir=tmp_path / links)
    runner = InstantRunner(capacity=3)
    result = run_spans(job, runner, on_frame=lambda index, path: runner.written.add(index))
    assert runner.in_flight_at_submit == in_flight
    assert [p.name for p in result.frame_paths] == [f"frame_{i:06d}.png" for i in range(12)]


def test_the_links_come_from_window_plan_depends_on(mkv_12: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """One place says which window waits for which: chained windows that depended on nothing would run at once."""
    monkeypatch.setattr(WindowPlan, "depends_on", lambda plan, index: ())
    options = QUICK.replace(window=3, window_links="chained")
    job = EditJob(mkv_12, "a blue ball", "a red ball", frames=0, options=options, out_frames_dir=tmp_path / "out")
    runner = InstantRunner(capacity=3)
    run_spans(job, runner, on_frame=lambda index, path: runner.written.add(index))
    assert runner.in_flight_at_submit == [0, 1, 2, 2]


@pytest.fixture
def mkv_12(tmp_path: Path) -> Path:
    return write_lossless_clip(tmp_path / "clip12.mkv", moving_ball_frames(12, 40, 24))
