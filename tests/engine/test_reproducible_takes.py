"""Takes re-made exactly whatever the machine's load, and a busy machine's speed (issue 23, items 17 and 18).

torch's CPU kernels cut their sums into one chunk per thread, so a job's pixels depend on the thread count: it is
decided in one place (v2vz.api.runtime_env.cpu_threads) and applied by the engine before every span. OpenMP's
waiting threads are set to spin only briefly (unless the user chose a wait policy) before torch loads, in every
process that runs the engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from v2vz.api import runtime_env
from v2vz.api.job import EditJob, EditOptions
from v2vz.api.runtime_env import (
    cgroup_cpu_limit,
    cpu_threads,
    physical_cores,
    prepare_environment,
)
from v2vz_engine.run import run_job
from v2vz_engine.spans import SpanTask, edit_span

from .test_windows import png, write_lossless_clip

OPTIONS = EditOptions(steps=6, size=64, inversion="direct")


def moving_ball(count: int = 4, size: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        ball = (x - 12 - 10 * i) ** 2 + (y - size / 2) ** 2 <= 64
        frames[i, ..., 0] = np.where(ball, 220, 40 + x * 2)
        frames[i, ..., 1] = np.where(ball, 40, 120 + y)
        frames[i, ..., 2] = np.where(ball, 30, 60)
    return frames


def span(tmp_path: Path) -> SpanTask:
    job = EditJob(
        source=tmp_path / "clip.mp4",
        prompt="a blue ball on white snow",
        source_prompt="a red ball on green grass",
        frames=4,
        options=OPTIONS,
        out_frames_dir=tmp_path / "out",
    )
    return SpanTask(job, 0, (0, 1, 2, 3), moving_ball(), trajectory_positions=(0, 1, 2, 3))


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------------------------
# Item 17: the same job gives the same pixels


def test_a_span_gives_the_same_latents_and_pixels_whatever_thread_count_the_process_was_left_with(
    pipeline, tmp_path, restore_threads
):
    """What a busy machine did: the thread count the kernels ran with was not the job's (MKL lowering it at run
    time, an inherited OMP_NUM_THREADS, another library's set_num_threads). The engine now sets the decided count
    before every span, so the latents (and so the pixels) are bit-identical."""
    decided = cpu_threads()
    first = edit_span(pipeline, span(tmp_path))
    assert torch.get_num_threads() == decided
    torch.set_num_threads(decided + 1)  # any other count: its chunks sum in another order
    second = edit_span(pipeline, span(tmp_path))
    assert torch.get_num_threads() == decided
    assert torch.equal(first.trajectories, second.trajectories)
    assert np.array_equal(first.frames, second.frames)


def test_the_thread_count_changes_the_latents_so_it_must_be_the_jobs(pipeline, tmp_path, restore_threads):
    """The cause, shown: the same span with one more thread gives other sums (why the count is fixed per job)."""
    import v2vz_engine.cpu as cpu

    decided = cpu_threads()
    first = edit_span(pipeline, span(tmp_path))
    cpu._chosen = decided + 1
    try:
        other = edit_span(pipeline, span(tmp_path))
    finally:
        cpu._chosen = None
    assert not torch.equal(first.trajectories, other.trajectories)


def test_the_thread_count_is_the_users_omp_num_threads_else_the_cores_this_process_may_use(monkeypatch):
    assert cpu_threads({"OMP_NUM_THREADS": "3"}) == 3
    assert cpu_threads({"OMP_NUM_THREADS": "5,2"}) == 5  # a nested list: the outer level is torch's
    monkeypatch.setattr(runtime_env, "allowed_cpus", lambda: {0})  # taskset -c 0 on a many-core machine
    monkeypatch.setattr(runtime_env, "cgroup_cpu_limit", lambda: None)
    assert cpu_threads({}) == cpu_threads({"OMP_NUM_THREADS": "0"}) == cpu_threads({"OMP_NUM_THREADS": "x"}) == 1
    monkeypatch.setattr(runtime_env, "allowed_cpus", lambda: set(range(16)))
    monkeypatch.setattr(runtime_env, "cgroup_cpu_limit", lambda: 3)  # docker --cpus 2.5
    assert cpu_threads({}) == 3


def test_hyperthreads_of_one_core_count_once(tmp_path):
    for cpu, core in enumerate([0, 1, 0, 1]):  # 4 logical CPUs on 2 cores
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert physical_cores({0, 2}, tmp_path) == 1
    assert physical_cores({0, 9}, tmp_path) == 2  # a topology that cannot be read: every CPU counts


def test_a_cgroup_cpu_quota_caps_the_count(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 3


def test_an_automatic_window_is_recorded_so_a_take_is_re_made_exactly_with_other_memory_free(
    pipeline, tmp_path, monkeypatch
):
    """The same kind of fault beside it: the default window is chosen from the memory free when the job starts, so
    a machine busy with other work gave the same job other windows, and other pixels. The sidecar records the
    windows as edited: `--window` with the first one's length re-makes the take exactly."""
    import dataclasses
    import json

    import v2vz_engine.methods as methods

    clip = write_lossless_clip(tmp_path / "clip.mp4", moving_ball())
    job = dataclasses.replace(span(tmp_path).job, source=clip)  # the options of `span`: an automatic window

    def edit(out: str, free_bytes: int | None, window: int = 0) -> tuple[list[np.ndarray], dict]:
        monkeypatch.setattr(methods, "free_memory_bytes", lambda device: free_bytes)  # DeviceFacts.of reads it
        edited = dataclasses.replace(job, out_frames_dir=tmp_path / out, options=OPTIONS.replace(window=window))
        result = run_job(edited, pipeline)
        return [png(path) for path in result.frame_paths], json.loads(result.sidecar.read_text())

    busy, busy_record = edit("busy", free_bytes=130 * 2**20)  # room for 2 frames of 64x64 at a time
    assert busy_record["windows"] == [[0, 2], [2, 4]]
    assert busy_record["cpu_threads"] == cpu_threads()  # the other half of what a re-make elsewhere must match
    idle, idle_record = edit("idle", free_bytes=None)
    assert idle_record["windows"] == [[0, 4]]
    assert any(not np.array_equal(a, b) for a, b in zip(busy, idle, strict=True))  # why it must be recorded
    window = busy_record["windows"][0][1] - busy_record["windows"][0][0]
    remade, remade_record = edit("remade", free_bytes=None, window=window)
    assert remade_record["windows"] == busy_record["windows"]
    assert all(np.array_equal(a, b) for a, b in zip(busy, remade, strict=True))


