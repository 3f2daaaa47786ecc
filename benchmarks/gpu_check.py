"""Every check that needs a GPU, in one run of at most 8 minutes, offline: a GPU is lent only now and then.

    python benchmarks/gpu_check.py [--device cuda] [--budget-s 480] [--json figures.json] [--no-compile]
    python benchmarks/gpu_check.py --device cpu --quick        # tiny sizes, well under a minute (a test runs it)

Checks (sd15-random: Stable Diffusion 1.5's architecture with random weights, synthetic clips, no network):
1. the bf16 UNet against the same weights in fp32 on a small case (relative L2 error of the noise prediction);
2. 8 frames at 512x512, 50 steps, through run_job (read, edit, write an MP4): a cold edit with null-text (the
   published inner step) and with direct inversion, then a re-prompt of each from the inversion cache; then the
   preview of the same range (`preview=True`: 10 steps at half the size);
3. 32 frames at 512x512 in automatic windows, direct and null-text: peak memory;
4. the automatic window's memory estimate (windows.estimated_bytes) against the measured peak;
5. the UNet's ResNet blocks and feed-forward layers under torch.compile (compile time counted) against eager, on a
   direct edit: whether it pays;
6. SDXL (sdxl-random: SDXL base's architecture, random weights, made on the device without writing it): 8 frames at
   1024x576, 30 steps, direct inversion through run_job: time and peak memory, and the automatic window's estimate
   for SDXL against the measured peak;
7. FlowEdit on Wan 2.1 (wan-random: the 1.3B model's transformer and VAE, random weights, made on the device): 81
   frames at 832x480, 50 steps with the published Wan settings (n_max 35, source guidance 5, target 13.5), bf16:
   time and peak memory (targets: <= 60 s, <= 24 GB on one H100; a public figure for the same work is 150 s on an
   A100); and a clip 2.5 windows long in latent windows: its peak against the one window's.
Peak memory is torch.cuda.max_memory_allocated (weights included; reserved in the note) on CUDA, the resident
high-water mark on the CPU. Rows print as they finish (stderr) and as one table at the end (stdout); a row that
would start after the budget is spent is skipped and says so. Targets (one H100): null-text edit <= 15 s,
direct <= 8 s, re-prompt <= 4 s, preview < 2 s, 32 frames within 24 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network: built-in models only

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import _proc_status_kib, _reset_peak_rss, fmt_bytes  # noqa: E402

SOURCE, TARGET, RETARGET = "a red ball on green grass", "a blue ball on green grass", "a green ball on green grass"
GIB = 1024**3


@dataclass(frozen=True)
class Plan:
    """The sizes of one run: the full plan is what the targets are for, the quick one keeps the checks alive."""

    model: str
    size: int
    frames: int
    steps: int
    long_frames: int
    window: int  # 0: automatic (the run_job default)
    compile_backend: str  # "inductor"; the quick plan only traces ("eager"): inductor's C++ build takes minutes
    targets: dict[str, float] = field(default_factory=dict)
    xl: tuple[str, int, int, int, int] = ("sdxl-random", 1024, 576, 8, 30)  # model, width, height, frames, steps
    compile_blocks: int = 0  # how many blocks of each kind torch.compile wraps; 0: all (the quick plan: tracing
    # every block costs 15 s on a CPU and checks nothing more than one of each kind does)
    wan: tuple[str, int, int, int, int] = ("wan-random", 832, 480, 81, 50)  # model, width, height, frames, steps


FULL = Plan(
    "sd15-random",
    512,
    8,
    50,
    32,
    0,
    "inductor",
    {
        "null-text": 15.0,
        "direct": 8.0,
        "re-prompt": 4.0,
        "preview": 2.0,
        "long_gib": 24.0,
        "bf16_error": 0.05,
        "flowedit": 60.0,
        "flowedit_gib": 24.0,
    },
)
QUICK = Plan(
    "tiny",
    64,
    4,
    2,
    8,
    4,
    "eager",
    {"bf16_error": 0.05},
    ("tiny-xl", 64, 36, 4, 2),
    compile_blocks=1,
    wan=("tiny-wan", 64, 48, 9, 4),
)


@dataclass
class Row:
    check: str
    value: str
    target: str = ""
    verdict: str = ""
    note: str = ""


class Peak:
    """Peak memory of a block: CUDA's allocator counters, or this process's resident high-water mark on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = self.base = self.reserved = 0

    def __enter__(self) -> Peak:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            _reset_peak_rss()
            self.base = (_proc_status_kib("VmRSS") or 0) * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            self.reserved = torch.cuda.max_memory_reserved(self.device)
        else:
            self.peak = (_proc_status_kib("VmHWM") or 0) * 1024

    @property
    def above_base(self) -> int:
        return max(0, self.peak - self.base)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    """Hand cached blocks back, so that one check's allocator state does not count in the next one's peak."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------
# The checks


def bf16_agreement(model, folder: Path, device: torch.device) -> tuple[float, float]:
    """Relative L2 error and cosine of the bf16 UNet's noise prediction against the same weights in fp32."""
    from diffusers import UNet2DConditionModel

    reference = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).to(device).eval()
    low = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).to(device, torch.bfloat16)
    side = model.unet.config.sample_size // 2
    generator = torch.Generator(device="cpu").manual_seed(0)
    z = torch.randn(2, 4, side, side, generator=generator).to(device)
    tokens = model.tokenizer(SOURCE, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        text = model.text_encoder(tokens.to(device))[0].float().expand(2, -1, -1)
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 reference
        try:
            exact = reference(z, 501, encoder_hidden_states=text).sample.float()
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        approx = low.eval()(z.bfloat16(), 501, encoder_hidden_states=text.bfloat16()).sample.float()
    error = ((approx - exact).norm() / exact.norm()).item()
    cosine = torch.nn.functional.cosine_similarity(approx.flatten(), exact.flatten(), dim=0).item()
    del reference, low
    return error, cosine


def timed_job(pipeline, job, device: torch.device, cache=None) -> tuple[float, Peak, Any]:
    from v2vz_engine.run import run_job

    release(device)
    with Peak(device) as peak:
        start = time.perf_counter()
        result = run_job(job, pipeline, cache=cache)
        synchronize(device)
        seconds = time.perf_counter() - start
    return seconds, peak, result


@contextlib.contextmanager
def compiled_unet(pipeline, backend: str, per_kind: int = 0) -> Iterator[int]:
    """The UNet's ResNet blocks and feed-forward layers under torch.compile (yields how many).

    Not the whole UNet: our attention processors count their calls and are made anew for every stage, so a
    compiled UNet would graph-break at each of them and, guarded on the new objects, recompile at every job. The
    blocks compiled here hold no processor; between them the attention runs eager, as it does now.
    """
    import torch._dynamo
    from diffusers.models.attention import FeedForward
    from diffusers.models.resnet import ResnetBlock2D

    limit = torch._dynamo.config.cache_size_limit
    torch._dynamo.config.cache_size_limit = 256  # one graph per block kind, batch size (F, 2F, 3F, 4F) and frame count
    blocks = []
    for kind in (ResnetBlock2D, FeedForward):
        of_kind = [m for m in pipeline.model.unet.modules() if isinstance(m, kind)]
        blocks += of_kind[:per_kind] if per_kind else of_kind
    try:
        for block in blocks:
            block.compile(backend=backend)
        yield len(blocks)
    finally:
        for block in blocks:
            block._compiled_call_impl = None  # what nn.Module.compile set: the module is eager again
        torch._dynamo.config.cache_size_limit = limit
        torch._dynamo.reset()


class Budget:
    """Seconds left of the run; a check that would start after the budget is spent is skipped."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def run_checks(plan: Plan, device: torch.device, cache_dir: Path, budget: Budget, compile_unet: bool) -> list[Row]:
    from v2vz.api.job import EditJob, EditOptions
    from v2vz.cli.sample import make_sample_clip
    from v2vz_daemon.inversion_cache import InversionCache
    from v2vz_engine.models import BUILTIN_MODELS, ensure_builtin, load_model
    from v2vz_engine.pipeline import VideoEditPipeline
    from v2vz_engine.windows import estimated_bytes

    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        print(
            f"[{time.strftime('%H:%M:%S')}] {row.check}: {row.value} {row.target} {row.verdict} {row.note}".rstrip(),
            file=sys.stderr,
            flush=True,
        )

    def target_row(check: str, seconds: float, key: str, note: str = "") -> Row:
        goal = plan.targets.get(key)
        if goal is None:
            return Row(check, f"{seconds:.2f} s", note=note)
        return Row(check, f"{seconds:.2f} s", f"<= {goal:.0f} s", verdict(seconds <= goal), note)

    began = time.perf_counter()
    assert plan.model in BUILTIN_MODELS
    folder = ensure_builtin(plan.model, cache_dir)
    model = load_model(plan.model, device, cache_dir)
    pipeline = VideoEditPipeline(model)
    add(Row("build and load the model", f"{time.perf_counter() - began:.1f} s", note=f"{plan.model} on {device}"))

    error, cosine = bf16_agreement(model, folder, device)
    goal = plan.targets["bf16_error"]
    add(
        Row(
            "bf16 vs fp32 UNet, relative L2 error",
            f"{error:.4f}",
            f"<= {goal}",
            verdict(error <= goal),
            f"cosine {cosine:.6f}; 2 latents at half the native size, t=501",
        )
    )

    work = Path(tempfile.mkdtemp(prefix="v2vz-gpu-check-"))
    clip = make_sample_clip(work / "clip.mp4", frames=plan.long_frames, width=plan.size, height=plan.size)
    cache = InversionCache(work / "cache")

    def job(name: str, options: EditOptions, frames: int, prompt: str = TARGET) -> EditJob:
        return EditJob(
            source=clip,
            prompt=prompt,
            source_prompt=SOURCE,
            frames=frames,
            options=options,
            output=work / f"{name}.mp4",
            model=plan.model,
        )

    base = EditOptions(steps=plan.steps, size=plan.size, window=plan.window)
    what = f"{plan.frames} frames, {plan.size}x{plan.size}, {plan.steps} steps"
    for inversion in ("null-text", "direct"):  # warm-up at the measured shapes: kernels, autotuning, allocator
        timed_job(pipeline, job("warm", base.replace(steps=2, inversion=inversion), plan.frames), device)
    for inversion in ("null-text", "direct"):
        options = base.replace(inversion=inversion)
        seconds, peak, _ = timed_job(pipeline, job(inversion, options, plan.frames), device, cache)
        add(target_row(f"{inversion} cold edit ({what})", seconds, inversion, f"peak {fmt_bytes(peak.peak)}"))
        seconds, peak, result = timed_job(
            pipeline, job(f"{inversion}-re", options, plan.frames, RETARGET), device, cache
        )
        assert result.inversion_cached, "the re-prompt missed the cache"
        add(target_row(f"{inversion} re-prompt from the cache", seconds, "re-prompt", f"peak {fmt_bytes(peak.peak)}"))

    preview_job = dataclasses.replace(job("preview", base, plan.frames), preview=True)
    timed_job(pipeline, dataclasses.replace(preview_job, output=work / "warm-preview.mp4"), device)  # its shapes
    seconds, peak, _ = timed_job(pipeline, preview_job, device)
    add(
        target_row(
            "preview of the same range (at most 10 steps, half the size)",
            seconds,
            "preview",
            f"peak {fmt_bytes(peak.peak)}",
        )
    )

    dtype_bytes = torch.finfo(model.dtype).bits // 8
    for inversion in ("direct", "null-text"):
        if budget.left() < 60:
            add(Row(f"{plan.long_frames} frames in windows, {inversion}", "skipped", note="budget spent"))
            continue
        options = base.replace(inversion=inversion)
        seconds, peak, result = timed_job(pipeline, job(f"long-{inversion}", options, plan.long_frames), device)
        window = max(len(w) for w in result.windows)
        goal = plan.targets.get("long_gib")
        ok = "" if goal is None else verdict(peak.peak <= goal * GIB)
        reserved = f", reserved {fmt_bytes(peak.reserved)}" if device.type == "cuda" else ""
        add(
            Row(
                f"{plan.long_frames} frames at {plan.size}x{plan.size} in windows, {inversion}: peak",
                fmt_bytes(peak.peak),
                f"<= {goal:.0f} GiB" if goal else "",
                ok,
                f"{len(result.windows)} windows of {window}, {seconds:.1f} s{reserved}",
            )
        )
        estimate = estimated_bytes(window, plan.size, plan.size, dtype_bytes)
        add(
            Row(
                f"window estimate vs measured peak above the weights, {inversion}",
                f"{peak.above_base / estimate:.2f}",
                "<= 1",
                verdict(peak.above_base <= estimate),
                f"measured {fmt_bytes(peak.above_base)}, estimate {fmt_bytes(estimate)} for {window} frames",
            )
        )

    if not compile_unet:
        add(Row("torch.compile of the UNet", "skipped", note="--no-compile"))
    elif budget.left() < 120:
        add(Row("torch.compile of the UNet", "skipped", note="budget spent"))
    else:
        options = base.replace(inversion="direct")
        eager_s, _, _ = timed_job(pipeline, job("eager", options, plan.frames), device)
        with compiled_unet(pipeline, plan.compile_backend, plan.compile_blocks) as blocks:
            first_s, _, _ = timed_job(pipeline, job("compile-1", options, plan.frames), device)
            steady_s, _, _ = timed_job(pipeline, job("compile-2", options, plan.frames), device)
        gain = eager_s - steady_s
        runs = "never" if gain <= 0 else f"after {max(1, round((first_s - steady_s) / gain))} edits"
        add(
            Row(
                f"torch.compile ({plan.compile_backend}) of the UNet's blocks, direct edit: compiled / eager",
                f"{steady_s / eager_s:.2f}",
                "< 1",
                verdict(steady_s < eager_s),
                f"{blocks} blocks; eager {eager_s:.2f} s, first compiled {first_s:.2f} s (compile included), then "
                f"{steady_s:.2f} s; pays {runs}",
            )
        )
    del pipeline, model
    release(device)
    sdxl_checks(plan, device, work, budget, add)
    release(device)
    flowedit_checks(plan, device, work, budget, add)
    return rows


def sdxl_checks(plan: Plan, device: torch.device, work: Path, budget: Budget, add) -> None:
    """Check 6: SDXL's architecture through run_job, made in memory (no 14 GB write on the lent GPU's clock)."""
    from v2vz.api.job import EditJob, EditOptions
    from v2vz.cli.sample import make_sample_clip
    from v2vz_engine.models import builtin_in_memory
    from v2vz_engine.pipeline import VideoEditPipeline
    from v2vz_engine.windows import estimated_bytes

    name, width, height, frames, steps = plan.xl
    what = f"{name}: {frames} frames at {width}x{height}, {steps} steps, direct"
    if budget.left() < 150:
        add(Row(what, "skipped", note="budget spent"))
        return
    began = time.perf_counter()
    model = builtin_in_memory(name, device)
    pipeline = VideoEditPipeline(model)
    add(Row(f"make {name} on the device", f"{time.perf_counter() - began:.1f} s"))
    clip = make_sample_clip(work / "xl.mp4", frames=frames, width=width, height=height)
    options = EditOptions(steps=steps, size=max(width, height), inversion="direct")
    job = EditJob(clip, TARGET, SOURCE, frames=frames, options=options, output=work / "xl.mp4.out.mp4", model=name)
    timed_job(pipeline, dataclasses.replace(job, options=options.replace(steps=2), output=work / "xlw.mp4"), device)
    seconds, peak, result = timed_job(pipeline, job, device)
    window = max(len(w) for w in result.windows)
    add(Row(what, f"{seconds:.2f} s", note=f"peak {fmt_bytes(peak.peak)}, {len(result.windows)} windows of {window}"))
    dtype_bytes = torch.finfo(model.dtype).bits // 8
    estimate = estimated_bytes(window, *result.working_size, dtype_bytes, "sdxl")
    add(
        Row(
            "SDXL window estimate vs measured peak above the weights",
            f"{peak.above_base / estimate:.2f}",
            "<= 1",
            verdict(peak.above_base <= estimate),
            f"measured {fmt_bytes(peak.above_base)}, estimate {fmt_bytes(estimate)} for {window} frames",
        )
    )


def flowedit_checks(plan: Plan, device: torch.device, work: Path, budget: Budget, add) -> None:
    """Check 7: FlowEdit on Wan 2.1's architecture through run_job, the model made on the device."""
    from v2vz.api.job import EditJob, EditOptions
    from v2vz.cli.sample import make_sample_clip
    from v2vz_engine.flowedit_editor import FlowEditor
    from v2vz_engine.wan.models import wan_builtin_in_memory

    name, width, height, frames, steps = plan.wan
    what = f"{name}: FlowEdit, {frames} frames at {width}x{height}, {steps} steps"
    if budget.left() < 200:
        add(Row(what, "skipped", note="budget spent"))
        return
    began = time.perf_counter()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    editor = FlowEditor(wan_builtin_in_memory(name, device, dtype))
    add(Row(f"make {name} on the device", f"{time.perf_counter() - began:.1f} s", note=str(dtype).split(".")[-1]))
    long_frames = frames * 5 // 2 // 4 * 4 + 1  # 2.5 windows' worth, 4k+1
    clip = make_sample_clip(work / "wan.mp4", frames=long_frames, width=width, height=height)
    options = EditOptions().replace(method="flowedit", steps=steps, size=max(width, height))
    job = EditJob(clip, TARGET, SOURCE, frames=frames, options=options, output=work / "wan.out.mp4", model=name)
    timed_job(editor, dataclasses.replace(job, options=options.replace(steps=2), output=work / "wanw.mp4"), device)
    seconds, peak, _ = timed_job(editor, job, device)
    gib = peak.peak / GIB
    add(
        Row(
            what,
            f"{seconds:.2f} s",
            f"<= {plan.targets['flowedit']:g} s" if "flowedit" in plan.targets else "",
            verdict(seconds <= plan.targets["flowedit"]) if "flowedit" in plan.targets else "",
            f"peak {fmt_bytes(peak.peak)}"
            + (
                f" (target <= {plan.targets['flowedit_gib']:g} GiB: {verdict(gib <= plan.targets['flowedit_gib'])})"
                if "flowedit_gib" in plan.targets
                else ""
            ),
        )
    )
    if budget.left() < 2.5 * seconds + 30:
        add(Row(f"{name}: {long_frames} frames in latent windows of {frames}", "skipped", note="budget spent"))
        return
    longer = dataclasses.replace(
        job, frames=long_frames, output=work / "wanl.mp4", options=options.replace(window=frames)
    )
    long_seconds, long_peak, _ = timed_job(editor, longer, device)
    ratio = long_peak.peak / max(1, peak.peak)  # whole peaks, weights included (the same in both)
    add(
        Row(
            f"{name}: {long_frames} frames in latent windows of {frames}: peak vs one window",
            f"{ratio:.2f}",
            "<= 1.25",
            verdict(ratio <= 1.25),
            f"{long_seconds:.1f} s, peak {fmt_bytes(long_peak.peak)} vs {fmt_bytes(peak.peak)}",
        )
    )


