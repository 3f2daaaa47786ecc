"""Anchored vs. chained windows: how visible a window boundary is in the edited frames, and what each mode costs.

    python benchmarks/bench_window_links.py [--models tiny,sd15-random] [--frames 32] [--window 8] [--steps 10]
        [--size 64] [--start 60] [--repeats 2] [--compare-at working|png] [--device auto|cpu|cuda]

For each model in --models and each mode in --modes, `run_job` edits the same range of a real clip (--frames frames of
--clip from --start, windows of --window frames, --anchors anchors, --steps steps, working long side --size, the
default inversion unless --inversion says otherwise, the same seed), one job after another in this one process,
after a one-step warm-up job per model; each job runs --repeats times (default 2), the modes in alternating order.
"chained": every window attends to the clip's first frame and the last `anchors` frames of the previous window, so
windows run one after another. "anchored" (after Fairy, Wu et al. 2024): `anchors + 1` frames spread over the range
are edited together first (the anchor pass) and every window attends to those only, so with workers to spare all
windows could run at once.

Figures, on the edited PNGs (JobResult.frame_paths; 8-bit, written at the clip's own size):
- --compare-at working (default): each PNG is resized back to the working size with media.resize_frames (the
  engine's antialiased bicubic), and the source frames are resized to the working size the same way: both sides are
  compared at the resolution the model edited at, where no upscaling smooths the differences.
- --compare-at png: the PNGs as written; the source frames go to the working size and back up to the clip's size
  (the path the edited frames take), so that both sides carry the same detail.
- boundary jump: mean absolute difference (0..255) between frames k-1 and k where k starts a window, averaged over
  the window boundaries; inside jump: the same over neighbouring frames of one window; ratio: boundary / inside
  (1.0: a boundary looks like any other frame step). The same figures of the SOURCE frames give the clip's own
  baseline ratio (motion is not uniform), and "/ source" is the edit's ratio divided by the source's. "local" is
  the same ratio taken per boundary against the two steps beside it (k-2 -> k-1 and k -> k+1, both inside a window),
  then averaged: less sensitive to motion that changes over the range, with as few boundaries as a short run has.
- vs source: mean absolute difference between each edited frame and its source frame (how far the edit moved).
- time: wall seconds of each job here, the fastest of its runs (one process, one worker: a ratio between modes on
  this machine, not a cluster figure); the PNG writing (frames upscaled to the clip's size) is part of it and shown
  apart. Anchored runs one extra edit, the anchor pass, of anchors + 1 frames (each read with its own seek); its
  windows do not depend on one another. A window's edit is timed from the previous window's last frame on disk (or
  the anchor pass's end, or the job's start) to its own first frame (windows run one at a time here). "critical
  path" is the number of edits that must run one after another however many workers there are
  (WindowPlan.critical_path); "edit path s" the seconds of those edits as measured: all windows' edits for chained,
  the anchor pass plus the slowest window for anchored. "est. parallel s" is, for anchored, the time to the anchor
  pass's end plus the slowest window's edit plus all the PNG writing (the coordinator writes every frame, in order):
  an estimate of the job on enough workers that leaves out transfers and scheduling; for chained the job's own time.

Timings are few samples (see the "other processes used" line); the jump figures come from the first run, and the
script says whether every run of a job gave the same frames. The built-in models have random weights, so these
figures measure how each linking keeps neighbouring frames consistent, not how good an edit looks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import Report, fmt_s, others_during, print_environment  # noqa: E402 - a sibling script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "clips" / "bigbuckbunny.mp4"
SOURCE_PROMPT = "a big white rabbit in a green meadow"
TARGET_PROMPT = "a big grey cat in a green meadow"
MODES = ("chained", "anchored")
CUT_FACTOR = 4.0  # a source step this many times the median step is reported as a possible cut


def pair_jumps(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference (0..255) of each neighbouring pair: entry k-1 is frames k-1 -> k."""
    values = frames.astype(np.int16)
    return np.abs(values[1:] - values[:-1]).reshape(len(frames) - 1, -1).mean(axis=1)


def split_jumps(jumps: np.ndarray, windows: list[range]) -> tuple[list[float], list[float]]:
    """The pair jumps across window boundaries and those inside a window (clip order)."""
    starts = {w.start for w in windows if w.start > 0}
    boundary = [float(jumps[k - 1]) for k in range(1, len(jumps) + 1) if k in starts]
    inside = [float(jumps[k - 1]) for k in range(1, len(jumps) + 1) if k not in starts]
    return boundary, inside


