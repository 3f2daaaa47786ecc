"""The installed command with single-file checkpoints: `v2vz models` lists those of the model folders (A1111 and
ComfyUI roots, --models-dir, $V2VZ_MODELS) with family, prediction type and size, and `v2vz edit --local --model
FILE` refuses each bad file in one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v2vz.cli.models import human_size

from ..cli_kit import lines, one_error, run
from ..conftest import CLIPS
from ..engine.test_single_file import SD1, SD2, XL, bad_files, fake_checkpoint

BUNNY = CLIPS / "bigbuckbunny.mp4"
NO_DAEMON = {"V2VZ_ENDPOINT": "/nonexistent/endpoint.json"}


def model_folders(root: Path) -> dict[str, Path]:
    """An A1111 root, a ComfyUI root and a plain folder, each with checkpoints (one in a subfolder, one refused)."""
    a1111 = root / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    comfy = root / "ComfyUI" / "models" / "checkpoints"
    plain = root / "plain"
    for folder in (a1111 / "anime", comfy, plain):
        folder.mkdir(parents=True)
    unet_in = "model.diffusion_model.input_blocks.0.0.weight"
    return {
        "sd1": fake_checkpoint(a1111 / "anime" / "dreamshaper_8.safetensors", SD1),
        "sd2": fake_checkpoint(a1111 / "v2-1_512-ema-pruned.safetensors", SD2),
        "inpainting": fake_checkpoint(comfy / "sd15-inpainting.safetensors", {**SD1, unet_in: (320, 9, 3, 3)}),
        "sdxl": fake_checkpoint(comfy / "sd_xl_base_1.0.safetensors", XL),
        "plain": fake_checkpoint(plain / "mine.safetensors", SD1),
    }


def test_sizes_read_as_people_read_them() -> None:
    assert [human_size(n) for n in (512, 1536, 5 * 2**20, int(2.13 * 2**30))] == [
        "512 B",
        "1.5 KiB",
        "5.0 MiB",
        "2.13 GiB",
    ]


def test_models_lists_the_checkpoints_of_a1111_comfyui_and_plain_folders(tmp_path: Path) -> None:
    files = model_folders(tmp_path)
    (tmp_path / "stable-diffusion-webui" / "models" / "Stable-diffusion" / "v2-1_512-ema-pruned.yaml").write_text(
        "model:\n  params:\n    parameterization: eps\n"
    )
    (tmp_path / "plain" / "notes.txt").write_text("not a model")
    roots = ["--models-dir", str(tmp_path / "stable-diffusion-webui"), "--models-dir", str(tmp_path / "ComfyUI")]
    env = {**NO_DAEMON, "V2VZ_MODELS": str(tmp_path / "plain")}
    listed = run(["models", *roots, "--json"], env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["model"]: row for row in json.loads(listed.stdout) if row["kind"] == "file"}
    assert set(rows) == {str(path) for path in files.values()}
    assert rows[str(files["sd1"])] | {"resident": False} == {
        "model": str(files["sd1"]),
        "kind": "file",
        "where": str(tmp_path / "stable-diffusion-webui" / "models" / "Stable-diffusion"),
        "family": "SD 1.x",
        "prediction": "epsilon",
        "size_bytes": files["sd1"].stat().st_size,
        "problem": None,
        "resident": False,
        "default": False,
    }
    assert (rows[str(files["sd2"])]["family"], rows[str(files["sd2"])]["prediction"]) == ("SD 2.x", "epsilon")
    assert (rows[str(files["sdxl"])]["family"], rows[str(files["sdxl"])]["prediction"]) == ("SDXL base", "epsilon")
    assert rows[str(files["plain"])]["where"] == str(tmp_path / "plain")
    refused = rows[str(files["inpainting"])]
    assert refused["family"] is None and refused["problem"].startswith("is an inpainting model")
    assert {row["model"] for row in json.loads(listed.stdout) if row["kind"] == "built-in"} >= {"tiny", "sd15-random"}

    shown = lines(run(["models", *roots], env=env).stdout)
    line = next(text for text in shown if "dreamshaper_8" in text)
    size = files["sd1"].stat().st_size
    assert line.split()[1:] == ["file", "SD", "1.x,", "epsilon,", *human_size(size).split()], line
    assert any("sd15-inpainting" in text and "not usable: is an inpainting model" in text for text in shown)


@pytest.mark.parametrize("kind", ["empty", "truncated", "zip", "lora", "inpainting", "sd3", "flux", "refiner"])
def test_edit_local_refuses_a_bad_checkpoint_in_one_line_before_any_work(tmp_path: Path, kind: str) -> None:
    path, phrase = bad_files(tmp_path)[kind]
    out = tmp_path / "out.mp4"
    refused = run(
        ["edit", str(BUNNY), "-p", "a fox", "-s", "a rabbit", "--out", str(out), "--local"] + ["--model", str(path)]
    )
    one_error(refused, phrase, str(path), "SD 1.x, SD 2.x or SDXL base checkpoint")
    assert not out.exists()