def print_table(rows: list[Row], header: str) -> None:
    columns = ("check", "value", "target", "", "note")
    cells = [[r.check, r.value, r.target, r.verdict, r.note] for r in rows]
    widths = [max(len(columns[i]), *(len(c[i]) for c in cells)) for i in range(4)]
    print(header)
    print("  ".join(c.ljust(w) for c, w in zip(columns[:4], widths, strict=True)) + "  note")
    print("  ".join("-" * w for w in widths) + "  ----")
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name}, {fmt_bytes(props.total_memory)}, CUDA {torch.version.cuda}, torch {torch.__version__}"
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads), torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny model and sizes: the plumbing, not the figures")
    parser.add_argument("--budget-s", type=float, default=480.0, help="seconds after which checks are skipped")
    parser.add_argument("--cache-dir", type=Path, help="built-in models (default $V2VZ_CACHE or ~/.cache/v2vz)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile check")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    from v2vz.api.errors import V2vzError
    from v2vz_engine.models import cache_root, resolve_device

    try:
        device = resolve_device(args.device)
    except V2vzError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    began = time.perf_counter()
    rows = run_checks(plan, device, cache_root(args.cache_dir), Budget(args.budget_s), not args.no_compile)
    header = f"v2vz GPU check on {describe(device)}: {'quick' if args.quick else 'full'} plan, " + (
        f"{time.perf_counter() - began:.0f} s in all"
    )
    print_table(rows, header)
    if args.json:
        args.json.write_text(json.dumps({"device": describe(device), "rows": [dataclasses.asdict(r) for r in rows]}))
    return 0  # a MISS is a figure to report, not a failure of the check itself


if __name__ == "__main__":
    sys.exit(main())
