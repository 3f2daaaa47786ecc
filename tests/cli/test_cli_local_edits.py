"""`v2vz edit` with a local edit: its flags reach the job, bad ones are one line before any work, and --local writes
the masks beside an edit that keeps the shot's pixels outside them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..cli_kit import lines, one_error, run
from ..conftest import CLIPS

BUNNY = CLIPS / "bigbuckbunny.mp4"  # 1280x720
PROMPTS = ["-p", "a tiger on grass", "-s", "a rabbit on grass"]


def test_a_bad_local_edit_is_one_line_before_any_work(tmp_path):
    out = ["--out", str(tmp_path / "o.mp4"), "--local", "--model", "tiny"]
    refused = run(["edit", str(BUNNY), *PROMPTS, *out, "--edit-only", "dog"])
    one_error(refused, "'dog' are in neither prompt", "a, rabbit, on, grass, tiger")
    Image.new("L", (400, 400)).save(tmp_path / "square.png")  # the checks of the job and of its media, in the CLI
    square = ["--matte", str(tmp_path / "square.png"), "--save-mask", str(tmp_path / "m")]
    one_error(run(["edit", str(BUNNY), *PROMPTS, *out, *square]), "400x400 (aspect 1.000), the source 1280x720")
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "m").exists()


def test_a_local_edit_writes_its_masks_and_keeps_the_shot_outside_them(tmp_path, model_cache):
    matte = np.zeros((360, 640), np.uint8)
    matte[:, 320:] = 255
    Image.fromarray(matte).save(tmp_path / "matte.png")
    done = run(
        ["edit", str(BUNNY), *PROMPTS, "--start", "30", "--frames", "2", "--steps", "2", "--size", "64"]
        + ["--local", "--model", "tiny", "--cache-dir", str(model_cache), "--out", str(tmp_path / "frames") + "/"]
        + ["--matte", str(tmp_path / "matte.png"), "--save-mask", str(tmp_path / "masks"), "--self-replace", "0.5"]
        + ["--edit-only", "tiger", "-q"]
    )
    assert done.returncode == 0, done.stderr
    assert "note: the matte matte.png is 640x360: it is resampled to the source's 1280x720" in lines(done.stderr)
    masks = sorted(path.name for path in (tmp_path / "masks").iterdir())
    assert masks == ["mask_000030.png", "mask_000031.png"]  # numbered like the source's frames
    from v2vz_engine import media

    source, _ = media.read_frames(BUNNY, 30, 2)
    edited = np.stack([np.asarray(Image.open(path)) for path in sorted((tmp_path / "frames").glob("*.png"))])
    assert np.array_equal(edited[:, :, :600], source[:, :, :600])
    assert np.asarray(Image.open(tmp_path / "masks" / "mask_000030.png"))[:, :600].max() == 0
