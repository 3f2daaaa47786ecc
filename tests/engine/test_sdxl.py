"""SDXL (conditioning.py): two text encoders packed with the pooled embedding into one conditioning per prompt, the
time ids of the working size, and the whole method (inversions, prompt-to-prompt on its attn2 layers, dense
cross-frame attention, local edits) on the built-in `tiny-xl`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2vz.api.job import EditJob, EditOptions
from v2vz_engine import conditioning
from v2vz_engine.models import load_model
from v2vz_engine.pipeline import Region, VideoEditPipeline
from v2vz_engine.run import run_job
from v2vz_engine.windows import auto_window

from .test_windows import moving_ball_frames, write_lossless_clip

SOURCE, TARGET = "a rabbit on grass", "a tiger on grass"


@pytest.fixture(scope="module")
def xl(model_cache) -> VideoEditPipeline:
    return VideoEditPipeline(load_model("tiny-xl", "cpu", model_cache))


def test_a_prompt_is_both_encoders_and_the_pooled_embedding_and_empty_is_zeros(xl):
    model = xl.model
    assert (model.family, model.pooled_width, model.native_size) == ("sdxl", 32, 64)
    packed = xl.encode_prompt(TARGET)
    first = model.text_encoder(conditioning._ids(model.tokenizer, TARGET, model.device), output_hidden_states=True)
    second = model.text_encoder_2(conditioning._ids(model.tokenizer_2, TARGET, model.device), output_hidden_states=True)
    assert packed.shape == (1, 78, 16 + 32)
    assert torch.equal(packed[0, :77, :16], first.hidden_states[-2][0])  # the penultimate layers, side by side
    assert torch.equal(packed[0, :77, 16:], second.hidden_states[-2][0])
    assert torch.equal(packed[0, 77, :32], second.text_embeds[0]) and not packed[0, 77, 32:].any()
    assert not xl.encode_prompt("").any()  # force_zeros_for_empty_prompt
    hidden, added = conditioning.unet_inputs(model, packed.expand(3, -1, -1), (5, 8))
    assert hidden.shape == (3, 77, 48) and added["text_embeds"].shape == (3, 32)
    assert added["time_ids"][0].tolist() == [40, 64, 0, 0, 40, 64]  # the working size, uncropped


@pytest.mark.parametrize("inversion", ["direct", "null-text", "negative-prompt"])
def test_the_method_runs_on_sdxl(xl, clip_frames, inversion):
    options = EditOptions(steps=3, inversion=inversion, edit_only="tiger", self_replace=0.5)
    z0 = xl.encode_frames(clip_frames, options)
    inverted, _ = xl.invert(z0, SOURCE, options)
    if inversion == "null-text":  # the whole unconditional input is optimized: token rows and pooled row
        assert inverted.nulls.shape == (3, 78, 48) and inverted.nulls[:, 77, :32].abs().sum() > 0
    matte = np.ones((4, 64, 64), np.float32)
    matte[:, :, :32] = 0
    sampled = xl.sample(inverted, SOURCE, TARGET, options, keep_source=True, region=Region((0, 1, 2, 3), matte))
    source, edit = sampled.latents[:4], sampled.latents[4:]
    assert torch.isfinite(sampled.latents).all() and torch.equal(edit[..., :3], source[..., :3])
    if inversion == "direct":
        assert torch.equal(source, z0)


def test_a_job_on_sdxl_is_written_at_the_source_size_in_windows_sized_for_sdxl(xl, tmp_path):
    clip = write_lossless_clip(tmp_path / "ball.mp4", moving_ball_frames(5))
    job = EditJob(clip, TARGET, SOURCE, frames=5, options=EditOptions(steps=2, window=3), out_frames_dir=tmp_path / "o")
    result = run_job(job, xl)
    assert len(result.frame_paths) == 5 and result.working_size == (64, 40) and len(result.windows) == 2
    gib = 2**30
    assert auto_window(1024, 1024, 40 * gib, 2, "sdxl") == 4  # SDXL's 1024 square: the fewest automatic frames
    assert auto_window(1024, 576, 20 * gib, 2, "sdxl") == 3 < auto_window(1024, 576, 20 * gib, 2, "sd") == 4


def test_a_lora_reaches_sdxls_second_text_encoder_and_scale_0_is_the_base(xl, tmp_path):
    """SDXL's LoRA loader: a diffusers-format LoRA of the UNet and both text encoders changes the pooled embedding;
    the empty set gives the base model's prompt back bit for bit."""
    from safetensors.torch import save_file

    from v2vz.api.job import Lora
    from v2vz_engine.loras import apply_loras, file_digest

    generator = torch.Generator().manual_seed(0)
    weights = {}
    for prefix, module in (("unet", xl.model.unet), ("text_encoder_2", xl.model.text_encoder_2)):
        for name, layer in module.named_modules():
            if isinstance(layer, torch.nn.Linear) and name.endswith(("to_q", "to_v", "q_proj", "v_proj")):
                weights[f"{prefix}.{name}.lora_A.weight"] = torch.randn(2, layer.in_features, generator=generator)
                weights[f"{prefix}.{name}.lora_B.weight"] = torch.randn(layer.out_features, 2, generator=generator)
    path = tmp_path / "xl-lora.safetensors"
    save_file(weights, str(path))
    before = xl.encode_prompt(TARGET).clone()
    lora = Lora(str(path), 1.0, file_digest(path))
    try:
        apply_loras(xl, (lora,))
        changed = xl.encode_prompt(TARGET)
        assert not torch.equal(changed[0, 77], before[0, 77])  # the pooled row: the second encoder's projection
        apply_loras(xl, ())
        assert torch.equal(xl.encode_prompt(TARGET), before)
    finally:
        apply_loras(xl, ())
