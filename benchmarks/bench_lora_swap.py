"""A LoRA set changed on the resident model vs loading the base model (issue 26: a swap costs at most 10% of a load).

    python benchmarks/bench_lora_swap.py [--model sd15-random] [--device auto] [--rank 32] [--rounds 3]
                                         [--cache-dir DIR]

The base load is what the daemon's model slot does when a job names another model (load_model: the folder's
weights to the device), timed after the built-in model was built once. The LoRAs are written here for the model:
rank-`--rank` adapters of every attention projection of the UNet (to_q/to_k/to_v/to_out.0) and of the text encoder
(q/k/v/out_proj), one in diffusers and one in kohya format (about 17 MB each in fp16 at rank 32 for SD 1.5's shape). The
swaps are what a job's first span does (v2vz_engine.loras.apply_loras): none -> A, A -> B (B loaded), B ->
A again (still loaded: nothing read), A at another scale (nothing loaded), A -> none (every adapter disabled).
Figures are medians over the rounds; each round writes new files, so its first two swaps are real loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from v2vz.api.job import Lora
from v2vz_engine.loras import apply_loras, file_digest
from v2vz_engine.models import load_model
from v2vz_engine.pipeline import VideoEditPipeline

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def write_lora(path: Path, model, kind: str, rank: int, seed: int) -> Path:
    """A LoRA of every attention projection in `kind`'s layout (diffusers/peft or kohya/A1111)."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for part, module, targets in (("unet", model.unet, UNET_TARGETS), ("te", model.text_encoder, TEXT_TARGETS)):
        for name, layer in module.named_modules():
            layer = getattr(layer, "base_layer", layer)  # a projection peft wraps already (an adapter resident)
            if not isinstance(layer, torch.nn.Linear) or not name.endswith(targets) or ".base_layer" in name:
                continue
            down = torch.randn(rank, layer.in_features, generator=generator) * 0.01
            up = torch.randn(layer.out_features, rank, generator=generator) * 0.01
            if kind == "diffusers":
                prefix = "unet" if part == "unet" else "text_encoder"
                weights |= {f"{prefix}.{name}.lora_A.weight": down, f"{prefix}.{name}.lora_B.weight": up}
            else:
                key = f"lora_{part}_{(name if part == 'unet' else f'text_model.{name}').replace('.', '_')}"
                weights |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up}
                weights[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file({name: tensor.half() for name, tensor in weights.items()}, str(path))
    return path


def timed(action, *args) -> float:
    began = time.perf_counter()
    action(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sd15-random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()

    load_model(args.model, args.device, args.cache_dir)  # builds a built-in model once: not part of a load
    loads = []
    for _ in range(args.rounds):
        loads.append(timed(lambda: load_model(args.model, args.device, args.cache_dir)))
    model = load_model(args.model, args.device, args.cache_dir)
    pipeline = VideoEditPipeline(model)
    print(f"{args.model} on {model.device} ({str(model.dtype).removeprefix('torch.')}), LoRA rank {args.rank}")

    with tempfile.TemporaryDirectory(prefix="v2vz-lora-bench-") as folder:

        def lora(number: int, kind: str) -> Lora:
            path = write_lora(Path(folder) / f"{number}.safetensors", model, kind, args.rank, number)
            return Lora(path, 1.0, file_digest(path))

        swaps: dict[str, list[float]] = {
            "none -> new A (a load)": [],
            "A -> new B (a load)": [],
            "B -> A (loaded before)": [],
            "A scale 1 -> 0.5": [],
            "A -> none": [],
        }
        for round_ in range(args.rounds):
            a, b = lora(2 * round_ + 1, "diffusers"), lora(2 * round_ + 2, "kohya")
            swaps["none -> new A (a load)"].append(timed(apply_loras, pipeline, (a,)))
            swaps["A -> new B (a load)"].append(timed(apply_loras, pipeline, (b,)))
            swaps["B -> A (loaded before)"].append(timed(apply_loras, pipeline, (a,)))
            half = dataclasses.replace(a, scale=0.5)
            swaps["A scale 1 -> 0.5"].append(timed(apply_loras, pipeline, (half,)))
            swaps["A -> none"].append(timed(apply_loras, pipeline, ()))
        size = a.path.stat().st_size / 2**20

    load = statistics.median(loads)
    print(f"base load (load_model): {load:.3f} s (median of {args.rounds})")
    print(f"LoRA file: {size:.1f} MiB")
    worst = 0.0
    for name, seconds in swaps.items():
        median = statistics.median(seconds)
        worst = max(worst, median) if "a load" not in name else worst
        print(f"swap {name:<24} {median:.3f} s  = {100 * median / load:5.1f}% of a base load")
    verdict = "meets" if worst <= 0.1 * load else "misses"
    share = f"{100 * worst / load:.1f}% of a base load"
    print(f"slowest swap between loaded LoRAs {worst:.3f} s = {share}: {verdict} the 10% target")
    first = statistics.median(swaps["none -> new A (a load)"])
    print(f"a LoRA file never loaded before: {first:.3f} s = {100 * first / load:.1f}% of a base load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
