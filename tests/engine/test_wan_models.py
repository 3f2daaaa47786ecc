"""Wan 2.1 models for FlowEdit: tiny-wan through save_pretrained/from_pretrained, telling a Wan folder from an SD one,
errors, the codecs (4k+1 frames, latent normalization, prompt embeddings) against diffusers' own Wan pipelines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from v2vz.api.errors import InvalidArgument, ModelUnavailable
from v2vz_engine.wan import (
    decode_video,
    denormalize_latents,
    encode_prompt,
    encode_video,
    ensure_wan_builtin,
    is_wan_folder,
    load_wan,
    normalize_latents,
    predict_velocity,
)
from v2vz_engine.wan.folders import WAN_BUILTIN_NAMES
from v2vz_engine.wan.models import WAN_BUILTIN_VERSION, WAN_BUILTINS, WAN_RANDOM, wan_builtin_pipeline

PARTS = {
    "transformer": ["config.json", "diffusion_pytorch_model.safetensors"],
    "vae": ["config.json", "diffusion_pytorch_model.safetensors"],
    "text_encoder": ["config.json", "model.safetensors"],
    "tokenizer": ["tokenizer_config.json", "tokenizer.json"],
    "scheduler": ["scheduler_config.json"],
}


@pytest.fixture(scope="module")
def tiny_wan(model_cache: Path):
    return load_wan("tiny-wan", "cpu", cache_dir=model_cache)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """9 frames (4k+1, k = 2) at tiny-wan's native 64x48: a moving gradient, so frames differ."""
    y, x = np.mgrid[0:48, 0:64]
    video = [np.stack([(x * 4 + t * 9) % 256, (y * 5) % 256, np.full_like(x, 40 * t % 256)], -1) for t in range(9)]
    return np.asarray(video, dtype=np.uint8)


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return module.state_dict()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


# ---------------------------------------------------------------------------------------------------------------
# Building, saving, loading


def test_tiny_wan_is_a_wan_pipeline_folder(tiny_wan, model_cache: Path) -> None:
    folder = model_cache / "models" / f"tiny-wan-{WAN_BUILTIN_VERSION}"
    for part, files in PARTS.items():
        for name in files:
            assert (folder / part / name).is_file(), f"{part}/{name} missing"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLWan"]
    assert index["text_encoder"] == ["transformers", "UMT5EncoderModel"]
    assert [p.name for p in (model_cache / "models").iterdir() if p.name.startswith(".")] == []  # built atomically


def test_tiny_wan_loads_back_bit_identical_to_what_was_built(tiny_wan) -> None:
    built = wan_builtin_pipeline("tiny-wan")  # deterministic: the same weights as the cached folder's
    assert_same_weights(built.transformer, tiny_wan.transformer)
    assert_same_weights(built.vae, tiny_wan.vae)
    assert_same_weights(built.text_encoder, tiny_wan.text_encoder)
    prompt = "a red ball on green grass, quickly"
    assert built.tokenizer(prompt).input_ids == tiny_wan.tokenizer(prompt).input_ids


def test_tiny_wan_properties(tiny_wan) -> None:
    assert tiny_wan.family == "wan"
    assert (tiny_wan.spatial_compression, tiny_wan.temporal_compression, tiny_wan.latent_channels) == (8, 4, 16)
    assert tiny_wan.native_size == (64, 48) and tiny_wan.size_multiple == 16
    assert tiny_wan.flow_shift == 3.0 and tiny_wan.flow_scheduler().config.shift == 3.0
    assert tiny_wan.dtype == torch.float32 and tiny_wan.vae.dtype == torch.float32
    # The 4k+1 rule: 81 frames are 21 latent frames; 12 frames edit 9 of them; 3 latent frames decode to 9 frames.
    assert [tiny_wan.valid_frame_count(n) for n in (1, 4, 5, 8, 9, 81)] == [True, False, True, False, True, True]
    assert tiny_wan.latent_frames(81) == 21 and tiny_wan.latent_frames(1) == 1
    assert tiny_wan.usable_frames(12) == 9 and tiny_wan.usable_frames(4) == 1
    assert tiny_wan.frames_of_latents(3) == 9


