"""Anchored windows (windows.py, spans.py): every window attends to anchor frames edited first, so no window needs
another, and run_spans writes the frames in clip order whatever order the windows finish in."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from v2vz.api.errors import Cancelled, InvalidArgument
from v2vz.api.job import EditJob, EditOptions
from v2vz_engine.run import LocalRunner, run_spans
from v2vz_engine.spans import ANCHOR_PASS, SpanTask, edit_span
from v2vz_engine.windows import plan_links, spread_anchors

from .test_windows import write_lossless_clip

SOURCE, TARGET = "a red ball on green grass", "a blue ball on green grass"
ANCHORED = EditOptions(steps=2, size=32, inversion="direct", window=4, anchors=2, window_links="anchored")


def test_spread_anchors_cover_the_range_evenly():
    assert spread_anchors(32, 3) == [0, 16, 31]  # round(15.5) is 16: banker's rounding of an exact half
    assert spread_anchors(12, 3) == [0, 6, 11]
    assert spread_anchors(2, 5) == [0, 1]
    assert spread_anchors(7, 1) == [0]


def test_plan_links_anchored_windows_depend_only_on_the_anchor_pass():
    plan = plan_links(32, 8, "anchored", 2)
    assert plan.anchor_frames == (0, 16, 31)
    assert [plan.depends_on(k) for k in range(4)] == [(-1,)] * 4
    assert plan.critical_path == 2
    chained = plan_links(32, 8, "chained", 2)
    assert chained.anchor_frames == () and chained.depends_on(3) == (2,) and chained.critical_path == 4
    single = plan_links(6, 8, "anchored", 2)  # fits in one window: no anchor pass
    assert single.anchor_frames == () and single.critical_path == 1


def test_window_links_is_validated():
    with pytest.raises(InvalidArgument, match="window_links must be one of chained, anchored"):
        EditOptions(window_links="ring").validate()


def _frames(count: int = 12, side: int = 32) -> np.ndarray:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * k, axis=1) for k in range(count)])


def _anchored(pipeline, frames: np.ndarray, order: list[int]) -> dict[int, np.ndarray]:
    """Edit frames as anchored windows of 4, the windows in `order`; returns each window's edited frames."""
    job = EditJob(source="clip", source_prompt=SOURCE, prompt=TARGET, frames=len(frames), options=ANCHORED)
    plan = plan_links(len(frames), 4, "anchored", 2)
    picks = plan.anchor_frames
    anchor_task = SpanTask(job, ANCHOR_PASS, picks, frames[list(picks)], trajectory_positions=tuple(range(len(picks))))
    anchors = edit_span(pipeline, anchor_task).anchors(picks)
    assert anchors is not None and anchors.trajectories.shape[:3] == (2, 2, 3)  # steps, branches, anchor frames
    results = {}
    for index in order:
        span = plan.windows[index]
        results[index] = edit_span(pipeline, SpanTask(job, index, tuple(span), frames[span.start : span.stop]), anchors)
    return {k: results[k].frames for k in range(len(plan.windows))}


def test_windows_in_any_order_give_the_same_frames_and_anchors_reach_every_window(pipeline):
    frames = _frames()
    forward = _anchored(pipeline, frames, [0, 1, 2])
    backward = _anchored(pipeline, frames, [2, 0, 1])
    for k in range(3):
        np.testing.assert_array_equal(forward[k], backward[k])
    # frame 2 is in window 0 and is no anchor: window 2 never sees it; frame 6 is an anchor: window 2 does
    changed = frames.copy()
    changed[2] = 255 - changed[2]
    assert np.array_equal(_anchored(pipeline, changed, [0, 1, 2])[2], forward[2])
    changed = frames.copy()
    changed[6] = 255 - changed[6]
    assert not np.array_equal(_anchored(pipeline, changed, [0, 1, 2])[0], forward[0])


class ShuffledRunner(LocalRunner):
    """Runs up to three windows at once on threads, the later a window the sooner it starts (as parallel workers
    may finish them), one at a time on the shared pipeline; records the order they ran in."""

    capacity = 3

    def __init__(self, pipeline) -> None:
        super().__init__(pipeline)
        self.ran: list[int] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(3)

    def submit(self, task, anchors, progress, cancel):
        if task.window == ANCHOR_PASS:
            self.ran.append(task.window)
            return super().submit(task, anchors, progress, cancel)

        def run():
            time.sleep(0.4 * (2 - task.window))
            with self._lock:
                self.ran.append(task.window)
                return edit_span(self.pipeline, task, anchors)

        return self._pool.submit(run)


def whole_clip(source: Path, frames_dir: Path, options: EditOptions) -> EditJob:
    """An edit of every frame of `source`, its PNGs in `frames_dir`."""
    return EditJob(
        source=str(source),
        source_prompt=SOURCE,
        prompt=TARGET,
        frames=0,
        out_frames_dir=str(frames_dir),
        options=options,
    )


def test_run_spans_writes_frames_in_order_once_whatever_order_windows_finish(pipeline, tmp_path: Path):
    job = whole_clip(write_lossless_clip(tmp_path / "clip.mp4", _frames(12)), tmp_path / "frames", ANCHORED)
    announced: list[int] = []
    runner = ShuffledRunner(pipeline)
    result = run_spans(job, runner, on_frame=lambda index, path: announced.append(index))
    assert announced == list(range(12))
    assert runner.ran == [ANCHOR_PASS, 2, 1, 0]  # the windows finished last to first
    plain = tmp_path / "plain"
    run_spans(EditJob(**{**job.__dict__, "out_frames_dir": str(plain)}), LocalRunner(pipeline))
    for shuffled, inorder in zip(result.frame_paths, sorted(plain.glob("*.png")), strict=True):
        assert shuffled.read_bytes() == inorder.read_bytes()


def test_single_window_is_the_same_in_both_modes_and_cancel_stops_the_anchor_pass(pipeline, tmp_path: Path):
    source = write_lossless_clip(tmp_path / "clip.mp4", _frames(4))
    outputs = {}
    for links in ("chained", "anchored"):
        job = whole_clip(source, tmp_path / links, ANCHORED.replace(window_links=links))
        outputs[links] = [p.read_bytes() for p in run_spans(job, LocalRunner(pipeline)).frame_paths]
    assert outputs["chained"] == outputs["anchored"]
    long = write_lossless_clip(tmp_path / "long.mp4", _frames(12))
    job = whole_clip(long, tmp_path / "c", ANCHORED)
    with pytest.raises(Cancelled, match="anchor frames"):
        run_spans(job, LocalRunner(pipeline), cancel=lambda: True)
    assert not list(tmp_path.glob("c/*.png"))  # nothing was written