# ------------------------------------------------------------------------------------------------------------------
# Item 18: OpenMP threads spin briefly, then sleep, unless the user chose otherwise


def test_the_spin_is_short_and_the_thread_count_fixed_unless_the_user_set_them():
    environ: dict[str, str] = {}
    added = prepare_environment(environ)
    assert added == {"GOMP_SPINCOUNT": "10000", "OMP_DYNAMIC": "FALSE", "MKL_DYNAMIC": "FALSE"}
    assert "OMP_WAIT_POLICY" not in environ
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}, {"KMP_BLOCKTIME": "200"}):
        before = dict(chosen)
        prepare_environment(chosen)
        assert chosen == before | {"OMP_DYNAMIC": "FALSE", "MKL_DYNAMIC": "FALSE"}
    kept = {"OMP_DYNAMIC": "TRUE"}
    prepare_environment(kept)
    assert kept["OMP_DYNAMIC"] == "TRUE"


def test_the_v2vz_command_sets_the_policy_before_anything_loads_torch():
    """The console script's module sets it at import, and importing it loads no torch (OpenMP reads it then)."""
    chosen_by_v2vz = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DYNAMIC")
    env = {name: value for name, value in os.environ.items() if name not in chosen_by_v2vz}
    code = (
        "import sys, os; import v2vz.cli.main; "
        "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_DYNAMIC'), 'torch' in sys.modules)"
    )
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["10000", "FALSE", "False"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.split()[0] == "None"  # the user's policy stands alone