def test_wan_random_has_the_published_architecture() -> None:
    """wan-random's transformer and VAE, counted without weights (meta device): Wan 2.1 T2V 1.3B's sizes."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    with torch.device("meta"):
        transformer = WanTransformer3DModel(**WAN_RANDOM.transformer)
        vae = AutoencoderKLWan(**WAN_RANDOM.vae)
    assert sum(p.numel() for p in transformer.parameters()) == 1_418_996_800
    assert 126e6 < sum(p.numel() for p in vae.parameters()) < 128e6
    assert vae.config.latents_mean[0] == -0.7571 and vae.config.latents_std[0] == 2.8184


# ---------------------------------------------------------------------------------------------------------------
# Telling Wan from SD, and errors


def test_is_wan_folder(tiny_wan, model_cache: Path, tmp_path: Path) -> None:
    assert is_wan_folder(model_cache / "models" / f"tiny-wan-{WAN_BUILTIN_VERSION}")
    sd = tmp_path / "sd"
    (sd / "unet").mkdir(parents=True)
    (sd / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    assert not is_wan_folder(sd)
    bare = tmp_path / "bare"  # no model_index.json, but a Wan transformer
    (bare / "transformer").mkdir(parents=True)
    (bare / "transformer" / "config.json").write_text('{"_class_name": "WanTransformer3DModel"}')
    assert is_wan_folder(bare)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    assert not is_wan_folder(broken)
    assert not is_wan_folder(tmp_path / "nowhere")


def test_telling_wan_from_sd_needs_no_torch() -> None:
    """model_source.py answers without torch: the Wan names and folder test must not import it."""
    code = (
        "import sys; from v2vz_engine.wan.folders import WAN_BUILTIN_NAMES, is_wan_folder; "
        "is_wan_folder('.'); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert tuple(WAN_BUILTINS) == WAN_BUILTIN_NAMES


@pytest.mark.parametrize("spec", ["nobody-v2vz/no-such-wan-model", "/nowhere/wan-folder", "not a hub id!!"])
def test_an_unavailable_model_is_one_line(spec: str) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        load_wan(spec, "cpu")
    message = str(caught.value)
    assert "\n" not in message and spec in message and "tiny-wan" in message


def test_an_sd_folder_is_not_loaded_as_wan(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ModelUnavailable, match="not a Wan folder"):
        load_wan(tmp_path, "cpu")


def test_an_unknown_builtin_is_refused(model_cache: Path) -> None:
    with pytest.raises(ModelUnavailable, match="not a Wan built-in"):
        ensure_wan_builtin("huge-wan", model_cache)


# ---------------------------------------------------------------------------------------------------------------
# Codecs


def test_encode_decode_shapes(tiny_wan, frames: np.ndarray) -> None:
    latents = encode_video(tiny_wan, frames)
    assert latents.shape == (1, 16, 3, 6, 8) and latents.dtype == torch.float32
    video = decode_video(tiny_wan, latents)
    assert video.shape == (9, 48, 64, 3) and video.dtype == np.uint8
    assert encode_video(tiny_wan, frames[:1]).shape == (1, 16, 1, 6, 8)  # one frame: k = 0
    assert encode_video(tiny_wan, frames[:5]).shape == (1, 16, 2, 6, 8)


def test_frames_off_the_rule_are_refused_in_one_line(tiny_wan, frames: np.ndarray) -> None:
    with pytest.raises(InvalidArgument, match=r"4k\+1 frames .* got 8: use 5"):
        encode_video(tiny_wan, frames[:8])
    with pytest.raises(InvalidArgument, match="multiples of 8"):
        encode_video(tiny_wan, frames[:, :44])
    with pytest.raises(InvalidArgument, match="uint8"):
        encode_video(tiny_wan, frames.astype(np.float32))
    with pytest.raises(InvalidArgument, match="latents of shape"):
        decode_video(tiny_wan, torch.zeros(1, 4, 3, 6, 8))


def test_latents_are_normalized_as_the_wan_pipelines_do(tiny_wan, frames: np.ndarray) -> None:
    """encode_video = WanVideoToVideoPipeline's (mode - latents_mean) * (1 / latents_std); its inverse gives back
    the VAE's raw latents, which is what WanPipeline decodes."""
    latents = encode_video(tiny_wan, frames)
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        raw = tiny_wan.vae.encode(video).latent_dist.mode()
    config = tiny_wan.vae.config
    mean = torch.tensor(config.latents_mean).view(1, 16, 1, 1, 1)
    inverse_std = 1.0 / torch.tensor(config.latents_std).view(1, 16, 1, 1, 1)
    torch.testing.assert_close(latents, (raw - mean) * inverse_std, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(denormalize_latents(tiny_wan, latents), raw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(normalize_latents(tiny_wan, raw), latents, rtol=1e-5, atol=1e-6)


def test_prompt_embeddings_match_wan_pipeline_and_pad_with_zeros(tiny_wan) -> None:
    from diffusers import WanPipeline

    prompts = ["a red ball on green grass", "a blue box"]
    embeds = encode_prompt(tiny_wan, prompts, max_length=64)
    assert embeds.shape == (2, 64, tiny_wan.text_width)
    for row, prompt in zip(embeds, prompts, strict=True):
        length = len(tiny_wan.tokenizer(prompt).input_ids)  # the prompt's tokens and its eos
        assert bool((row[:length].abs().sum(-1) > 0).all()) and bool((row[length:] == 0).all())
    pipe = WanPipeline(
        tokenizer=tiny_wan.tokenizer,
        text_encoder=tiny_wan.text_encoder,
        vae=tiny_wan.vae,
        scheduler=tiny_wan.flow_scheduler(),
        transformer=tiny_wan.transformer,
    )
    theirs, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=64, device="cpu")
    torch.testing.assert_close(embeds, theirs)
    assert encode_prompt(tiny_wan, "a red ball").shape == (1, 512, tiny_wan.text_width)  # Wan's text length


def test_wan_pipeline_runs_on_the_loaded_parts(tiny_wan) -> None:
    """diffusers' own WanPipeline, built from what load_wan returns, generates: the layout is the real one."""
    from diffusers import WanPipeline

    pipe = WanPipeline(
        tokenizer=tiny_wan.tokenizer,
        text_encoder=tiny_wan.text_encoder,
        vae=tiny_wan.vae,
        scheduler=tiny_wan.flow_scheduler(),
        transformer=tiny_wan.transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt="a red ball on green grass",
        height=48,
        width=64,
        num_frames=5,
        num_inference_steps=1,
        guidance_scale=5.0,
        max_sequence_length=32,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert out.shape == (1, 5, 48, 64, 3) and np.isfinite(out).all()


def test_a_flow_round_trip_of_the_random_transformer_stays_finite(tiny_wan, frames: np.ndarray) -> None:
    """Why tiny-wan's output is not scaled down (RANDOM_OUTPUT_SCALE): Euler steps of its velocity from the clean
    latents to noise and back move them by about one velocity's size, nowhere near overflow."""
    latents = encode_video(tiny_wan, frames)
    embeds = encode_prompt(tiny_wan, "a red ball on green grass", max_length=32)
    scheduler = tiny_wan.flow_scheduler()
    scheduler.set_timesteps(8)
    sigmas = scheduler.sigmas.tolist()  # 1 -> 0
    x = latents
    for high, low in zip(reversed(sigmas[:-1]), reversed(sigmas[1:]), strict=True):  # 0 -> 1 (inversion)
        x = x + (high - low) * predict_velocity(tiny_wan, x, low * 1000, embeds)
    for high, low in zip(sigmas[:-1], sigmas[1:], strict=True):  # 1 -> 0
        x = x + (low - high) * predict_velocity(tiny_wan, x, high * 1000, embeds)
    assert torch.isfinite(x).all() and float((x - latents).abs().max()) < 10.0
    assert decode_video(tiny_wan, x).shape == frames.shape


# ---------------------------------------------------------------------------------------------------------------
# A single-file transformer


def to_original_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers WanTransformer3DModel state dict in Wan's own key names (what Wan's and ComfyUI's single files
    hold, under model.diffusion_model.): the inverse of diffusers' convert_wan_transformer_to_diffusers."""
    renames = [
        ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
        ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
        ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
        ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
        ("condition_embedder.time_proj", "time_projection.1"),
        ("attn1", "self_attn"),
        ("attn2", "cross_attn"),
        (".to_out.0.", ".o."),
        (".to_q.", ".q."),
        (".to_k.", ".k."),
        (".to_v.", ".v."),
        ("ffn.net.0.proj", "ffn.0"),
        ("ffn.net.2", "ffn.2"),
        ("norm2", "norm__swap"),
        ("norm3", "norm2"),
        ("norm__swap", "norm3"),
        ("proj_out", "head.head"),
    ]
    original = {}
    for key, tensor in state.items():
        for old, new in renames:
            key = key.replace(old, new)
        if key == "scale_shift_table":
            key = "head.modulation"
        key = key.replace(".scale_shift_table", ".modulation")
        original["model.diffusion_model." + key] = tensor.clone()
    return original


def test_a_single_file_transformer_loads_with_a_folders_other_parts(tiny_wan, model_cache: Path, tmp_path) -> None:
    from safetensors.torch import save_file

    file = tmp_path / "wan_tiny_transformer.safetensors"
    save_file(to_original_keys(tiny_wan.transformer.state_dict()), str(file))
    model = load_wan("tiny-wan", "cpu", cache_dir=model_cache, transformer_file=file)
    assert_same_weights(model.transformer, tiny_wan.transformer)
    assert model.name.startswith(file.name)
    with pytest.raises(ModelUnavailable, match="not a .safetensors file"):
        load_wan("tiny-wan", "cpu", cache_dir=model_cache, transformer_file=tmp_path / "missing.safetensors")
