"""A busy machine: the README's sample edit idle and beside a synthetic CPU load, OpenMP's wait policy active vs
passive, and whether every run gave the same pixels (issue 23, items 17 and 18).

    python benchmarks/bench_busy.py [--load 6] [--rounds 1] [--steps 50] [--frames 8] [--cache-dir DIR]

Each run is the real command a user types, `v2vz edit sample.mp4 --local --model tiny ...` (as a subprocess, so
that OpenMP reads the policy when torch loads), with OMP_WAIT_POLICY=ACTIVE (OpenMP's own default, what v2vz ran
with before) or PASSIVE (what v2vz sets now unless the user chose a policy). The load is `--load` processes that
each spin in a busy loop and stop by themselves (after --load-seconds at most; they are ended after each loaded
run). Within a round the four runs alternate (idle active, idle passive, loaded active, loaded passive), so the
comparison stays within one run of the script even on a machine whose other work comes and goes; the figures are
medians over the rounds. The PNG frames of every run are compared with the first run's: they must be identical.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
V2VZ = str(Path(sys.executable).with_name("v2vz"))
PROMPTS = ["--source-prompt", "a red ball rolling over green grass", "--prompt", "a blue ball rolling over white snow"]


def start_load(processes: int, seconds: float) -> list[subprocess.Popen]:
    """`processes` busy loops, each ending by itself after `seconds` at most."""
    return [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)]) for _ in range(processes)]


def stop_load(load: list[subprocess.Popen]) -> None:
    for process in load:
        process.terminate()
    for process in load:
        process.wait()


# What OpenMP's threads do while they wait: spin for ever (ACTIVE), sleep at once (PASSIVE), libgomp's own default
# (spin about 300,000 rounds, then sleep), or spin a short while then sleep (GOMP_SPINCOUNT: what v2vz sets now).
POLICIES: dict[str, dict[str, str]] = {
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "gomp default": {"GOMP_SPINCOUNT": "300000"},  # libgomp's default when no policy is set
    "spin 10000": {"GOMP_SPINCOUNT": "10000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}
_CHOSEN_BY_V2VZ = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "KMP_LIBRARY", "OMP_NUM_THREADS")


def run_edit(clip: Path, out: Path, policy: str, args: argparse.Namespace) -> float:
    """The sample edit as the README runs it, with `policy`; its wall-clock seconds (start-up included)."""
    env = {name: value for name, value in os.environ.items() if name not in _CHOSEN_BY_V2VZ}
    env |= POLICIES[policy] | {"V2VZ_CACHE": str(args.cache_dir)}
    env.pop("MKL_NUM_THREADS", None)
    command = [V2VZ, "edit", str(clip), "--local", "--model", "tiny", *PROMPTS]
    command += ["--steps", str(args.steps), "--frames", str(args.frames), "--out", f"{out}/"]
    began = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def frames_of(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(path)) for path in sorted(folder.glob("frame_*.png"))]


def largest_difference(first: list[np.ndarray], other: list[np.ndarray]) -> int:
    if len(first) != len(other):
        return 255
    return max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(first, other, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=int, default=6, help="busy-loop processes of the synthetic load")
    parser.add_argument("--load-seconds", type=float, default=1800, help="a busy loop ends by itself after this")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("V2VZ_CACHE", "~/.cache/v2vz")))
    args = parser.parse_args()
    args.cache_dir = args.cache_dir.expanduser()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"bench_busy: {cpus} usable CPUs, load average {os.getloadavg()[0]:.1f} before the first run; "
        f"synthetic load: {args.load} busy loops; tiny, {args.steps} steps, {args.frames} frames",
        flush=True,
    )
    seconds: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="v2vz-bench-busy-") as folder:
        work = Path(folder)
        clip = work / "sample.mp4"
        subprocess.run([V2VZ, "sample-clip", str(clip)], check=True, stdout=subprocess.DEVNULL)
        env = dict(os.environ, V2VZ_CACHE=str(args.cache_dir))
        subprocess.run(
            [V2VZ, "edit", str(clip), "--local", "--model", "tiny", *PROMPTS, "--steps", "1", "--out", f"{work}/warm/"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # the built-in model is built once, outside the figures
        reference: list[np.ndarray] | None = None
        worst = 0
        for round_ in range(args.rounds):
            for condition in ("idle", "loaded"):
                load = start_load(args.load, args.load_seconds) if condition == "loaded" else []
                try:
                    for policy in POLICIES:
                        out = work / f"{round_}-{condition}-{policy}"
                        taken = run_edit(clip, out, policy, args)
                        seconds.setdefault((condition, policy), []).append(taken)
                        frames = frames_of(out)
                        reference = reference if reference is not None else frames
                        difference = largest_difference(reference, frames)
                        worst = max(worst, difference)
                        load_now = os.getloadavg()[0]
                        print(
                            f"round {round_ + 1}: {condition:6} {policy:12} {taken:7.1f} s  (load average "
                            f"{load_now:.1f}; largest pixel difference from the first run: {difference})",
                            flush=True,
                        )
                finally:
                    stop_load(load)
    print()
    median = {key: statistics.median(values) for key, values in seconds.items()}
    print("| wait policy | idle | loaded | loaded / idle |")
    print("|---|---|---|---|")
    for policy in POLICIES:
        idle, loaded = median[("idle", policy)], median[("loaded", policy)]
        print(f"| {policy} | {idle:.1f} s | {loaded:.1f} s | {loaded / idle:.1f}x |")
    print(f"pixels: {'identical in every run' if worst == 0 else f'differ, by up to {worst}/255'}")
    sys.exit(1 if worst else 0)


if __name__ == "__main__":
    main()
