"""Wan 2.1 T2V 1.3B's cost for FlowEdit, on wan-random (its exact transformer and VAE, random weights).

    python benchmarks/bench_wan_random.py [--device cpu] [--dtype float32|bfloat16] [--frames 9] [--width 160]
                                          [--height 96] [--calls 1] [--tile 128] [--vae-only] [--cache-dir DIR]

Builds wan-random once into the cache (bf16 safetensors, 3.6 GB: about a minute on 2 cores, 3.9 GiB peak), loads it
through `load_wan` (the path a real Wan folder takes), asserts the transformer and VAE are Wan 2.1 T2V 1.3B's (config
and parameter count) and prints:
- one transformer call (the velocity of one latent video) at --frames x --width x --height, the CFG pair (cond and
  uncond, batch 2) and FlowEdit's step (a CFG pair for the source prompt and one for the target: 4 evaluations); the
  median of --calls timed calls, after one untimed call;
- the VAE encode and decode of that clip, with spatial tiling at --tile pixels (diffusers' AutoencoderKLWan tiles
  only when a side is larger than the tile, stride 3/4 of it: 256 is its default, and what `load_wan` leaves on; the
  smaller default here makes tiling happen at a size a CPU can run; --vae-only --tile 256 gives the untiled figure);
- memory. On CUDA: torch.cuda.max_memory_allocated, reset before each phase. On the CPU torch keeps no allocator
  statistics (and tracemalloc does not see its buffers), so the process's resident set (VmRSS of /proc/self/status)
  is sampled every 5 ms during each phase: its peak above the phase's start is that phase's working memory (memory
  an earlier phase freed and the allocator reuses is not counted: hence the transformer before the VAE); the
  process's lifetime peak is getrusage's ru_maxrss.
The text encoder of wan-random is UMT5-XXL's width with 1 layer of 24 (the real one, 5.7 B parameters, does not fit
this machine): its figures are not the real model's and are not reported; it runs once per edit, not per step.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from v2vz_engine.wan import decode_video, encode_prompt, encode_video, load_wan, predict_velocity
from v2vz_engine.wan.models import WAN21_1_3B_TRANSFORMER, WAN21_VAE, ensure_wan_builtin

WAN21_1_3B_PARAMETERS = 1_418_996_800  # WanTransformer3DModel with Wan 2.1 T2V 1.3B's config
GIB = 2**30


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """The peak memory of one phase: CUDA's allocator peak, or the sampled resident set's rise on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self.start = device, 0, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self.peak = rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())

    @property
    def rise(self) -> str:
        """The phase's peak above its start. On the CPU memory that an earlier phase freed and the allocator reuses
        is not counted: a phase's figure is what it needed beyond what the process already held."""
        rise = (self.peak - self.start) / 2**20
        return f"+{rise / 1024:.2f} GiB" if rise >= 1024 else f"+{rise:.0f} MiB"


def timed(fn: Callable[[], object], calls: int, device: torch.device, warm_up: bool) -> tuple[float, object]:
    """Median seconds of `calls` calls (after one untimed call when `warm_up`), and the last call's result."""
    result = fn() if warm_up else None
    seconds = []
    for _ in range(calls):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), result


def check_architecture(model) -> int:
    """The loaded transformer and VAE are Wan 2.1 T2V 1.3B's: the published config and parameter count."""
    config = model.transformer.config
    for key, value in WAN21_1_3B_TRANSFORMER.items():
        got = tuple(config[key]) if isinstance(value, tuple) else config[key]
        assert got == value, f"transformer {key} is {got}, Wan 2.1 1.3B has {value}"
    for key, value in WAN21_VAE.items():
        got = list(model.vae.config[key]) if isinstance(value, list) else model.vae.config[key]
        assert got == value, f"VAE {key} is {got}, Wan 2.1's is {value}"
    parameters = sum(p.numel() for p in model.transformer.parameters())
    assert parameters == WAN21_1_3B_PARAMETERS, f"{parameters} transformer parameters, not {WAN21_1_3B_PARAMETERS}"
    return parameters


