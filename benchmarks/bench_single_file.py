"""A single-file checkpoint vs the same weights as a diffusers folder: load time through `load_model`.

    python benchmarks/bench_single_file.py [--device auto|cpu|cuda] [--model sd15-random] [--runs 3]
                                           [--cache-dir DIR] [--work DIR]

The built-in model (sd15-random: SD 1.5's exact architecture, random weights) is exported once to the original
single-file layout (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.transformer.*`) by the
tests' exporter (tests/engine/test_single_file.py), then loaded alternately as the folder and as the file, `--runs`
times each after one unmeasured load of each (imports, the page cache). The figures are medians; the ratio is
file / folder, measured in this one run. Target (issue 26): at most 1.2x. The file must also load to the folder's
exact weights, which is checked once.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' exporter

from tests.engine.test_single_file import export_single_file  # noqa: E402
from v2vz_engine.models import ensure_builtin, load_model  # noqa: E402

TARGET_RATIO = 1.2


def timed_load(spec: str, device: str) -> float:
    gc.collect()
    began = time.perf_counter()
    model = load_model(spec, device)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    del model
    gc.collect()
    return seconds


def same_weights(a, b) -> bool:
    for part in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        if ours.keys() != theirs.keys() or not all(torch.equal(ours[k], theirs[k]) for k in ours):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="sd15-random")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="where the exported file goes (a temporary folder)")
    args = parser.parse_args()

    folder = ensure_builtin(args.model, args.cache_dir)
    with tempfile.TemporaryDirectory(prefix="v2vz-single-", dir=args.work) as work:
        file = Path(work) / f"{args.model}.safetensors"
        reference = load_model(str(folder), args.device)
        began = time.perf_counter()
        export_single_file(reference, file)
        print(
            f"exported {folder.name} to {file.name}: "
            f"{file.stat().st_size / 2**30:.2f} GiB in {time.perf_counter() - began:.1f} s"
        )
        exact = same_weights(reference, load_model(str(file), args.device))
        del reference
        timed_load(str(folder), args.device), timed_load(str(file), args.device)  # warm: imports, page cache
        folder_s, file_s = [], []
        for _ in range(args.runs):
            folder_s.append(timed_load(str(folder), args.device))
            file_s.append(timed_load(str(file), args.device))
    folder_median, file_median = statistics.median(folder_s), statistics.median(file_s)
    ratio = file_median / folder_median
    print(f"device {args.device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    print(f"diffusers folder load: median {folder_median:.2f} s  runs {', '.join(f'{s:.2f}' for s in folder_s)}")
    print(f"single file load:      median {file_median:.2f} s  runs {', '.join(f'{s:.2f}' for s in file_s)}")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"ratio file / folder: {ratio:.2f}x (target at most {TARGET_RATIO}x): {verdict}")
    print(f"same weights as the folder: {exact}")


if __name__ == "__main__":
    main()
