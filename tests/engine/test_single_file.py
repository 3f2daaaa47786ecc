"""Single-file checkpoints: the built-in `tiny` exported to the original (A1111/LDM) key layout by our own code, loaded
back through `load_model(FILE)` to exactly the folder's model and edit; each bad file refused in one line before any
weights are read; the family and prediction-type rules."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from v2vz.api.errors import ModelUnavailable
from v2vz.api.job import EditOptions
from v2vz_engine import models, single_file
from v2vz_engine.model_source import locate
from v2vz_engine.models import BUILTIN_VERSION, load_model

# ---------------------------------------------------------------------------------------------------------------
# Our exporter: diffusers names -> the original single-file names (CompVis/Stability's LDM layout)

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0"}
RESNET |= {"conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str, names: dict[str, str]) -> str:
    first, _, tail = rest.partition(".")
    return f"{names.get(first, first)}.{tail}"


def unet_key(key: str, layers: int, attention_ups: set[int]) -> str:
    """A diffusers UNet2DConditionModel key (SD 1.x layout) as `model.diffusion_model.*`."""
    per = layers + 1
    fixed = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0"}
    fixed |= {"time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
    fixed |= {"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}  # SDXL
    for old, new in fixed.items():
        if key.startswith(old + "."):
            return single_file.UNET + new + key[len(old) :]
    rules = [
        (
            r"down_blocks\.(\d)\.resnets\.(\d)\.(.*)",
            lambda i, j, r: f"input_blocks.{per * i + j + 1}.0.{_resnet(r, RESNET)}",
        ),
        (r"down_blocks\.(\d)\.attentions\.(\d)\.(.*)", lambda i, j, r: f"input_blocks.{per * i + j + 1}.1.{r}"),
        (r"down_blocks\.(\d)\.downsamplers\.(0)\.conv\.(.*)", lambda i, j, r: f"input_blocks.{per * (i + 1)}.0.op.{r}"),
        (r"mid_block\.resnets\.(\d)\.()(.*)", lambda j, _, r: f"middle_block.{2 * j}.{_resnet(r, RESNET)}"),
        (r"mid_block\.attentions\.(0)\.()(.*)", lambda j, _, r: f"middle_block.1.{r}"),
        (
            r"up_blocks\.(\d)\.resnets\.(\d)\.(.*)",
            lambda i, j, r: f"output_blocks.{per * i + j}.0.{_resnet(r, RESNET)}",
        ),
        (r"up_blocks\.(\d)\.attentions\.(\d)\.(.*)", lambda i, j, r: f"output_blocks.{per * i + j}.1.{r}"),
        (
            r"up_blocks\.(\d)\.upsamplers\.(0)\.conv\.(.*)",
            lambda i, j, r: f"output_blocks.{per * i + layers}.{2 if i in attention_ups else 1}.conv.{r}",
        ),
    ]
    for pattern, rename in rules:
        found = re.fullmatch(pattern, key)
        if found:
            a, b, rest = found.groups()
            return single_file.UNET + rename(int(a), int(b) if b else 0, rest)
    raise AssertionError(f"no LDM name for the UNet key {key}")


def vae_key(key: str, tensor: torch.Tensor, blocks: int) -> tuple[str, torch.Tensor]:
    """A diffusers AutoencoderKL key as `first_stage_model.*` (mid attention as 1x1 convolutions, decoder reversed)."""
    vae_resnet = {"conv_shortcut": "nin_shortcut"}
    rules = [
        (
            r"encoder\.down_blocks\.(\d)\.resnets\.(\d)\.(.*)",
            lambda i, j, r: f"encoder.down.{i}.block.{j}.{_resnet(r, vae_resnet)}",
        ),
        (
            r"encoder\.down_blocks\.(\d)\.downsamplers\.0\.conv\.()(.*)",
            lambda i, j, r: f"encoder.down.{i}.downsample.conv.{r}",
        ),
        (
            r"decoder\.up_blocks\.(\d)\.resnets\.(\d)\.(.*)",
            lambda i, j, r: f"decoder.up.{blocks - 1 - i}.block.{j}.{_resnet(r, vae_resnet)}",
        ),
        (
            r"decoder\.up_blocks\.(\d)\.upsamplers\.0\.conv\.()(.*)",
            lambda i, j, r: f"decoder.up.{blocks - 1 - i}.upsample.conv.{r}",
        ),
    ]
    for pattern, rename in rules:
        found = re.fullmatch(pattern, key)
        if found:
            a, b, rest = found.groups()
            return single_file.VAE + rename(int(a), int(b) if b else 0, rest), tensor
    found = re.fullmatch(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d)\.(.*)", key)
    if found:
        side, kind, index, rest = found.groups()
        if kind == "resnets":
            return f"{single_file.VAE}{side}.mid.block_{int(index) + 1}.{_resnet(rest, vae_resnet)}", tensor
        name, _, leaf = rest.rpartition(".")
        conv = tensor[:, :, None, None] if leaf == "weight" and name != "group_norm" else tensor
        return f"{single_file.VAE}{side}.mid.attn_1.{VAE_ATTENTION[name]}.{leaf}", conv
    return single_file.VAE + key.replace("conv_norm_out", "norm_out"), tensor


OPEN_CLIP_NAMES = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2"}
OPEN_CLIP_NAMES |= {"mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def open_clip_state_of(encoder: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIP text encoder in OpenCLIP's names (SDXL's second encoder): q, k, v fused into in_proj, the
    projection stored transposed."""
    state = {key.removeprefix("text_model."): value for key, value in encoder.state_dict().items()}
    out = {
        prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
        prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
        prefix + "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    for layer in range(encoder.config.num_hidden_layers):
        ours, theirs = f"encoder.layers.{layer}.", f"{prefix}transformer.resblocks.{layer}."
        for leaf in ("weight", "bias"):
            fused = [state.pop(f"{ours}self_attn.{name}_proj.{leaf}") for name in ("q", "k", "v")]
            out[f"{theirs}attn.in_proj_{leaf}"] = torch.cat(fused)
            for old, new in OPEN_CLIP_NAMES.items():
                out[f"{theirs}{new}.{leaf}"] = state.pop(f"{ours}{old}.{leaf}")
    assert set(state) <= {"embeddings.position_ids"}, sorted(state)
    return out


def export_single_file(model: models.LoadedModel, path: Path) -> Path:
    """`model` as one .safetensors in the original layout (UNet, VAE, text encoders), as A1111 would have it: SD 1.x
    (`cond_stage_model.transformer.*`) or SDXL (`conditioner.embedders.0.transformer.*`, `.1.model.*`)."""
    xl = getattr(model, "text_encoder_2", None) is not None
    unet_config = model.unet.config
    attention_ups = {i for i, kind in enumerate(unet_config.up_block_types) if "CrossAttn" in kind}
    state: dict[str, torch.Tensor] = {}
    for key, tensor in model.unet.state_dict().items():
        state[unet_key(key, unet_config.layers_per_block, attention_ups)] = tensor
    for key, tensor in model.vae.state_dict().items():
        name, value = vae_key(key, tensor, len(model.vae.config.block_out_channels))
        state[name] = value
    clip_l = single_file.XL_CLIP_L if xl else single_file.CLIP_L
    for key, tensor in model.text_encoder.state_dict().items():
        state[clip_l + ("" if key.startswith("text_model.") else "text_model.") + key] = tensor
    if xl:
        state |= open_clip_state_of(model.text_encoder_2, single_file.XL_OPEN_CLIP)
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path


def exported(model: models.LoadedModel, name: str, cache: Path, folder: Path) -> Path:
    """NAME.safetensors and its configs beside it (NAME.config/: tiny widths fit no shipped config)."""
    path = export_single_file(model, folder / f"{name}.safetensors")
    shutil.copytree(cache / "models" / f"{name}-{BUILTIN_VERSION}", folder / f"{name}.config", ignore=_no_weights)
    return path


@pytest.fixture(scope="module")
def tiny_file(tiny_model, model_cache, tmp_path_factory) -> Path:
    return exported(tiny_model, "tiny", model_cache, tmp_path_factory.mktemp("single"))


def _no_weights(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name.endswith(".safetensors")]


# ---------------------------------------------------------------------------------------------------------------
# Loading


def test_the_exported_file_loads_as_exactly_the_folder_model(tiny_model, tiny_file: Path) -> None:
    located = locate(str(tiny_file))
    assert located.kind == "file" and located.checkpoint.family == "sd1"
    assert located.checkpoint.prediction == "epsilon" and located.checkpoint.configs == tiny_file.with_suffix(".config")
    loaded = load_model(str(tiny_file), "cpu")
    assert loaded.name == str(tiny_file) and loaded.dtype == torch.float32
    for part in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(loaded, part).state_dict(), getattr(tiny_model, part).state_dict()
        assert ours.keys() == theirs.keys(), part
        assert all(torch.equal(ours[name], theirs[name]) for name in ours), part
        assert not any(p.device.type == "meta" for p in getattr(loaded, part).parameters())
    assert loaded.scheduler.config == tiny_model.scheduler.config
    assert loaded.tokenizer("a fox").input_ids == tiny_model.tokenizer("a fox").input_ids


def test_a_ckpt_of_the_same_tensors_loads_the_same_model(tiny_model, tiny_file: Path) -> None:
    """A Lightning-style .ckpt ({"state_dict": ...}) goes through torch.load(weights_only=True, mmap=True)."""
    from safetensors.torch import load_file

    ckpt = tiny_file.with_suffix(".ckpt")  # beside tiny.safetensors: the same tiny.config/ applies
    torch.save({"state_dict": load_file(str(tiny_file)), "global_step": 1}, ckpt)
    loaded = load_model(str(ckpt), "cpu")
    assert locate(str(ckpt)).checkpoint.family == "sd1"
    for part in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(loaded, part).state_dict(), getattr(tiny_model, part).state_dict()
        assert all(torch.equal(ours[name], theirs[name]) for name in theirs), part


def test_an_edit_from_the_file_equals_the_folder_edit_exactly(pipeline, tiny_file: Path, clip_frames) -> None:
    from v2vz_engine.pipeline import VideoEditPipeline

    options = EditOptions(steps=2)
    from_file = VideoEditPipeline(load_model(str(tiny_file), "cpu"))
    ours = from_file.edit(clip_frames[:2], "a rabbit in a meadow", "a fox in a meadow", options)
    theirs = pipeline.edit(clip_frames[:2], "a rabbit in a meadow", "a fox in a meadow", options)
    assert ours.frames.shape == (2, 64, 64, 3)
    assert (ours.frames == theirs.frames).all()


@pytest.fixture(scope="module", params=["tiny-xl", "tiny-v"])
def folder_and_file(request, model_cache, tmp_path_factory) -> tuple[str, models.LoadedModel, models.LoadedModel]:
    """tiny-xl (two text encoders, OpenCLIP's fused names) and tiny-v (v-prediction, zero-terminal-SNR, trailing
    steps: read from NAME.config/'s scheduler), each loaded from its folder and from its exported single file."""
    name = request.param
    folder_model = load_model(name, "cpu", model_cache)
    path = exported(folder_model, name, model_cache, tmp_path_factory.mktemp(name))
    return name, folder_model, load_model(str(path), "cpu")


def test_sdxl_and_v_prediction_exports_load_as_their_folders(folder_and_file) -> None:
    name, folder_model, file_model = folder_and_file
    checkpoint = locate(file_model.name).checkpoint
    expected = ("sdxl", "epsilon") if name == "tiny-xl" else ("sd1", "v_prediction")
    assert (checkpoint.family, checkpoint.prediction) == expected
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(file_model, part, None), getattr(folder_model, part, None)
        assert (ours is None) == (theirs is None), part
        if ours is not None:
            assert all(torch.equal(ours.state_dict()[k], v) for k, v in theirs.state_dict().items()), part
    assert file_model.scheduler.config == folder_model.scheduler.config
    assert file_model.zeros_for_empty_prompt == folder_model.zeros_for_empty_prompt
    for part in ("tokenizer", "tokenizer_2"):
        ours, theirs = getattr(file_model, part), getattr(folder_model, part)
        assert (ours is None) == (theirs is None), part
        if ours is not None:
            assert ours("a fox", padding="max_length").input_ids == theirs("a fox", padding="max_length").input_ids


def test_sdxl_and_v_prediction_exports_edit_as_their_folders(folder_and_file, clip_frames) -> None:
    """The same 2-step edit exactly. Two frames, not one: on the CPU a batch-1 UNet call's result depends on the
    weights' address alignment (oneDNN picks its kernel by it), and both loaders leave the weights where safetensors
    maps them in their files."""
    from v2vz_engine.pipeline import VideoEditPipeline

    _, folder_model, file_model = folder_and_file
    edits = [
        VideoEditPipeline(model).edit(clip_frames[:2], "a rabbit", "a fox", EditOptions(steps=2)).frames
        for model in (file_model, folder_model)
    ]
    assert (edits[0] == edits[1]).all()


def test_a_file_of_another_width_without_configs_is_refused_by_name(tiny_file: Path, tmp_path: Path) -> None:
    alone = shutil.copy(tiny_file, tmp_path / "tiny.safetensors")
    with pytest.raises(ModelUnavailable, match=r"SD 1\.x-shaped but with cross-attention width 32.*tiny\.config/"):
        locate(str(alone))


# ---------------------------------------------------------------------------------------------------------------
# The family from the keys (header only: these files hold one byte per tensor at most)


def fake_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A safetensors file whose header names `shapes`; each tensor is empty-ish (shape kept, a 1-element stand-in
    where the real one would be large: the header is all the family rules read)."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        header[key] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + 2]}
        offset += 2
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * offset)
    return path


