"""Engine benchmarks: cross-frame attention, pipeline phases, the three inversions, CLI wall time and overhead.

    python benchmarks/bench_engine.py [--quick] [--device auto|cpu|cuda] [--sections attention,phases,inversions,cli]

Sections
- attention: dense cross-frame attention folded into one `scaled_dot_product_attention` call (`mode="dense"`) vs.
  the published implementation that repeats K/V for every frame (`mode="dense_kv_repeat"`): time and peak memory.
- phases: seconds per pipeline stage (encode, inversion, null-text, edit, decode) for `tiny` and `sd15-random`.
- inversions: null-text, direct and negative-prompt inversion (EditOptions.inversion) for `tiny` and `sd15-random`:
  cold edit and re-prompt (inversion from a saved file) times, each one's reconstruction error with target == source,
  and what each stores per window at 512x512; targets on the ratios (issue 13).
- cli: wall time of a whole `v2vz edit --local` subprocess, and the share of the engine's time that is not the
  models' own compute (UNet / VAE / text encoder forwards plus the null-text backward passes).

`--quick` is a reduced run (small attention cases, `tiny` phases and inversions at 10 steps, no sd15-random, no CLI)
for smoke tests.
Built-in models are read from (and built into, on first use) --cache-dir, $V2VZ_CACHE or ~/.cache/v2vz; building
sd15-random writes about 4 GB of float32 weights once. On a shared machine, check the "other processes used ... cores"
line printed after each section: other work on the CPUs skews every timing.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

SECTIONS = ("attention", "phases", "inversions", "cli")
SOURCE_PROMPT = "a red ball on green grass"
TARGET_PROMPT = "a blue ball on green grass"
RETARGET_PROMPT = "a green ball on green grass"  # the re-prompt of the inversions section
CLIP_SIZE = 256  # the synthetic clip is square, so --size S gives an S x S working size everywhere
CLIP_FRAMES = 24
EDIT_FRAMES = 8

# Targets printed next to the figures.
TARGET_CLI_SECONDS = 30.0
TARGET_OVERHEAD_PERCENT = 10.0
TARGET_FOLD_RATIO_FRAMES = 16
TARGET_FOLD_RATIO = 4.0  # folded peak <= 1/4 of the kv-repeat peak
TARGET_DIRECT_COLD = 2.0  # a direct cold edit at least 2x faster than a null-text one (1 inner step)
TARGET_DIRECT_REPROMPT = 1.25  # a direct re-prompt at least 1.25x faster than a null-text one (3 vs 4 frame groups)
TARGET_CACHED_REPROMPT = 5.0  # a re-prompt from the cache at least 5x faster than a null-text cold edit
INVERSIONS = ("null-text", "direct", "negative-prompt")
IDENTITY_FRAMES = 4  # frames of the target == source reconstruction (its own, shorter run)

CLI_RUNS = 2  # the CLI subprocess runs this often; the fastest counts
ATTENTION_REPEATS = 3  # timed calls per case at most
ATTENTION_BUDGET_S = 20.0  # ... but stop repeating once this much was spent on timed calls (at least one is made)


# ---------------------------------------------------------------------------------------------------------------
# Output: rich tables when rich is importable (it is a project dependency), plain text otherwise


class Report:
    def __init__(self, plain: bool = False) -> None:
        self.console = None
        if not plain:
            try:
                from rich.console import Console

                self.console = Console(width=None if sys.stdout.isatty() else 140, highlight=False)
            except ImportError:  # pragma: no cover - rich is a dependency
                self.console = None

    def heading(self, text: str) -> None:
        if self.console:
            self.console.rule(f"[bold]{text}")
        else:
            print(f"\n=== {text} ===")
        sys.stdout.flush()

    def line(self, text: str = "") -> None:
        if self.console:
            self.console.print(text, markup=False, soft_wrap=True)
        else:
            print(text)
        sys.stdout.flush()

    def table(self, title: str | None, columns: list[str], rows: list[list[Any]], right: set[int] = frozenset()):
        cells = [[str(c) for c in row] for row in rows]
        if self.console:
            from rich.table import Table

            table = Table(title=title, title_justify="left")
            for index, column in enumerate(columns):
                table.add_column(column, justify="right" if index in right else "left")
            for row in cells:
                table.add_row(*row)
            self.console.print(table)
        else:
            if title:
                print(title)
            widths = [
                max(len(columns[i]), *(len(r[i]) for r in cells)) if cells else len(columns[i])
                for i in range(len(columns))
            ]
            fmt = lambda values: "  ".join(  # noqa: E731
                v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
            )
            print(fmt(columns))
            print("  ".join("-" * w for w in widths))
            for row in cells:
                print(fmt(row))
        sys.stdout.flush()


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


def fmt_s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# ---------------------------------------------------------------------------------------------------------------
# Environment


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_ram() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return fmt_bytes(int(line.split()[1]) * 1024)
    except OSError:
        pass
    return "?"


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def _process_ticks() -> dict[int, tuple[int, str]]:
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            name = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[int(entry.name)] = (
            int(fields[11]) + int(fields[12]),
            name or stat[stat.index("(") : stat.rindex(")") + 1],
        )
    return ticks


def other_cpu_load(seconds: float = 1.0) -> str:
    """How busy the CPUs are while this process sleeps: other work on the machine skews every figure below."""
    before, procs_before = _cpu_ticks(), _process_ticks()
    time.sleep(seconds)
    after, procs_after = _cpu_ticks(), _process_ticks()
    if before is None or after is None or after[1] == before[1]:
        return "unknown (no /proc/stat)"
    cores = os.cpu_count() or 1
    busy = cores * (after[0] - before[0]) / (after[1] - before[1])
    hz = os.sysconf("SC_CLK_TCK")
    top = sorted(
        (
            ((procs_after[pid][0] - procs_before[pid][0]) / hz / seconds, procs_after[pid][1])
            for pid in procs_after
            if pid in procs_before and pid != os.getpid()
        ),
        reverse=True,
    )
    busiest = ", ".join(f"{100 * share:.0f}% {name[:70]}" for share, name in top[:3] if share >= 0.05)
    text = f"{busy:.2f} of {cores} cores busy with other work" + (f" ({busiest})" if busiest else "")
    if busy > 0.2:
        text += " - WARNING: the machine is not idle, timings below are unreliable"
    return text


@contextmanager
def others_during(report: Report, section: str) -> Iterator[None]:
    """Print how much CPU other processes used while a section ran (machine busy minus this process and its
    children), since a shared machine skews every timing."""
    before, own_before, start = _cpu_ticks(), os.times(), time.perf_counter()
    yield
    after, own_after, wall = _cpu_ticks(), os.times(), time.perf_counter() - start
    if before is None or after is None or wall <= 0:
        return
    own = sum(own_after[:4]) - sum(own_before[:4])  # user + system, self and waited-for children
    others = max(0.0, ((after[0] - before[0]) / os.sysconf("SC_CLK_TCK") - own) / wall)
    warning = " - WARNING: not idle, this section's timings are unreliable" if others > 0.2 else ""
    report.line(f"[{section}: {wall:.0f} s; other processes used {others:.2f} cores on average meanwhile{warning}]")


def print_environment(report: Report, device: torch.device, args: argparse.Namespace) -> None:
    import diffusers
    import transformers

    rows = [
        ["python", platform.python_version()],
        ["platform", platform.platform()],
        ["torch", torch.__version__],
        ["diffusers / transformers", f"{diffusers.__version__} / {transformers.__version__}"],
        ["device", str(device)],
        ["torch threads (intra / inter-op)", f"{torch.get_num_threads()} / {torch.get_num_interop_threads()}"],
        ["CPU", f"{cpu_model()} ({os.cpu_count()} logical cores), RAM {total_ram()}"],
    ]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        rows.append(["GPU", f"{props.name}, {fmt_bytes(props.total_memory)}, CUDA {torch.version.cuda}"])
    rows.append(["load average (1/5/15 min)", " ".join(f"{x:.2f}" for x in os.getloadavg())])
    rows.append(["CPU use by others (1 s sample)", other_cpu_load()])
    rows.append(["model cache", str(args.cache_dir)])
    rows.append(["mode", "quick" if args.quick else "full"])
    report.heading("Environment")
    report.table(None, ["", "value"], rows)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------------------
# 1. Attention: folded dense vs. K/V repeated per frame


def attention_inputs(spec: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    dtype = getattr(torch, spec["dtype"])
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (spec["clips"] * spec["frames"], spec["tokens"], spec["channels"])
    return tuple(torch.randn(shape, generator=generator, device=device, dtype=dtype) for _ in range(3))


def attention_calls(
    spec: dict, q, k, v, device: torch.device, after_warmup: Callable[[], None], after_first: Callable[[], None]
) -> list[float]:
    """Warm up on a 2-frame slice, then time full-size calls; the callbacks read the memory baseline and peak."""
    from v2vz_engine.cross_frame import frame_attention

    frames, heads, mode = spec["frames"], spec["heads"], spec["mode"]
    warm = min(2, frames)
    frame_attention(q[:warm], k[:warm], v[:warm], warm, heads, mode)
    synchronize(device)
    after_warmup()
    times: list[float] = []
    while len(times) < spec["repeats"] and (not times or sum(times) < spec["budget"]):
        start = time.perf_counter()
        out = frame_attention(q, k, v, frames, heads, mode)
        synchronize(device)
        times.append(time.perf_counter() - start)
        del out
        if len(times) == 1:
            after_first()
    return times


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _proc_status_kib("VmHWM") is not None


def attention_child(spec: dict) -> dict:
    """Runs in a fresh process (CPU): the resident-memory high-water mark's growth over the first full-size call.

    ru_maxrss is recorded too, but a child started with fork+exec inherits its parent's RSS at the fork as its
    ru_maxrss, which hides the call's peak whenever the parent is bigger than the child; so where Linux lets us,
    the peak is VmHWM (this process's own high-water mark), reset to the current RSS just before the call.
    """
    torch.set_num_threads(spec["threads"])
    device = torch.device("cpu")
    q, k, v = attention_inputs(spec, device)
    maxrss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # noqa: E731 - KiB on Linux
    marks: dict[str, int] = {}

    def after_warmup() -> None:
        marks["maxrss_base"] = maxrss()
        if _reset_peak_rss():
            marks["hwm_base"] = _proc_status_kib("VmHWM") * 1024

    def after_first() -> None:
        marks["maxrss_peak"] = maxrss()
        if "hwm_base" in marks:
            marks["hwm_peak"] = _proc_status_kib("VmHWM") * 1024

    times = attention_calls(spec, q, k, v, device, after_warmup, after_first)
    maxrss_delta = marks["maxrss_peak"] - marks["maxrss_base"]
    if "hwm_base" in marks:
        return {
            "times": times,
            "peak": marks["hwm_peak"] - marks["hwm_base"],
            "maxrss_delta": maxrss_delta,
            "method": "VmHWM",
        }
    return {"times": times, "peak": maxrss_delta, "maxrss_delta": maxrss_delta, "method": "ru_maxrss"}


def run_attention_case(spec: dict, device: torch.device) -> dict:
    if device.type == "cuda":
        try:
            q, k, v = attention_inputs(spec, device)
            marks: dict[str, int] = {}

            def after_warmup() -> None:
                torch.cuda.reset_peak_memory_stats(device)
                marks["base"] = torch.cuda.memory_allocated(device)

            def after_first() -> None:
                marks["peak"] = torch.cuda.max_memory_allocated(device)

            times = attention_calls(spec, q, k, v, device, after_warmup, after_first)
            return {"times": times, "peak": marks["peak"] - marks["base"]}
        except torch.cuda.OutOfMemoryError:
            return {"error": "out of memory"}
        finally:
            q = k = v = None
            gc.collect()
            torch.cuda.empty_cache()
    command = [sys.executable, str(Path(__file__).resolve()), "--attention-child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip().splitlines()[-1:]
        return {"error": f"child exited {done.returncode}: {reason}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_attention(report: Report, device: torch.device, args: argparse.Namespace, workdir: Path) -> dict:
    frame_counts = (4, 8) if args.quick else (4, 8, 16, 32)
    tokens = args.attn_tokens or (256 if args.quick else 4096 if device.type == "cuda" else 1024)
    side = int(tokens**0.5)
    clips, channels, heads = 2, 320, 8
    from v2vz_engine.models import compute_dtype

    dtype = compute_dtype(device)
    dtype_name = str(dtype).removeprefix("torch.")
    report.heading("1. Cross-frame attention: dense folded vs. K/V repeated per frame")
    grid = f"{side}x{side} latent" if side * side == tokens else f"{tokens} tokens"
    report.line(
        f"shape: {clips} clips x F frames, N={tokens} tokens per frame ({grid}), C={channels} channels, "
        f"{heads} heads (head dim {channels // heads}), {dtype_name}; q, k, v each ({clips}*F, {tokens}, {channels})."
    )
    report.line(
        "  folded: cross_frame.frame_attention(mode='dense') - q/k/v reshaped to (clips, F*N, C), one SDPA call."
    )
    report.line("  kv-repeat: mode='dense_kv_repeat' - K/V of all F frames repeated for every frame (published code).")
    if device.type == "cuda":
        report.line(
            "peak memory: torch.cuda.max_memory_allocated() during the first full-size call minus "
            "memory_allocated() with the inputs in place (reset_peak_memory_stats before)."
        )
    else:
        report.line(
            "peak memory: each case runs in a fresh child process (subprocess); peak = the process's resident-memory "
            "high-water mark after the first full-size call minus the same mark with the inputs allocated (after "
            "a 2-frame warm-up): the extra resident memory the call needs on top of its inputs. The mark is VmHWM "
            "from /proc/self/status, reset to the current RSS (/proc/self/clear_refs) just before the call; "
            "resource.getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux) is the fallback where /proc lacks it, "
            "and is not used first because a fork+exec child inherits the parent's RSS at fork as its ru_maxrss."
        )
    report.line(
        f"time: median of up to {ATTENTION_REPEATS} full-size calls (fewer once {ATTENTION_BUDGET_S:.0f} s were spent; "
        "n shown), after a warm-up call on a 2-frame slice; torch threads as above."
    )
    results: dict[tuple[int, str], dict] = {}
    rows = []
    for frames in frame_counts:
        for mode in ("dense", "dense_kv_repeat"):
            spec = dict(
                frames=frames,
                tokens=tokens,
                channels=channels,
                heads=heads,
                clips=clips,
                mode=mode,
                dtype=dtype_name,
                threads=torch.get_num_threads(),
                repeats=ATTENTION_REPEATS,
                budget=ATTENTION_BUDGET_S,
            )
            results[frames, mode] = result = run_attention_case(spec, device)
            if "error" in result:
                report.line(f"  F={frames} {mode}: {result['error']}")
        folded, repeated = results[frames, "dense"], results[frames, "dense_kv_repeat"]
        element = torch.tensor([], dtype=dtype).element_size()
        kv_bytes = 2 * clips * frames * frames * tokens * channels * element  # the repeated K and V alone
        ratio = (
            repeated["peak"] / folded["peak"]
            if "peak" in folded and "peak" in repeated and folded["peak"] > 0
            else None
        )
        cell = lambda r: fmt_s(statistics.median(r["times"]), 3) if "times" in r else r.get("error", "-")  # noqa: E731
        rows.append(
            [
                frames,
                f"{frames * tokens:,}",
                cell(folded),
                len(folded.get("times", [])),
                fmt_bytes(folded.get("peak")),
                cell(repeated),
                len(repeated.get("times", [])),
                fmt_bytes(repeated.get("peak")),
                fmt_bytes(kv_bytes),
                "-" if ratio is None else f"{ratio:.1f}x",
            ]
        )
    report.table(
        None,
        [
            "frames",
            "keys/query",
            "folded s",
            "n",
            "folded peak",
            "kv-repeat s",
            "n",
            "kv-repeat peak",
            "repeated K+V size",
            "peak ratio (kv/folded)",
        ],
        rows,
        right=set(range(10)),
    )
    methods = {r.get("method") for r in results.values() if "method" in r}
    if methods:
        compare = "; ".join(
            f"F={f}: {fmt_bytes(results[f, 'dense'].get('maxrss_delta'))} / "
            f"{fmt_bytes(results[f, 'dense_kv_repeat'].get('maxrss_delta'))}"
            for f in frame_counts
        )
        report.line(
            f"peak measured with {', '.join(sorted(methods))}; ru_maxrss deltas (folded / kv-repeat): {compare}"
        )
    target = [results.get((TARGET_FOLD_RATIO_FRAMES, mode)) for mode in ("dense", "dense_kv_repeat")]
    if all(r and "peak" in r for r in target) and target[0]["peak"] > 0:
        ratio = target[1]["peak"] / target[0]["peak"]
        report.line(
            f"target: folded peak <= 1/{TARGET_FOLD_RATIO:.0f} of kv-repeat peak at {TARGET_FOLD_RATIO_FRAMES} frames: "
            f"ratio {ratio:.1f}x -> {verdict(ratio >= TARGET_FOLD_RATIO)}"
        )
    else:
        report.line(f"target: folded vs kv-repeat peak at {TARGET_FOLD_RATIO_FRAMES} frames: not measured in this run")
    return results


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers for the engine sections


def sample_clip(folder: Path) -> Path:
    from v2vz.cli.sample import make_sample_clip

    return make_sample_clip(folder / "sample.mp4", frames=CLIP_FRAMES, width=CLIP_SIZE, height=CLIP_SIZE)


def clip_frames(path: Path, size: int):
    from v2vz_engine import media

    frames, info = media.read_frames(path, 0, EDIT_FRAMES)
    width, height = media.working_size(info.width, info.height, size)
    return media.resize_frames(frames, width, height)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------
# 2. Phases


def bench_phases(report: Report, device: torch.device, args: argparse.Namespace, workdir: Path) -> None:
    from v2vz.api.job import EditOptions
    from v2vz_engine.models import load_model
    from v2vz_engine.pipeline import VideoEditPipeline

    cuda = device.type == "cuda"
    tiny_steps = 10 if args.quick else 50
    sd15_steps = args.steps or (50 if cuda else 10)
    sd15_size = args.sd15_size or (512 if cuda else 64)
    cases = [("tiny", 64, tiny_steps)]
    if not args.quick:
        cases.append(("sd15-random", sd15_size, sd15_steps))
    report.heading("2. Pipeline phases (pipeline.edit -> EditResult.timings)")
    report.line(
        f"{EDIT_FRAMES} frames of the synthetic sample clip ({CLIP_SIZE}x{CLIP_SIZE}), inversion='null-text', default "
        f"EditOptions otherwise (dense attention, joint GroupNorm, 1 null-text inner step); '{SOURCE_PROMPT}' -> "
        f"'{TARGET_PROMPT}'. Each model is warmed up with a 2-step edit first; 'load' is load_model()."
    )
    if not args.quick and not cuda and sd15_steps != 50:
        report.line(f"sd15-random on CPU: {sd15_steps} steps (--steps; 50 is the method's default) at {sd15_size}px.")
    clip = sample_clip(workdir)
    stages = ("encode", "inversion", "null-text", "edit", "decode")
    step_stages = {"inversion", "null-text", "edit"}
    rows = []
    for name, size, steps in cases:
        start = time.perf_counter()
        model = load_model(name, device, args.cache_dir)
        load_s = time.perf_counter() - start
        pipeline = VideoEditPipeline(model)
        frames = clip_frames(clip, size)
        pipeline.edit(frames, SOURCE_PROMPT, TARGET_PROMPT, EditOptions(steps=2, inversion="null-text"))  # warm-up
        synchronize(device)
        start = time.perf_counter()
        result = pipeline.edit(frames, SOURCE_PROMPT, TARGET_PROMPT, EditOptions(steps=steps, inversion="null-text"))
        synchronize(device)
        wall = time.perf_counter() - start
        timings = dict(result.timings)
        label = f"{name} {frames.shape[2]}x{frames.shape[1]}, {steps} steps"
        rows.append([label, "load", fmt_s(load_s), "", ""])
        for stage in stages:
            seconds = timings.get(stage)
            per_step = f"{1000 * seconds / steps:.0f}" if seconds is not None and stage in step_stages else ""
            share = f"{100 * seconds / wall:.1f}%" if seconds is not None else ""
            rows.append(["", stage, fmt_s(seconds), per_step, share])
        rows.append(["", "edit() wall", fmt_s(wall), "", "100%"])
        del pipeline, model
        free_memory(device)
    report.table(None, ["model", "phase", "seconds", "ms / step", "share of edit()"], rows, right={2, 3, 4})
    report.line(
        "per step: inversion = 1 UNet pass over the frames; null-text = 3 passes + 1 backward + Adam; "
        "edit = 1 pass over 4x the frames (source/edit branches x uncond/cond)."
    )


# ---------------------------------------------------------------------------------------------------------------
# 3. Inversions: null-text, direct, negative-prompt


def timed(device: torch.device, function: Callable[[], Any]) -> tuple[float, Any]:
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


def stored_bytes(folder: Path) -> dict[str, int]:
    """File size of each inversion as stored for one window of 8 frames at 512x512 with SD 1.5 (50 steps)."""
    from v2vz_engine.inversion import Inversion

    steps, latent = 50, (EDIT_FRAMES, 4, 64, 64)
    z_T = torch.zeros(latent)
    entries = {
        "null-text": Inversion(z_T, torch.zeros(steps, 77, 768), {}, torch.zeros(steps, 2, dtype=torch.float64)),
        "direct": Inversion(z_T, trajectory=torch.zeros(steps + 1, *latent)),
        "negative-prompt": Inversion(z_T),
    }
    return {name: entry.save(folder / f"{name}-512.inv").stat().st_size for name, entry in entries.items()}


def measure_inversions(pipeline, frames, steps: int, runs: int, workdir: Path) -> dict[str, dict[str, Any]]:
    """Cold edit and re-prompt from the saved inversion of each inversion, interleaved run by run (so that a burst
    of other work on a shared machine hits them all alike), the fastest of `runs` each; then the target == source
    reconstruction of each."""
    from v2vz.api.job import EditOptions
    from v2vz_engine.inversion import Inversion

    device = pipeline.model.device
    results: dict[str, dict[str, Any]] = {m: {"cold": float("inf"), "reprompt": float("inf")} for m in INVERSIONS}
    for _ in range(runs):
        for method, figures in results.items():
            options = EditOptions(steps=steps, inversion=method)
            cold_s, cold = timed(device, lambda o=options: pipeline.edit(frames, SOURCE_PROMPT, TARGET_PROMPT, o))
            if cold_s < figures["cold"]:
                figures.update(cold=cold_s, timings=cold.timings)
            path = cold.inversion.save(workdir / f"{pipeline.model.name}-{method}.inv")
            figures["file"] = path.stat().st_size
            again = lambda o=options, p=path: pipeline.edit(  # noqa: E731
                frames, SOURCE_PROMPT, RETARGET_PROMPT, o, inversion=Inversion.load(p)
            )
            figures["reprompt"] = min(figures["reprompt"], timed(device, again)[0])
            free_memory(device)
    for method, figures in results.items():
        options = EditOptions(steps=steps, inversion=method)
        z0 = pipeline.encode_frames(frames[:IDENTITY_FRAMES], options)
        inversion, _ = pipeline.invert(z0, SOURCE_PROMPT, options)
        both = pipeline.sample(inversion, SOURCE_PROMPT, SOURCE_PROMPT, options, keep_source=True).latents
        figures["edit_error"] = ((both[IDENTITY_FRAMES:] - z0).norm() / z0.norm()).item()
        figures["source_error"] = ((both[:IDENTITY_FRAMES] - z0).norm() / z0.norm()).item()
        free_memory(device)
    return results


def bench_inversions(report: Report, device: torch.device, args: argparse.Namespace, workdir: Path) -> dict:
    from v2vz.api.job import EditOptions
    from v2vz_engine.models import load_model
    from v2vz_engine.pipeline import VideoEditPipeline

    cuda = device.type == "cuda"
    tiny_steps = 10 if args.quick else 50
    sd15_steps = args.steps or (50 if cuda else 10)
    sd15_size = args.sd15_size or (512 if cuda else 64)
    cases = [("tiny", 64, tiny_steps, 1 if args.quick else 3)]
    if not args.quick:
        cases.append(("sd15-random", sd15_size, sd15_steps, 3 if cuda else 2))
    retarget = RETARGET_PROMPT
    report.heading("3. Inversions: null-text, direct, negative-prompt (EditOptions.inversion)")
    report.line(
        f"{EDIT_FRAMES} frames of the synthetic clip, default options but the inversion (null-text: 1 inner step, as "
        f"published). cold = pipeline.edit() from frames (encode, inversion [, null-text], edit, decode); re-prompt "
        f"= Inversion.load() of the cold run's saved inversion + pipeline.edit('{retarget}') (what a cache hit "
        f"costs). Times are the best of n runs, the inversions taking turns, after a 2-step warm-up of each. "
        f"Reconstruction: ||z - z_0|| / ||z_0|| with target == source at guidance 7.5 on the first {IDENTITY_FRAMES} "
        "frames, for the edit branch (the output of an identity edit) and the source branch (whose maps steer it)."
    )
    figures: dict[str, dict] = {}
    for name, size, steps, runs in cases:
        model = load_model(name, device, args.cache_dir)
        pipeline = VideoEditPipeline(model)
        frames = clip_frames(sample_clip(workdir), size)
        for method in INVERSIONS:
            pipeline.edit(frames, SOURCE_PROMPT, TARGET_PROMPT, EditOptions(steps=2, inversion=method))
        results = measure_inversions(pipeline, frames, steps, runs, workdir)
        figures[name] = results
        rows = [
            [
                method,
                fmt_s(r["cold"]),
                ", ".join(f"{k} {v:.2f}" for k, v in r["timings"].items()),
                fmt_s(r["reprompt"]),
                f"{results['null-text']['cold'] / r['reprompt']:.2f}x",
                f"{r['edit_error']:.4f}",
                f"{r['source_error']:.3g}",
                fmt_bytes(r["file"]),
            ]
            for method, r in results.items()
        ]
        report.table(
            f"{name} {frames.shape[2]}x{frames.shape[1]}, {steps} steps, n={runs}",
            [
                "inversion",
                "cold s",
                "cold stages (s)",
                "re-prompt s",
                "null-text cold / re-prompt",
                "recon. edit branch",
                "recon. source branch",
                "stored",
            ],
            rows,
            right={1, 3, 4, 5, 6, 7},
        )
        null_text, direct = results["null-text"], results["direct"]
        checks = [
            ("direct cold edit vs null-text cold edit", null_text["cold"] / direct["cold"], TARGET_DIRECT_COLD),
            (
                "direct re-prompt vs null-text re-prompt",
                null_text["reprompt"] / direct["reprompt"],
                TARGET_DIRECT_REPROMPT,
            ),
            (
                "direct re-prompt from the cache vs null-text cold edit",
                null_text["cold"] / direct["reprompt"],
                TARGET_CACHED_REPROMPT,
            ),
        ]
        for label, ratio, target in checks:
            report.line(f"target: {label} >= {target}x: {ratio:.2f}x -> {verdict(ratio >= target)}")
        del pipeline, model
        free_memory(device)
    sizes = stored_bytes(workdir)
    report.line(
        "stored per window of 8 frames at 512x512, SD 1.5, 50 steps (Inversion.save of tensors of those shapes): "
        + ", ".join(f"{method} {fmt_bytes(size)}" for method, size in sizes.items())
        + f" (direct: {fmt_bytes(sizes['direct'] / EDIT_FRAMES)} per frame)"
    )
    figures["stored_512"] = sizes
    return figures


# ---------------------------------------------------------------------------------------------------------------
# 4. CLI wall time and engine overhead


class ComputeTimer:
    """Wall time spent inside the models: forward hooks on the UNet and text encoder, the VAE's encode/decode, and
    torch.Tensor.backward (the null-text optimization's only backward pass)."""

    def __init__(self, device: torch.device, profiler: cProfile.Profile | None = None) -> None:
        self.device = device
        self.profiler = profiler  # when given, it is paused inside the models: it then profiles the overhead only
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._starts: dict[str, float] = {}

    def _begin(self, name: str) -> None:
        if self.profiler:
            self.profiler.disable()
        synchronize(self.device)
        self._starts[name] = time.perf_counter()

    def _end(self, name: str) -> None:
        synchronize(self.device)
        self.seconds[name] += time.perf_counter() - self._starts.pop(name)
        self.calls[name] += 1
        if self.profiler:
            self.profiler.enable()

    def _timed(self, name: str, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            self._begin(name)
            try:
                return function(*args, **kwargs)
            finally:
                self._end(name)

        return timed

    @contextmanager
    def attached(self, model) -> Iterator[ComputeTimer]:
        handles = []
        for name, module in (("UNet forward", model.unet), ("text encoder forward", model.text_encoder)):
            handles.append(module.register_forward_pre_hook(lambda *_, n=name: self._begin(n)))
            handles.append(module.register_forward_hook(lambda *_, n=name: self._end(n)))
        # The engine calls vae.encode / vae.decode, never vae.forward, so forward hooks on the VAE would see nothing:
        # time those two methods instead (instance attributes shadow the class's methods; removed afterwards).
        for method in ("encode", "decode"):
            setattr(model.vae, method, self._timed(f"VAE {method}", getattr(model.vae, method)))
        original_backward = torch.Tensor.backward
        torch.Tensor.backward = self._timed("UNet backward (null-text)", original_backward)
        try:
            yield self
        finally:
            torch.Tensor.backward = original_backward
            for method in ("encode", "decode"):
                delattr(model.vae, method)
            for handle in handles:
                handle.remove()

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def cli_command(clip: Path, out: Path, device: torch.device, cache_dir: Path, steps: int) -> list[str]:
    script = Path(sys.executable).with_name("v2vz")
    if script.exists():
        prefix = [str(script)]
    elif shutil.which("v2vz"):
        prefix = [shutil.which("v2vz")]
    else:
        prefix = [sys.executable, "-c", "import sys; from v2vz.cli.main import app; sys.argv[0] = 'v2vz'; app()"]
    return prefix + [
        "edit",
        str(clip),
        "--local",
        "--model",
        "tiny",
        "--frames",
        str(EDIT_FRAMES),
        "--steps",
        str(steps),
        "--size",
        "64",
        "--inversion",
        "null-text",
        "--out",
        str(out),
        "--source-prompt",
        SOURCE_PROMPT,
        "--prompt",
        TARGET_PROMPT,
        "--device",
        device.type,
        "--cache-dir",
        str(cache_dir),
    ]


def bench_cli(report: Report, device: torch.device, args: argparse.Namespace, workdir: Path) -> None:
    from v2vz.api.job import EditJob, EditOptions
    from v2vz_engine.models import load_model
    from v2vz_engine.pipeline import VideoEditPipeline
    from v2vz_engine.run import run_job

    steps = 10 if args.quick else 50
    clip = sample_clip(workdir)
    report.heading("4. CLI wall time and engine overhead (tiny, 64x64, 8 frames, null-text)")
    command = cli_command(clip, workdir / "cli-out.mp4", device, args.cache_dir, steps)
    shown = ["v2vz" if c.endswith("/v2vz") else c for c in command]
    report.line("CLI: " + " ".join(f"'{c}'" if " " in c else c for c in shown))
    walls = []
    for _ in range(CLI_RUNS):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            report.line(f"the CLI failed (exit {done.returncode}):\n{done.stderr.strip()[-2000:]}")
            return
    cli_wall = min(walls)
    said = " ".join(done.stderr.split())  # rich wraps its last line at 80 columns in a pipe
    report.line(f"CLI said: {said[said.rfind('wrote ') :] if 'wrote ' in said else said[-300:]}")

    # The same job in-process, through run_job, after a warm-up job.
    model = load_model("tiny", device, args.cache_dir)
    pipeline = VideoEditPipeline(model)
    job = EditJob(
        source=clip,
        prompt=TARGET_PROMPT,
        source_prompt=SOURCE_PROMPT,
        frames=EDIT_FRAMES,
        options=EditOptions(steps=steps, size=64, inversion="null-text"),
        output=workdir / "engine-out.mp4",
        model="tiny",
    )
    run_job(dataclasses.replace(job, options=EditOptions(steps=2, size=64, inversion="null-text")), pipeline)  # warm
    runs = []
    for _ in range(1 if args.quick else 2):  # the faster of two runs: less exposed to other work on the machine
        pipeline._prompt_cache.clear()  # so each measured job encodes its prompts, as the CLI's does
        timer = ComputeTimer(device)
        with timer.attached(model):
            synchronize(device)
            start = time.perf_counter()
            result = run_job(job, pipeline)
            synchronize(device)
            runs.append((time.perf_counter() - start, timer, result))
    engine, timer, result = min(runs, key=lambda run: run[0])
    model_s = timer.total
    overhead = engine - model_s
    overhead_pct = 100 * overhead / engine
    startup = cli_wall - engine
    rows = [
        [
            f"CLI wall time (subprocess, start-up included; best of {CLI_RUNS}: {', '.join(map(fmt_s, walls))})",
            fmt_s(cli_wall),
            f"< {TARGET_CLI_SECONDS:.0f} s",
            verdict(cli_wall < TARGET_CLI_SECONDS),
        ],
        [f"engine time (run_job in-process, warmed up, best of {len(runs)})", fmt_s(engine), "", ""],
        ["model compute (sum below)", fmt_s(model_s), "", ""],
    ]
    for name in sorted(timer.seconds, key=timer.seconds.get, reverse=True):
        calls = timer.calls[name]
        label = f"  {name}: {calls} calls, {1000 * timer.seconds[name] / calls:.1f} ms each"
        rows.append([label, fmt_s(timer.seconds[name]), "", ""])
    rows += [
        ["overhead = engine - model compute", fmt_s(overhead), "", ""],
        [
            "overhead % of engine time",
            f"{overhead_pct:.1f}%",
            f"< {TARGET_OVERHEAD_PERCENT:.0f}%",
            verdict(overhead_pct < TARGET_OVERHEAD_PERCENT),
        ],
        ["start-up = CLI wall - engine time", fmt_s(startup), "", ""],
    ]
    report.table(None, ["", "seconds", "target", ""], rows, right={1})
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
    report.line(f"run_job stages (s): {stages}")
    report.line(
        "model compute = wall time inside forward pre/post hooks on model.unet and model.text_encoder (top-level "
        "modules only, so the attention processors count as UNet time), inside vae.encode / vae.decode (the engine "
        "never calls vae.forward), and inside torch.Tensor.backward (patched for the run: the null-text loss's "
        "backward through the UNet). Overhead is everything else in run_job: video decode/resize/encode, DDIM "
        "steps, Adam, processor installation, prompt handling, Python. Start-up = interpreter + imports + "
        "load_model + first-call (cold) costs of the CLI run."
    )
    if args.profile or overhead_pct >= TARGET_OVERHEAD_PERCENT:
        profile_engine(report, job, pipeline, device)
    del pipeline, model
    free_memory(device)


def profile_engine(report: Report, job, pipeline, device: torch.device) -> None:
    """cProfile of one more run_job, paused inside the models: where the overhead goes."""
    from v2vz_engine.run import run_job

    profiler = cProfile.Profile()
    timer = ComputeTimer(device, profiler)
    pipeline._prompt_cache.clear()
    with timer.attached(pipeline.model):
        profiler.enable()
        run_job(job, pipeline)
        profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(15)
    report.line(
        "cProfile of one more run_job, paused while inside the models (the same hooks as above), so it shows the "
        "overhead only (slowed by the profiler; cumulative times of frames that span a model call are cut short). "
        "Top 15 by own time:"
    )
    report.line(stream.getvalue().strip())


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced run for smoke tests (under a minute on CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--steps", type=int, help="sd15-random steps in 'phases' (default 50 on CUDA, 10 on CPU)")
    parser.add_argument("--sd15-size", type=int, help="sd15-random working size (default 512 on CUDA, 64 on CPU)")
    parser.add_argument("--attn-tokens", type=int, help="tokens per frame in 'attention' (default 1024 CPU, 4096 CUDA)")
    parser.add_argument("--cache-dir", type=Path, help="built-in model cache (default $V2VZ_CACHE or ~/.cache/v2vz)")
    parser.add_argument("--profile", action="store_true", help="always print a cProfile of the engine run in 'cli'")
    parser.add_argument("--plain", action="store_true", help="plain-text tables instead of rich")
    parser.add_argument("--attention-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.attention_child is None:
        sections = [s.strip() for s in args.sections.split(",") if s.strip()]
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
        args.sections = sections
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.attention_child is not None:
        print(json.dumps(attention_child(json.loads(args.attention_child))))
        return 0
    from v2vz.api.errors import V2vzError
    from v2vz_engine.models import cache_root, resolve_device

    try:
        device = resolve_device(args.device)
    except V2vzError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.cache_dir = cache_root(args.cache_dir)
    report = Report(args.plain)
    began = time.perf_counter()
    print_environment(report, device, args)
    sections = [s for s in SECTIONS if s in args.sections]
    if args.quick:
        sections = [s for s in sections if s != "cli"]
    with tempfile.TemporaryDirectory(prefix="v2vz-bench-") as tmp:
        workdir = Path(tmp)
        benches = {
            "attention": bench_attention,
            "phases": bench_phases,
            "inversions": bench_inversions,
            "cli": bench_cli,
        }
        for section in sections:
            with others_during(report, section):
                benches[section](report, device, args, workdir)
    report.line(
        f"\nbenchmark finished in {time.perf_counter() - began:.0f} s; CPU use by others now: {other_cpu_load()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
