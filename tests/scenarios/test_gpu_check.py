"""benchmarks/gpu_check.py runs on the CPU at tiny sizes, so the script a lent GPU runs has not rotted meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
CHECKS = (
    "build and load the model",
    "bf16 vs fp32 UNet, relative L2 error",
    "null-text cold edit (4 frames, 64x64, 2 steps)",
    "null-text re-prompt from the cache",
    "direct cold edit (4 frames, 64x64, 2 steps)",
    "direct re-prompt from the cache",
    "preview of the same range (at most 10 steps, half the size)",
    "8 frames at 64x64 in windows, direct: peak",
    "window estimate vs measured peak above the weights, direct",
    "8 frames at 64x64 in windows, null-text: peak",
    "window estimate vs measured peak above the weights, null-text",
    "torch.compile (eager) of the UNet's blocks, direct edit: compiled / eager",
    "make tiny-xl on the device",
    "tiny-xl: 4 frames at 64x36, 2 steps, direct",
    "SDXL window estimate vs measured peak above the weights",
    "make tiny-wan on the device",
    "tiny-wan: FlowEdit, 9 frames at 64x48, 4 steps",
    "tiny-wan: 21 frames in latent windows of 9: peak vs one window",
)


def test_the_gpu_check_runs_every_check_on_the_cpu_quickly(model_cache, tmp_path):
    figures = tmp_path / "figures.json"
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--cache-dir", str(model_cache)]
    done = subprocess.run([*command, "--json", str(figures)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(figures.read_text())["rows"]
    assert [row["check"] for row in rows] == list(CHECKS)
    assert all(row["value"] not in ("", "skipped") for row in rows), rows
    by_check = {row["check"]: row for row in rows}
    bf16 = by_check["bf16 vs fp32 UNet, relative L2 error"]
    assert 0 < float(bf16["value"]) < 0.05 and bf16["verdict"] == "PASS"  # bf16 rounds, but only a little
    assert "2 windows of 4" in by_check["8 frames at 64x64 in windows, direct: peak"]["note"]
    table = done.stdout.splitlines()
    assert table[0].startswith("v2vz GPU check on CPU") and len(table) == 3 + len(CHECKS)