SD1 = {
    single_file.UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
    single_file.UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    single_file.CLIP_L + "text_model.embeddings.position_embedding.weight": (77, 768),
    single_file.VAE + "encoder.conv_in.weight": (128, 3, 3, 3),
}
SD2 = {**{k: v for k, v in SD1.items() if not k.startswith("cond")}}
SD2[single_file.UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = (320, 1024)
SD2[single_file.OPEN_CLIP + "token_embedding.weight"] = (49408, 1024)
XL = {
    single_file.UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
    single_file.UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
    single_file.XL_OPEN_CLIP + "transformer.resblocks.9.mlp.c_proj.bias": (1280,),
    single_file.VAE + "encoder.conv_in.weight": (128, 3, 3, 3),
}


def test_families_and_prediction_types_from_keys(tmp_path: Path) -> None:
    sd1 = locate(str(fake_checkpoint(tmp_path / "a.safetensors", SD1))).checkpoint
    assert (sd1.family, sd1.prediction, sd1.configs.name) == ("sd1", "epsilon", "sd1")
    sd2 = single_file.inspect(fake_checkpoint(tmp_path / "b.safetensors", SD2))
    assert (sd2.family, sd2.prediction, sd2.configs.name) == ("sd2", "v_prediction", "sd2-v")
    assert "SD 2.x default" in sd2.prediction_reason
    (tmp_path / "b.yaml").write_text("model:\n  params:\n    parameterization: 'eps'\n")  # A1111's sibling yaml
    sd2_base = single_file.inspect(tmp_path / "b.safetensors")
    assert (sd2_base.prediction, sd2_base.configs.name) == ("epsilon", "sd2-base")
    (tmp_path / "b.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert single_file.inspect(tmp_path / "b.safetensors").prediction == "v_prediction"
    v_key = single_file.inspect(fake_checkpoint(tmp_path / "c.safetensors", {**SD1, "v_pred": (0,)}))
    assert (v_key.family, v_key.prediction, v_key.prediction_reason) == ("sd1", "v_prediction", "its v_pred key")
    xl = single_file.inspect(fake_checkpoint(tmp_path / "d.safetensors", XL))
    assert (xl.family, xl.prediction, xl.configs.name, xl.family_name) == ("sdxl", "epsilon", "sdxl", "SDXL base")


def test_shipped_sd1_configs_are_the_sd15_architecture() -> None:
    """SD 1.x's shipped configs are exactly the built-in sd15-random's (one architecture, written once)."""
    configs = models.SD15.configs()
    for part in ("unet", "vae", "text_encoder"):
        shipped = json.loads((single_file.DATA / "sd1" / part / "config.json").read_text())
        expected = json.loads(json.dumps(configs[part]))
        assert {key: shipped[key] for key in expected} == expected, part


def test_shipped_configs_build_models_whose_keys_the_conversions_fill() -> None:
    """Each shipped UNet and VAE config, built empty (meta device: no memory), named in the original layout by our
    exporter and converted back by diffusers' maps, gives exactly its own parameters: a real file of that family fills
    every one of them."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    widths = {"sd1": 768, "sd2-v": 1024, "sd2-base": 1024, "sdxl": 2048}
    for family, width in widths.items():
        folder = single_file.DATA / family
        unet = single_file._empty(UNet2DConditionModel, UNet2DConditionModel.load_config(folder, subfolder="unet"))
        vae = single_file._empty(AutoencoderKL, AutoencoderKL.load_config(folder, subfolder="vae"))
        assert unet.config.cross_attention_dim == width and unet.config.in_channels == 4
        ups = {i for i, kind in enumerate(unet.config.up_block_types) if "CrossAttn" in kind}
        named = {unet_key(key, 2, ups): value for key, value in unet.state_dict().items()}
        assert convert_ldm_unet_checkpoint(named, unet.config).keys() == unet.state_dict().keys(), family
        named = dict(vae_key(key, value, 4) for key, value in vae.state_dict().items())
        assert convert_ldm_vae_checkpoint(named, vae.config).keys() == vae.state_dict().keys(), family


def open_clip_state(prefix: str, width: int, layers: int) -> dict[str, torch.Tensor]:
    """OpenCLIP's text tower as SD 2.x and SDXL checkpoints name it (fused q/k/v), on the meta device."""
    with torch.device("meta"):
        state = {prefix + "token_embedding.weight": torch.empty(49408, width)}
        state |= {prefix + "positional_embedding": torch.empty(77, width), prefix + "logit_scale": torch.empty(())}
        state |= {prefix + "ln_final.weight": torch.empty(width), prefix + "ln_final.bias": torch.empty(width)}
        state[prefix + "text_projection"] = torch.empty(width, width)
        for layer in range(layers):
            block = f"{prefix}transformer.resblocks.{layer}."
            for name, shape in {
                "ln_1": (width,),
                "ln_2": (width,),
                "attn.in_proj": (3 * width, width),
                "attn.out_proj": (width, width),
                "mlp.c_fc": (4 * width, width),
                "mlp.c_proj": (width, 4 * width),
            }.items():
                weight, bias = ("in_proj_weight", "in_proj_bias") if name == "attn.in_proj" else ("weight", "bias")
                stem = block + ("attn." if name == "attn.in_proj" else name + ".")
                state[stem + weight] = torch.empty(shape)
                state[stem + bias] = torch.empty(shape[0])
    return state


def test_shipped_open_clip_configs_take_every_tensor_of_the_published_layout() -> None:
    """SD 2.x's ViT-H (24 blocks, the last dropped: SD 2.x reads the penultimate layer) and SDXL's bigG (32 blocks,
    with its projection) fill exactly the shipped text encoder configs, shape for shape."""
    import transformers
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    cases = [
        ("sd2-v", "text_encoder", single_file.OPEN_CLIP, 1024, 24, "CLIPTextModel"),
        ("sdxl", "text_encoder_2", single_file.XL_OPEN_CLIP, 1280, 32, "CLIPTextModelWithProjection"),
    ]
    for family, part, prefix, width, layers, cls_name in cases:
        config = transformers.CLIPTextConfig.from_pretrained(single_file.DATA / family / part)
        model = single_file._empty(getattr(transformers, cls_name), config)
        expected = model.state_dict()
        converted = convert_open_clip_checkpoint(model, open_clip_state(prefix, width, layers), prefix=prefix)
        renamed = {single_file._as_expected(key, set(expected)): value for key, value in converted.items()}
        kept = {key: value for key, value in renamed.items() if key in expected}
        assert set(expected) - set(kept) <= {"embeddings.position_ids", "text_model.embeddings.position_ids"}, family
        assert all(value.shape == expected[key].shape for key, value in kept.items()), family


# ---------------------------------------------------------------------------------------------------------------
# One-line refusals, before any weights are read


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Every kind of file --model must refuse, with a phrase its one line must hold."""
    unet_in = single_file.UNET + "input_blocks.0.0.weight"
    (folder / "empty.safetensors").write_bytes(b"")
    whole = fake_checkpoint(folder / "whole.safetensors", SD1).read_bytes()
    (folder / "truncated.safetensors").write_bytes(whole[:-3])
    (folder / "cut-header.safetensors").write_bytes(whole[:20])
    with zipfile.ZipFile(folder / "zip.safetensors", "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    (folder / "text.safetensors").write_text("these are not the weights you are looking for\n" * 20)
    (folder / "text.ckpt").write_text("not a pickle\n")
    return {
        "empty": (folder / "empty.safetensors", "is empty"),
        "truncated": (folder / "truncated.safetensors", "is truncated: its tensors need"),
        "cut header": (folder / "cut-header.safetensors", "is truncated or not a safetensors file"),
        "zip": (folder / "zip.safetensors", "is a zip archive"),
        "text": (folder / "text.safetensors", "not a safetensors file"),
        "text ckpt": (folder / "text.ckpt", "is not a torch zip checkpoint"),
        "lora": (
            fake_checkpoint(
                folder / "lora.safetensors", {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}
            ),
            "is a LoRA",
        ),
        "vae": (
            fake_checkpoint(folder / "vae.safetensors", {"encoder.conv_in.weight": (128, 3, 3, 3)}),
            "is a VAE alone",
        ),
        "inpainting": (
            fake_checkpoint(folder / "inpaint.safetensors", {**SD1, unet_in: (320, 9, 3, 3)}),
            "is an inpainting model",
        ),
        "sd3": (
            fake_checkpoint(
                folder / "sd3.safetensors",
                {single_file.UNET + "joint_blocks.0.context_block.adaLN_modulation.1.bias": (9216,)},
            ),
            "is Stable Diffusion 3",
        ),
        "flux": (
            fake_checkpoint(folder / "flux.safetensors", {"double_blocks.0.img_attn.norm.key_norm.scale": (128,)}),
            "is Flux",
        ),
        "refiner": (
            fake_checkpoint(
                folder / "refiner.safetensors",
                {"conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,)},
            ),
            "is the SDXL refiner",
        ),
        "video": (
            fake_checkpoint(
                folder / "svd.safetensors",
                {**SD1, single_file.UNET + "input_blocks.1.0.time_stack.in_layers.0.weight": (320,)},
            ),
            "is a video model (Stable Video Diffusion)",
        ),
    }


def test_each_bad_file_is_one_line_naming_what_was_expected(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(single_file, "read_weights", lambda *a: pytest.fail("weights read for a refused file"))
    for kind, (path, phrase) in bad_files(tmp_path).items():
        with pytest.raises(ModelUnavailable) as refused:
            load_model(str(path), "cpu")
        said = str(refused.value)
        assert phrase in said and str(path) in said and "\n" not in said, (kind, said)
        assert "SD 1.x, SD 2.x or SDXL base checkpoint" in said, (kind, said)


def test_a_ckpt_is_read_with_weights_only_rules(tiny_model, tmp_path: Path) -> None:
    """A torch zip .ckpt of plain tensors is inspected torch-free; one that needs another global is refused."""
    shapes_only = {key: torch.zeros(1).expand(*shape).clone() for key, shape in list(SD1.items())}
    torch.save({"state_dict": shapes_only, "global_step": 10}, tmp_path / "ok.ckpt")
    assert single_file.inspect(tmp_path / "ok.ckpt").family == "sd1"
    torch.save({"state_dict": shapes_only, "callback": torch.nn.Identity()}, tmp_path / "code.ckpt")
    with pytest.raises(ModelUnavailable, match=r"needs torch\.nn\.modules.*weights-only loading refuses"):
        locate(str(tmp_path / "code.ckpt"))