def clip(frames: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.asarray(
        [np.stack([(x + 7 * t) % 256, (y * 2) % 256, np.full_like(x, 30 * t % 256)], -1) for t in range(frames)],
        dtype=np.uint8,
    )


def time_transformer(model, latents: torch.Tensor, calls: int) -> None:
    """One velocity, the CFG pair, FlowEdit's step: seconds and each phase's memory."""
    device = model.device
    embeds = encode_prompt(model, ["a red ball on green grass", ""])
    timestep = 500.0
    with PeakMemory(device) as one:
        single, velocity = timed(
            lambda: predict_velocity(model, latents, timestep, embeds[:1]), calls, device, warm_up=True
        )
    pair_latents = latents.expand(2, -1, -1, -1, -1)
    with PeakMemory(device) as pair:
        cfg, _ = timed(lambda: predict_velocity(model, pair_latents, timestep, embeds), calls, device, False)
    print(
        f"transformer call: {single:.2f} s ({one.rise}); CFG pair (batch 2): {cfg:.2f} s ({pair.rise}); "
        f"FlowEdit step (2 CFG pairs): {2 * cfg:.2f} s"
    )
    print(f"velocity of the random transformer: std {velocity.std():.3f}, max |v| {velocity.abs().max():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None, help="default: engine's")
    parser.add_argument("--frames", type=int, default=9, help="4k+1")
    parser.add_argument("--width", type=int, default=160, help="a multiple of 16")
    parser.add_argument("--height", type=int, default=96, help="a multiple of 16")
    parser.add_argument("--calls", type=int, default=1, help="timed transformer calls per figure")
    parser.add_argument("--tile", type=int, default=128, help="VAE tile side in pixels (stride 3/4 of it)")
    parser.add_argument("--vae-only", action="store_true", help="skip the transformer (compare tiles run by run)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    if (args.frames - 1) % 4 or args.frames < 1 or args.width % 16 or args.height % 16:
        raise SystemExit("--frames must be 4k+1 and --width/--height multiples of 16")

    began = time.perf_counter()
    folder = ensure_wan_builtin("wan-random", args.cache_dir)
    print(f"wan-random: {folder} (ready in {time.perf_counter() - began:.1f} s)")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    with PeakMemory(torch.device(args.device)) as loading:
        began = time.perf_counter()
        model = load_wan("wan-random", args.device, dtype, cache_dir=args.cache_dir)
        load_seconds = time.perf_counter() - began
    device = model.device
    parameters = check_architecture(model)
    print(
        f"device {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), dtype "
        f"{model.dtype}; torch {torch.__version__}"
    )
    print(
        f"transformer: {parameters:,} parameters (Wan 2.1 T2V 1.3B's architecture: checked), "
        f"VAE {sum(p.numel() for p in model.vae.parameters()):,}"
    )
    print(f"load: {load_seconds:.1f} s, memory {loading.rise}")

    # The transformer first, on latents of the clip's shape (its cost does not depend on their values), so its
    # working memory is measured before the VAE's phases leave freed memory for the allocator to reuse.
    shape = (1, model.latent_channels, model.latent_frames(args.frames), args.height // 8, args.width // 8)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    tokens = shape[2] * shape[3] * shape[4] // 4
    print(f"clip {args.frames}x{args.width}x{args.height} -> latents {shape} ({tokens} transformer tokens)")
    if not args.vae_only:
        time_transformer(model, latents, args.calls)
    del latents

    frames = clip(args.frames, args.height, args.width)
    model.vae.enable_tiling(args.tile, args.tile, args.tile * 3 // 4, args.tile * 3 // 4)
    with PeakMemory(device) as encoding:
        began = time.perf_counter()
        latents = encode_video(model, frames)
        encode_seconds = time.perf_counter() - began
    with PeakMemory(device) as decoding:
        began = time.perf_counter()
        decoded = decode_video(model, latents)
        decode_seconds = time.perf_counter() - began
    assert latents.shape == shape and decoded.shape == frames.shape
    tiled = args.width > args.tile or args.height > args.tile
    print(
        f"VAE ({'tiled' if tiled else 'untiled'}, tile {args.tile}px): encode {encode_seconds:.2f} s "
        f"({encoding.rise}), decode {decode_seconds:.2f} s ({decoding.rise})"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    print(f"process peak resident set (ru_maxrss): {peak:.2f} GiB")
    if device.type == "cuda":
        print(f"CUDA peak allocated (last phase): {torch.cuda.max_memory_allocated() / GIB:.2f} GiB")


if __name__ == "__main__":
    main()
