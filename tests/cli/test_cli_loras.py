"""`v2vz edit --lora PATH[:SCALE]` with --local: the LoRA applied, its digest in the take's sidecar, and a file
that is not a LoRA refused in one line before any work."""

from __future__ import annotations

import hashlib
import json

from ..cli_kit import one_error, run
from ..conftest import CLIPS
from ..engine.test_loras import write_lora

BUNNY = CLIPS / "bigbuckbunny.mp4"
EDIT = ["edit", str(BUNNY), "-p", "a tiger on grass", "-s", "a rabbit on grass", "--start", "30", "--frames", "2"]


def test_a_local_edit_with_loras_records_their_digests_and_scales(tmp_path, model_cache, tiny_model):
    ink = write_lora(tmp_path / "ink.safetensors", tiny_model, "kohya", seed=3)
    grain = write_lora(tmp_path / "grain.safetensors", tiny_model, "diffusers", seed=4)
    frames = tmp_path / "frames"
    done = run(
        [*EDIT, "--steps", "2", "--size", "64", "--local", "--model", "tiny", "--cache-dir", str(model_cache)]
        + ["--lora", f"{ink}:0.7", "--lora", str(grain), "--out", f"{frames}/", "-q"]
    )
    assert done.returncode == 0, done.stderr
    assert len(list(frames.glob("*.png"))) == 2
    record = json.loads((frames / "v2vz.json").read_text())
    digest = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in (ink, grain)}
    assert record["job"]["loras"] == [
        {"path": str(ink), "scale": 0.7, "digest": digest[ink]},
        {"path": str(grain), "scale": 1.0, "digest": digest[grain]},
    ]


def test_a_file_that_is_not_a_lora_is_refused_in_one_line_before_any_work(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 16)
    out = ["--out", str(tmp_path / "o.mp4"), "--local", "--model", "tiny"]
    one_error(run([*EDIT, *out, "--lora", str(tmp_path / "model.safetensors:0.5")]), "is not a safetensors file")
    assert not (tmp_path / "o.mp4").exists()
