"""Model loading: the tiny preset through save_pretrained/from_pretrained, SD 1.5's exact architecture, and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from v2vz.api.errors import InvalidArgument, ModelUnavailable
from v2vz_engine import models
from v2vz_engine.models import BUILTIN_VERSION, load_model, resolve_device

PARTS = {
    "unet": ["config.json", "diffusion_pytorch_model.safetensors"],
    "vae": ["config.json", "diffusion_pytorch_model.safetensors"],
    "text_encoder": ["config.json", "model.safetensors"],
    "tokenizer": ["tokenizer_config.json", "tokenizer.json"],
    "scheduler": ["scheduler_config.json"],
}


def weights(model) -> dict[str, torch.Tensor]:
    return {
        f"{part}.{name}": tensor
        for part in ("unet", "vae", "text_encoder")
        for name, tensor in getattr(model, part).state_dict().items()
    }


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def preset_folder(cache: Path) -> Path:
    return cache / "models" / f"tiny-{BUILTIN_VERSION}"


# ---------------------------------------------------------------------------------------------------------------
# The tiny preset


def test_tiny_is_a_diffusers_folder_in_the_cache(tiny_model, model_cache: Path) -> None:
    folder = preset_folder(model_cache)
    for part, files in PARTS.items():
        for name in files:
            assert (folder / part / name).is_file(), f"{part}/{name} missing"
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert unet["_class_name"] == "UNet2DConditionModel" and unet["block_out_channels"] == [32, 64, 64, 64]
    assert json.loads((folder / "vae" / "config.json").read_text())["_class_name"] == "AutoencoderKL"
    assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "DDIMScheduler"
    # Built atomically: no staging folders left next to it.
    assert [p.name for p in (model_cache / "models").iterdir() if p.name.startswith(".")] == []


def test_tiny_loads_from_its_folder_like_any_diffusers_model(tiny_model, model_cache: Path, tmp_path: Path) -> None:
    """A copy of the folder, loaded by path, is the same model: the preset really goes through from_pretrained."""
    copy = shutil.copytree(preset_folder(model_cache), tmp_path / "my-model")
    by_path = load_model(str(copy), "cpu")
    assert_same_weights(tiny_model, by_path)
    assert by_path.name == str(copy)


def test_tiny_build_is_deterministic(tiny_model, tmp_path: Path) -> None:
    """Built again from scratch in another cache: bit-identical weights, so every test run sees the same model."""
    rebuilt = load_model("tiny", "cpu", tmp_path)
    assert preset_folder(tmp_path).is_dir()
    assert_same_weights(tiny_model, rebuilt)
    assert tiny_model.unet.conv_out.weight.abs().max() < 0.02, "the UNet output layer is scaled down"


def test_tiny_is_reused_from_the_cache_not_rebuilt(tiny_model, model_cache: Path, monkeypatch) -> None:
    def no_build(*args, **kwargs):
        raise AssertionError("the preset was rebuilt although it is in the cache")

    monkeypatch.setattr(models, "build_builtin", no_build)
    again = load_model("tiny", "cpu", model_cache)
    assert_same_weights(tiny_model, again)


def test_tiny_geometry_scheduler_and_tokenizer(tiny_model) -> None:
    from diffusers import DDIMScheduler

    assert tiny_model.native_size == 64
    assert tiny_model.vae_scale_factor == 8
    assert tiny_model.latent_scale == pytest.approx(0.18215)
    scheduler = tiny_model.scheduler
    assert isinstance(scheduler, DDIMScheduler)
    config = scheduler.config
    assert config.set_alpha_to_one is False and config.steps_offset == 1 and config.clip_sample is False
    assert config.beta_schedule == "scaled_linear" and config.num_train_timesteps == 1000
    assert len(tiny_model.tokenizer) == 49408
    assert tiny_model.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tiny_model.device == torch.device("cpu") and tiny_model.dtype == torch.float32
    for part in (tiny_model.unet, tiny_model.vae, tiny_model.text_encoder):
        assert not part.training
        assert not any(p.requires_grad for p in part.parameters())


def test_a_folder_with_another_scheduler_still_gets_the_method_ddim(model_cache: Path, tmp_path: Path) -> None:
    from diffusers import DDIMScheduler

    copy = shutil.copytree(preset_folder(model_cache), tmp_path / "pndm")
    config_path = copy / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config.update(_class_name="PNDMScheduler", set_alpha_to_one=True, steps_offset=0, skip_prk_steps=True)
    config.pop("clip_sample", None)
    config_path.write_text(json.dumps(config))
    scheduler = load_model(str(copy), "cpu").scheduler
    assert type(scheduler) is DDIMScheduler
    assert (scheduler.config.set_alpha_to_one, scheduler.config.steps_offset, scheduler.config.clip_sample) == (
        False,
        1,
        False,
    )
    scheduler.set_timesteps(50)
    assert scheduler.timesteps[0] == 981 and scheduler.timesteps[-1] == 1


# ---------------------------------------------------------------------------------------------------------------
# sd15-random: SD 1.5's architecture, checked on empty (meta) weights


@pytest.fixture(scope="module")
def sd15():
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = models.SD15.configs()
    with init_empty_weights():
        return {
            "unet": UNet2DConditionModel(**configs["unet"]),
            "vae": AutoencoderKL(**configs["vae"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])),
        }


@pytest.mark.parametrize(
    "part, count",
    [("unet", 859_520_964), ("vae", 83_653_863), ("text_encoder", 123_060_480)],
)
def test_sd15_parameter_counts(sd15, part: str, count: int) -> None:
    module = sd15[part]
    assert next(module.parameters()).device.type == "meta"  # nothing was allocated
    assert sum(p.numel() for p in module.parameters()) == count


def test_sd15_unet_layout(sd15) -> None:
    unet = sd15["unet"]
    assert tuple(unet.config.block_out_channels) == (320, 640, 1280, 1280)
    assert unet.config.cross_attention_dim == 768 and unet.config.in_channels == 4 and unet.config.sample_size == 64
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert [type(b).__name__ for b in unet.up_blocks] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    attentions = [(name, m) for name, m in unet.named_modules() if name.endswith(("attn1", "attn2"))]
    assert len(attentions) == 32  # 16 self-attention + 16 cross-attention layers
    assert {m.heads for _, m in attentions} == {8}
    assert {m.to_k.in_features for name, m in attentions if name.endswith("attn2")} == {768}
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.out_features == 320
    # SD 1.x: one transformer block per attention, 1x1-conv projections (SD 2.x uses linear ones).
    transformers = [m for name, m in unet.named_modules() if type(m).__name__ == "Transformer2DModel"]
    assert len(transformers) == 16
    assert all(len(t.transformer_blocks) == 1 and isinstance(t.proj_in, torch.nn.Conv2d) for t in transformers)


def test_sd15_text_encoder_is_clip_vit_l14(sd15) -> None:
    config = sd15["text_encoder"].config
    assert (config.num_hidden_layers, config.num_attention_heads) == (12, 12)
    assert (config.hidden_size, config.intermediate_size) == (768, 3072)
    assert (config.max_position_embeddings, config.vocab_size) == (77, 49408)
    assert config.hidden_act == "quick_gelu"


def test_sd15_vae(sd15) -> None:
    vae = sd15["vae"]
    assert tuple(vae.config.block_out_channels) == (128, 256, 512, 512)
    assert vae.config.latent_channels == 4 and vae.config.scaling_factor == pytest.approx(0.18215)
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8
    assert vae.config.sample_size // 8 == models.SD15.configs()["unet"]["sample_size"]  # native 512


# ---------------------------------------------------------------------------------------------------------------
# Models that cannot be loaded


def unavailable_cases(tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "no-unet"
    (empty / "vae").mkdir(parents=True)
    (empty / "vae" / "config.json").write_text("{}")
    return {
        "missing folder": str(tmp_path / "does" / "not" / "exist"),
        "folder without unet": str(empty),
        "hub id offline": "nobody/not-a-model",
    }


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks`:UserWarning")
@pytest.mark.parametrize("case", ["missing folder", "folder without unet", "hub id offline"])
def test_unavailable_model_is_one_line_model_unavailable(case: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = unavailable_cases(tmp_path)[case]
    with pytest.raises(ModelUnavailable) as raised:
        load_model(spec, "cpu", tmp_path / "cache")
    message = str(raised.value)
    assert "\n" not in message and spec in message


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks`:UserWarning")
@pytest.mark.parametrize(
    "case",
    [
        "missing folder",
        "folder without unet",
        "hub id offline",
    ],
)
def test_unavailable_model_says_how_to_point_at_a_model(case: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable) as raised:
        load_model(unavailable_cases(tmp_path)[case], "cpu", tmp_path / "cache")
    message = str(raised.value)
    assert "--model" in message
    for preset in models.BUILTIN_MODELS:
        assert preset in message


def test_default_model_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("V2VZ_MODEL", raising=False)
    assert models.default_model() == "CompVis/stable-diffusion-v1-4"
    monkeypatch.setenv("V2VZ_MODEL", "tiny")
    assert models.default_model() == "tiny"


def test_cache_root_order(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("V2VZ_CACHE", str(tmp_path / "env"))
    assert models.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert models.cache_root() == tmp_path / "env"
    monkeypatch.delenv("V2VZ_CACHE")
    assert models.cache_root() == Path.home() / ".cache" / "v2vz"


# ---------------------------------------------------------------------------------------------------------------
# Devices


def test_cpu_and_auto_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_invalid_argument(device: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InvalidArgument, match="--device cpu"):
        resolve_device(device)


def test_unknown_device_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="'gpu0'"):
        resolve_device("gpu0")