def figures(frames: np.ndarray, windows: list[range]) -> dict:
    jumps = pair_jumps(frames)
    boundary, inside = split_jumps(jumps, windows)
    b, i = float(np.mean(boundary)), float(np.mean(inside))
    starts = {w.start for w in windows}
    local = []
    for k in sorted(starts - {0}):
        # the steps k-2 -> k-1 and k -> k+1 exist and lie inside a window (both windows have 2+ frames)
        if 2 <= k <= len(jumps) - 1 and k - 1 not in starts and k + 1 not in starts:
            beside = (jumps[k - 2] + jumps[k]) / 2
            local.append(float(jumps[k - 1] / beside) if beside > 0 else float("nan"))
    return {
        "boundary": b,
        "inside": i,
        "ratio": b / i if i > 0 else float("nan"),
        "local": float(np.mean(local)) if local else float("nan"),
        "per_boundary": boundary,
    }


def read_pngs(paths: list[Path]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny", help="comma-separated built-in models (tiny, sd15-random)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--start", type=int, default=60, help="first frame of the range in the clip")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--anchors", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64, help="working long side")
    parser.add_argument(
        "--inversion", default=None, help="direct, null-text or negative-prompt (default: EditOptions')"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of each job; timings are the fastest's")
    parser.add_argument("--compare-at", choices=("working", "png"), default="working")
    parser.add_argument("--prompt", default=TARGET_PROMPT)
    parser.add_argument("--source-prompt", default=SOURCE_PROMPT)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("V2VZ_CACHE", "~/.cache/v2vz")))
    parser.add_argument("--keep", action="store_true", help="keep the edited frames (their folder is printed)")
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args(argv)

    from v2vz.api.events import Stage
    from v2vz.api.job import EditJob, EditOptions
    from v2vz_engine import media
    from v2vz_engine.models import load_model
    from v2vz_engine.pipeline import VideoEditPipeline
    from v2vz_engine.run import run_job
    from v2vz_engine.windows import plan_links, plan_windows

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    args.cache_dir = args.cache_dir.expanduser()
    args.quick = False
    modes = args.modes.split(",")
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")
    report = Report(args.plain)
    print_environment(report, device, args)

    options = EditOptions(steps=args.steps, size=args.size, window=args.window, anchors=args.anchors)
    if args.inversion:
        options = options.replace(inversion=args.inversion)
    options.validate()
    info = media.probe(args.clip)
    width, height = media.working_size(info.width, info.height, args.size)
    windows = plan_windows(args.frames, args.window)
    source_full, _ = media.read_frames(args.clip, args.start, args.frames)
    source_small = media.resize_frames(source_full, width, height)
    if args.compare_at == "working":
        source_cmp, compare_size = source_small, (width, height)
    else:
        source_cmp, compare_size = media.resize_frames(source_small, info.width, info.height), (info.width, info.height)
    source = figures(source_cmp, windows)

    report.heading(f"Window links: {args.clip.name} frames {args.start}..{args.start + args.frames - 1}")
    report.line(
        f"clip {info.width}x{info.height}, working {width}x{height}, windows of {args.window} ({len(windows)} "
        f"windows), anchors {args.anchors}, {args.steps} steps, inversion {options.inversion}, compared at "
        f"{compare_size[0]}x{compare_size[1]} ({args.compare_at}), {device}"
    )
    for mode in modes:
        plan = plan_links(args.frames, args.window, mode, args.anchors)
        extra = f", anchor frames {list(plan.anchor_frames)} (within the range)" if plan.anchored else ""
        report.line(f"{mode}: windows {[f'{w.start}..{w.stop - 1}' for w in plan.windows]}{extra}")
    steps = pair_jumps(source_cmp)
    median = float(np.median(steps))
    cuts = [args.start + k + 1 for k, v in enumerate(steps) if v > CUT_FACTOR * median]
    report.line(
        f"source steps: median {median:.2f}, min {steps.min():.2f}, max {steps.max():.2f}"
        + (f"; possible cuts before clip frames {cuts}" if cuts else "; no step above 4x the median (no cut)")
    )

    def measure(the_job: EditJob, mode: str) -> dict:
        """Run one job; its edited frames at the comparison size and its timings."""
        marks: dict[str, float] = {}
        announced: dict[int, float] = {}

        def progress(stage, step, total, cached=False, window_of=None) -> None:
            if stage == Stage.ANCHORS:
                marks[f"anchors-{step}"] = time.perf_counter()

        def on_frame(index, path) -> None:
            announced[index] = time.perf_counter()

        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        result = run_job(the_job, pipeline, progress=progress, on_frame=on_frame)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total = time.perf_counter() - began
        assert [range(w.start, w.stop) for w in result.windows] == windows, result.windows
        assert tuple(result.working_size) == (width, height), result.working_size
        edited = read_pngs(result.frame_paths)
        if args.compare_at == "working":
            edited = media.resize_frames(edited, width, height)
        if not args.keep:
            shutil.rmtree(the_job.out_frames_dir, ignore_errors=True)
        plan = plan_links(args.frames, args.window, mode, args.anchors)
        anchor_s = marks["anchors-1"] - marks["anchors-0"] if plan.anchored else None
        # Windows run one at a time in this process: window k's edit is timed from the previous window's last frame
        # on disk (or the anchor pass's end, or the job's start) to its own first frame, so the PNG writing of the
        # previous window is not counted in it.
        window_s, last = [], marks.get("anchors-1", began)
        for w in windows:
            window_s.append(announced[w.start] - last)
            last = announced[w.stop - 1]
        write_s = result.timings.get("write", 0.0)
        if plan.anchored:
            edit_path = anchor_s + max(window_s)
            parallel = marks["anchors-1"] - began + max(window_s) + write_s
        else:
            edit_path = sum(window_s)
            parallel = total
        return {
            "edited": edited,
            "total": total,
            "anchor_s": anchor_s,
            "window_s": window_s,
            "write_s": write_s,
            "critical": plan.critical_path,
            "edit_path": edit_path,
            "parallel": parallel,
        }

    workdir = Path(tempfile.mkdtemp(prefix="v2vz-bench-links-"))
    readings = []
    try:
        for model in args.models.split(","):
            with others_during(report, model):
                pipeline = VideoEditPipeline(load_model(model, str(device), args.cache_dir))

                def job(mode: str, name: str, frames: int, opts: EditOptions = options, model: str = model) -> EditJob:
                    return EditJob(
                        source=args.clip,
                        prompt=args.prompt,
                        source_prompt=args.source_prompt,
                        start=args.start,
                        frames=frames,
                        options=opts.replace(window_links=mode),
                        out_frames_dir=workdir / f"{model}-{name}",
                        model=model,
                    )

                warm = min(args.frames, args.window + 2)  # two windows, so anchors are exercised too
                run_job(job("chained", "warm-up", warm, options.replace(steps=1)), pipeline)
                runs: dict[str, list[dict]] = {mode: [] for mode in modes}
                for repeat in range(args.repeats):
                    # Alternate the order, so that neither mode always runs on a machine the other just warmed.
                    for mode in modes if repeat % 2 == 0 else modes[::-1]:
                        runs[mode].append(measure(job(mode, f"{mode}-{repeat}", args.frames), mode))
                results = {}
                for mode, done in runs.items():
                    found = dict(min(done, key=lambda r: r["total"]))  # timings: the fastest run
                    found["totals"] = [r["total"] for r in done]
                    found["deterministic"] = all(np.array_equal(r["edited"], done[0]["edited"]) for r in done)
                    found.update(figures(done[0]["edited"], windows))
                    found["vs_source"] = float(np.abs(done[0]["edited"].astype(np.int16) - source_cmp).mean())
                    results[mode] = found
            for mode, found in results.items():
                report.line(
                    f"  {model} {mode}: boundary jumps {', '.join(f'{v:.2f}' for v in found['per_boundary'])}; "
                    f"job seconds {', '.join(f'{v:.1f}' for v in found['totals'])} "
                    f"({same_frames(found)}); fastest run: "
                    f"window edits {', '.join(f'{v:.1f}' for v in found['window_s'])} s, PNG writing "
                    f"{found['write_s']:.1f} s in all"
                )
            readings.append((model, results))
    finally:
        if args.keep:
            report.line(f"edited frames kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report.line(f"  source: boundary jumps {', '.join(f'{v:.2f}' for v in source['per_boundary'])}")
    rows = [
        ["source", "(clip)", *consistency_cells(source, source)],
        *(
            [model, mode, *consistency_cells(found, source)]
            for model, results in readings
            for mode, found in results.items()
        ),
    ]
    report.table(
        f"Consistency (mean absolute difference, 0..255, at {compare_size[0]}x{compare_size[1]})",
        [
            "model",
            "mode",
            "boundary jump",
            "inside jump",
            "boundary / inside",
            "/ source",
            "local",
            "local / source",
            "vs source",
        ],
        rows,
        right=set(range(2, 9)),
    )
    rows = []
    for model, results in readings:
        base = results.get("chained")
        for mode, found in results.items():
            rows.append(
                [
                    model,
                    mode,
                    fmt_s(found["total"], 1),
                    f"{found['total'] / base['total']:.2f}" if base else "-",
                    fmt_s(found["anchor_s"], 1),
                    fmt_s(found["write_s"], 1),
                    found["critical"],
                    fmt_s(found["edit_path"], 1),
                    fmt_s(found["parallel"], 1),
                ]
            )
    report.table(
        f"Time on this machine (one worker; fastest of {args.repeats} run(s))",
        [
            "model",
            "mode",
            "job s",
            "job / chained",
            "anchor pass s",
            "PNG writing s",
            "critical path (edits)",
            "edit path s",
            "est. parallel s",
        ],
        rows,
        right=set(range(2, 9)),
    )
    report.line(reading(source, readings))
    return 0


def same_frames(found: dict) -> str:
    if len(found["totals"]) < 2:
        return "one run"
    return "identical frames in every run" if found["deterministic"] else "the runs' frames DIFFER"


def consistency_cells(found: dict, source: dict) -> list[str]:
    return [
        f"{found['boundary']:.2f}",
        f"{found['inside']:.2f}",
        f"{found['ratio']:.3f}",
        f"{found['ratio'] / source['ratio']:.3f}",
        f"{found['local']:.3f}",
        f"{found['local'] / source['local']:.3f}",
        f"{found.get('vs_source', 0.0):.2f}",
    ]


def reading(source: dict, readings: list[tuple[str, dict]]) -> str:
    """One paragraph that says what the table shows, and nothing it does not."""

    def same(x: float, y: float) -> str:
        if abs(x - y) <= 0.05 * max(abs(x), abs(y)):
            return "about the same as"
        return "below" if x < y else "above"

    parts = [
        f"Reading: the source's own boundary/inside ratio is {source['ratio']:.2f} (local {source['local']:.2f}): "
        "an edit's ratios are read against these."
    ]
    for model, results in readings:
        for mode, found in results.items():
            parts.append(
                f"On {model}, {mode} windows: inside jump {found['inside']:.2f} against the source's "
                f"{source['inside']:.2f} ({found['inside'] / source['inside']:.1f}x), boundary/inside "
                f"{found['ratio']:.2f} ({found['ratio'] / source['ratio']:.2f}x the source's), local "
                f"{found['local']:.2f} ({found['local'] / source['local']:.2f}x)."
            )
        if "chained" not in results or "anchored" not in results:
            continue
        c, a = results["chained"], results["anchored"]
        cn, an = c["ratio"] / source["ratio"], a["ratio"] / source["ratio"]
        cl, al = c["local"] / source["local"], a["local"] / source["local"]
        count = len(c["per_boundary"])
        parts.append(
            f"Anchored's normalized ratio {an:.2f} is {same(an, cn)} chained's {cn:.2f} (local {al:.2f}, "
            f"{same(al, cl)} {cl:.2f}); ratios within 5% of each other are called the same, as the run has only "
            f"{count} {'boundary' if count == 1 else 'boundaries'}. Timing on one worker: anchored took "
            f"{a['total'] / c['total']:.2f}x chained's time ({a['total']:.1f} s vs {c['total']:.1f} s, the anchor "
            f"pass {a['anchor_s']:.1f} s of it); "
            f"as its windows need only the anchor pass, enough workers would make it {a['critical']} edits end to "
            f"end against chained's {c['critical']}: {a['edit_path']:.1f} s of edits one after another against "
            f"{c['edit_path']:.1f} s, and with all the PNG writing (which stays serial) an estimated "
            f"{a['parallel']:.1f} s against {c['parallel']:.1f} s, transfers and scheduling not counted."
        )
    parts.append(
        "One clip, one seed, random-weight models: these figures compare how the two linkings keep neighbouring "
        "frames consistent, not how a trained model's edit looks."
    )
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
