"""Single-file checkpoints (A1111, ComfyUI, CivitAI): which model a file holds, read from its tensor names and shapes
without loading its weights, and its loading with no network through component configs shipped with the project.

Why by keys: a file's name says nothing reliable, and a wrong guess would surface minutes later as a shape error or a
garbage edit. The header of a .safetensors file (and the pickle of a .ckpt, read by a restricted unpickler that never
builds a tensor) names every tensor and its shape, so `inspect` answers in milliseconds, torch-free, and refuses what
cannot edit alone (inpainting, the SDXL refiner, SD3, Flux, video models) or is not a model at all (a LoRA, a VAE
alone, a truncated or mislabelled file) in one line. docs/models.md documents the rules.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from v2vz.api.errors import ModelUnavailable

SUFFIXES = (".safetensors", ".ckpt")
DATA = Path(__file__).parent / "data" / "single_file"
CONFIG_SUFFIX = ".config"  # NAME.config/ beside NAME.safetensors: diffusers configs that override the shipped ones
FAMILIES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL base"}
EXPECTED = "an SD 1.x, SD 2.x or SDXL base checkpoint (.safetensors or .ckpt, original single-file layout)"
UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP_L = "cond_stage_model.transformer."  # SD 1.x: OpenAI CLIP ViT-L/14 as transformers stores it
OPEN_CLIP = "cond_stage_model.model."  # SD 2.x: OpenCLIP ViT-H/14
XL_CLIP_L, XL_OPEN_CLIP = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."
KEPT_PREFIXES = (UNET, VAE, "cond_stage_model.", "conditioner.")  # EMA copies, losses and the rest are never read
STANDARD_CROSS_WIDTH = {"sd1": 768, "sd2": 1024, "sdxl": 2048}
MAX_HEADER = 100 * 2**20  # a safetensors header is kilobytes; more is not a safetensors file

# Families refused at once: (what it is, any of these keys present). After diffusers' CHECKPOINT_KEY_NAMES.
REFUSED_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Stable Diffusion 3",
        ("joint_blocks.0.context_block.adaLN_modulation.1.bias", "joint_blocks.0.x_block.attn.qkv.weight"),
    ),
    ("Flux", ("double_blocks.0.img_attn.norm.key_norm.scale", "single_stream_modulation.lin.weight")),
    ("a video model (LTX-Video)", ("patchify_proj.weight", "transformer_blocks.27.scale_shift_table")),
    ("a video model (Mochi)", ("blocks.0.attn.qkv_x.weight",)),
    ("a video model (HunyuanVideo)", ("txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.bias",)),
    ("a video model (Wan)", ("head.modulation",)),
    ("a video model (Cosmos)", ("net.x_embedder.proj.1.weight",)),
    ("Stable Cascade", ("clip_txt_mapper.weight", "down_blocks.1.0.channelwise.0.weight")),
    ("AuraFlow", ("double_layers.0.attn.w2q.weight",)),
    ("Sana", ("blocks.0.cross_attn.q_linear.weight",)),
    ("a ControlNet", ("control_model.time_embed.0.weight", "controlnet_cond_embedding.conv_in.weight")),
)
VIDEO_MARKERS = (("motion_modules.", "AnimateDiff"), (".time_stack.", "Stable Video Diffusion"))
IN_CHANNELS_FAMILIES = {9: "an inpainting model", 8: "an InstructPix2Pix model", 7: "an upscaler (SD x4 upscaler)"}


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint file holds: its family, how its UNet predicts, and which configs build its components."""

    path: Path
    family: str  # a FAMILIES key
    prediction: str  # "epsilon" or "v_prediction"
    prediction_reason: str  # why: a v_pred key, a sibling .yaml, the family's default, a config folder
    size: int  # bytes
    configs: Path  # the folder of component configs (shipped, or NAME.config/ beside the file)

    @property
    def family_name(self) -> str:
        return FAMILIES[self.family]


def is_checkpoint_path(spec: str | Path) -> bool:
    """A name that means a single file: ends in .safetensors or .ckpt (whether or not it exists)."""
    return str(spec).lower().endswith(SUFFIXES)


def refuse(path: Path, why: str) -> ModelUnavailable:
    """The one line a bad file gets: the file, what is wrong, what --model expects (`reason`: the what alone, for
    `v2vz models`)."""
    error = ModelUnavailable(f"{path} {why}: --model takes {EXPECTED}, a diffusers folder, a hub id or a built-in one")
    error.reason = why
    return error


# ---------------------------------------------------------------------------------------------------------------
# Model folders: where `v2vz models` looks for checkpoint files

MODELS_ENV = "V2VZ_MODELS"  # folders, separated as $PATH is
APP_LAYOUTS = (Path("models") / "Stable-diffusion", Path("models") / "checkpoints")  # A1111's, ComfyUI's


def model_dirs(given: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    """The folders to search: those given (--models-dir), then $V2VZ_MODELS's; an A1111 or ComfyUI root stands for
    its checkpoint folder (models/Stable-diffusion, models/checkpoints)."""
    named = [*given, *(Path(part) for part in os.environ.get(MODELS_ENV, "").split(os.pathsep) if part.strip())]
    found: list[Path] = []
    for folder in (Path(entry).expanduser() for entry in named):
        inside = [folder / layout for layout in APP_LAYOUTS if (folder / layout).is_dir()]
        for candidate in inside or [folder]:
            if candidate not in found:
                found.append(candidate)
    return found


def find_checkpoints(folders: list[Path], depth: int = 3) -> list[tuple[Path, Path]]:
    """(folder, file) for every .safetensors / .ckpt in `folders` and their subfolders (A1111 allows them), sorted,
    hidden entries skipped; a missing folder holds nothing."""
    found: list[tuple[Path, Path]] = []
    for folder in folders:
        for path in sorted(_walk(folder, depth)):
            found.append((folder, path))
    return found


def _walk(folder: Path, depth: int):
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and depth > 0:
            yield from _walk(entry, depth - 1)
        elif entry.is_file() and is_checkpoint_path(entry):
            yield entry


# ---------------------------------------------------------------------------------------------------------------
# Tensor names and shapes, no weights read


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, from the header (safetensors) or a restricted unpickling (.ckpt)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise refuse(path, f"cannot be read ({exc.strerror})") from exc
    if size == 0:
        raise refuse(path, "is empty")
    if path.suffix.lower() == ".ckpt":
        return _ckpt_shapes(path)
    return _safetensors_shapes(path, size)


def _safetensors_shapes(path: Path, size: int) -> dict[str, tuple[int, ...]]:
    """Parse the header ourselves: an 8-byte length, a JSON table; every tensor's bytes must lie inside the file."""
    with open(path, "rb") as handle:
        start = handle.read(8)
        if start[:2] == b"PK":
            raise refuse(path, "is a zip archive (a .ckpt pickle or a packed folder?), not a safetensors file")
        if len(start) < 8:
            raise refuse(path, f"is truncated ({size} bytes, not even a safetensors header)")
        (length,) = struct.unpack("<Q", start)
        if length > min(size - 8, MAX_HEADER):
            raise refuse(path, f"is truncated or not a safetensors file (its header claims {length} bytes)")
        raw = handle.read(length)
    try:
        header = json.loads(raw)
        entries = {key: entry for key, entry in header.items() if key != "__metadata__"}
        shapes = {key: tuple(int(n) for n in entry["shape"]) for key, entry in entries.items()}
        end = max((int(entry["data_offsets"][1]) for entry in entries.values()), default=0)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise refuse(path, "is not a safetensors file (its header is not a tensor table)") from exc
    if 8 + length + end > size:
        raise refuse(path, f"is truncated: its tensors need {8 + length + end} bytes, the file has {size}")
    return shapes


class _Shape:
    """A tensor as the restricted unpickler sees it: only its shape."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(int(n) for n in shape)


def _rebuild_tensor(storage, offset, shape, *rest) -> _Shape:
    return _Shape(shape)


def _rebuild_parameter(data, *rest):
    return data


class _ShapeUnpickler(pickle.Unpickler):
    """torch's weights-only rules, torch-free: dicts, tensors and storages only; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return object
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        return None


def _ckpt_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """A .ckpt is a torch zip pickle; we read it as torch.load(weights_only=True) would, building no tensor."""
    if not zipfile.is_zipfile(path):
        raise refuse(
            path,
            "is not a torch zip checkpoint (truncated, a legacy pickle, or not one): convert it to .safetensors",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next((name for name in archive.namelist() if name.endswith("/data.pkl")), None)
            if pickled is None:
                raise refuse(path, "is a zip archive without a torch pickle (data.pkl), not a checkpoint")
            with archive.open(pickled) as stream:
                loaded = _ShapeUnpickler(stream).load()
    except pickle.UnpicklingError as exc:
        raise refuse(
            path,
            f"needs {exc} to unpickle, which weights-only loading refuses (it could run code): convert it to "
            ".safetensors",
        ) from exc
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise refuse(path, f"is a damaged or truncated .ckpt ({type(exc).__name__})") from exc
    return _state_shapes(path, loaded)


def _state_shapes(path: Path, loaded: object) -> dict[str, tuple[int, ...]]:
    """The tensors of a checkpoint's state dict (Lightning nests it under 'state_dict')."""
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise refuse(path, "holds no state dict of tensors")
    return {str(key): value.shape for key, value in loaded.items() if isinstance(value, _Shape)}


# ---------------------------------------------------------------------------------------------------------------
# The family, the prediction type, the configs


def inspect(path: str | Path) -> CheckpointInfo:
    """What the checkpoint at `path` is, or ModelUnavailable with one line; reads names and shapes only."""
    path = Path(path).expanduser()
    shapes = tensor_shapes(path)
    family = detect_family(path, shapes)
    prediction, reason = prediction_type(path, shapes, family)
    configs = config_folder(path, family, prediction)
    sibling = path.with_suffix(CONFIG_SUFFIX)
    if configs == sibling:
        scheduler = _read_json(configs / "scheduler" / "scheduler_config.json") or {}
        if "prediction_type" in scheduler:
            prediction, reason = scheduler["prediction_type"], f"{sibling.name}/scheduler says so"
    else:
        width = _cross_width(shapes, family)
        if width != STANDARD_CROSS_WIDTH[family]:
            raise refuse(
                path,
                f"is {FAMILIES[family]}-shaped but with cross-attention width {width}, which no shipped config fits "
                f"(put its diffusers configs in {sibling.name}/)",
            )
    return CheckpointInfo(path, family, prediction, reason, path.stat().st_size, configs)


def _has(shapes: dict, *names: str) -> bool:
    """Any of `names`, with or without the UNet's prefix."""
    return any(name in shapes or UNET + name in shapes for name in names)


def detect_family(path: Path, shapes: dict[str, tuple[int, ...]]) -> str:
    """sd1, sd2 or sdxl, from distinctive keys; everything else is refused in one line that names what it is."""
    for what, keys in REFUSED_FAMILIES:
        if _has(shapes, *keys):
            raise refuse(path, f"is {what}, which v2vz cannot edit with")
    for marker, what in VIDEO_MARKERS:
        if any(marker in key for key in shapes):
            raise refuse(path, f"is a video model ({what}), which v2vz cannot edit with")
    xl_base = any(key.startswith(XL_OPEN_CLIP + "transformer.resblocks.") for key in shapes)
    if not xl_base and any(key.startswith("conditioner.embedders.0.model.transformer.resblocks.") for key in shapes):
        raise refuse(path, "is the SDXL refiner, which cannot edit alone (it only refines an SDXL base's latents)")
    if not any(key.startswith(UNET) for key in shapes):
        raise refuse(path, f"is {_foreign_kind(shapes)}, not a whole model")
    in_conv = shapes.get(UNET + "input_blocks.0.0.weight")
    in_channels = in_conv[1] if in_conv and len(in_conv) == 4 else None
    if in_channels != 4:
        what = IN_CHANNELS_FAMILIES.get(in_channels, f"a UNet with {in_channels} input channels")
        raise refuse(path, f"is {what}{' (SDXL)' if xl_base else ''}, which cannot edit alone")
    if xl_base:
        family = "sdxl"
    elif any(key.startswith(OPEN_CLIP) for key in shapes):
        family = "sd2"
    elif any(key.startswith(CLIP_L) for key in shapes):
        family = "sd1"
    else:
        raise refuse(path, "has a UNet but no text encoder (a UNet-only file)")
    if not any(key.startswith(VAE) for key in shapes):
        raise refuse(path, f"is {FAMILIES[family]} without its VAE (first_stage_model.*)")
    return family


def _foreign_kind(shapes: dict[str, tuple[int, ...]]) -> str:
    """What a file without a UNet is, for the refusal."""
    keys = list(shapes)
    if any("lora" in key.lower() or key.startswith(("lycoris_", "hada_")) for key in keys):
        return "a LoRA (load it with --lora)"
    if any(key.startswith(("encoder.conv_in", "decoder.conv_out", VAE + "encoder.")) for key in keys):
        return "a VAE alone"
    if any(key.startswith(("text_model.", "cond_stage_model.", "conditioner.")) for key in keys):
        return "a text encoder alone"
    if not keys:
        return "a safetensors file with no tensors"
    return f"not a Stable Diffusion checkpoint (no {UNET}* keys; first key {keys[0][:60]!r})"


def _cross_width(shapes: dict[str, tuple[int, ...]], family: str) -> int | None:
    """The UNet's cross-attention width (the text encoder's): 768 SD 1.x, 1024 SD 2.x, 2048 SDXL."""
    block = "input_blocks.4.1" if family == "sdxl" else "input_blocks.1.1"
    shape = shapes.get(f"{UNET}{block}.transformer_blocks.0.attn2.to_k.weight")
    return shape[1] if shape and len(shape) == 2 else None


V_YAML = re.compile(r"""^\s*parameterization:\s*["']?v["']?\s*(#.*)?$""", re.MULTILINE)


def prediction_type(path: Path, shapes: dict, family: str) -> tuple[str, str]:
    """SD 2.x 512-base (epsilon) and 768 (v) have identical keys: a `v_pred` key, then a sibling NAME.yaml (A1111's
    rule: `parameterization: "v"` means v, any other yaml epsilon), then the family's default (v for SD 2.x, as
    diffusers' own single-file loading assumes; epsilon otherwise)."""
    if "v_pred" in shapes:
        return "v_prediction", "its v_pred key"
    yaml = path.with_suffix(".yaml")
    if yaml.is_file():
        try:
            text = yaml.read_text(errors="replace")
        except OSError:
            text = ""
        if V_YAML.search(text):
            return "v_prediction", f'{yaml.name} says parameterization: "v"'
        return "epsilon", f"{yaml.name} names no v parameterization"
    if family == "sd2":
        return "v_prediction", "SD 2.x default (no v_pred key, no .yaml beside it)"
    return "epsilon", f"{FAMILIES[family]} default"


def config_folder(path: Path, family: str, prediction: str) -> Path:
    """NAME.config/ beside the file when there is one (a model of another width, or a deliberate override), else the
    shipped configs of the family (SD 2.x: the 768 v model's or the 512 base's)."""
    sibling = path.with_suffix(CONFIG_SUFFIX)
    if (sibling / "unet" / "config.json").is_file():
        return sibling
    if family == "sd2":
        return DATA / ("sd2-v" if prediction == "v_prediction" else "sd2-base")
    return DATA / family


def _read_json(path: Path) -> dict | None:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


# ---------------------------------------------------------------------------------------------------------------
# Loading (torch from here on)


def read_weights(info: CheckpointInfo, dtype) -> dict:
    """The tensors the components use, each cast as it is read (the VAE in float32, as load_model keeps it): one
    copy of the model in memory, never the file's and a cast one side by side."""
    import torch

    def cast(key: str, tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_floating_point():
            return tensor
        return tensor.to(torch.float32 if key.startswith(VAE) else dtype)

    wanted = {key for key in tensor_shapes(info.path) if key.startswith(KEPT_PREFIXES)}
    if info.path.suffix.lower() == ".ckpt":
        loaded = torch.load(info.path, map_location="cpu", weights_only=True, mmap=True)
        loaded = loaded.get("state_dict", loaded)
        return {key: cast(key, loaded[key]) for key in wanted}
    from safetensors import safe_open

    with safe_open(info.path, framework="pt", device="cpu") as handle:
        return {key: cast(key, handle.get_tensor(key)) for key in wanted}


def _empty(cls, config):
    """A model with its parameters on the meta device: the checkpoint's tensors become them (no random init)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return cls(config) if not hasattr(cls, "from_config") else cls.from_config(config)


def _filled(model, state: dict, part: str, info: CheckpointInfo):
    """`model` with `state` as its parameters; a missing or misshapen tensor is one line naming the part."""
    expected = set(model.state_dict())
    state = {_as_expected(key, expected): value for key, value in state.items()}
    state = {key: value for key, value in state.items() if key in expected}
    missing = sorted(expected - set(state) - {"text_model.embeddings.position_ids", "embeddings.position_ids"})
    if missing:
        raise refuse(info.path, f"lacks {len(missing)} {part} tensors ({missing[0]}, ...) of {info.configs}")
    try:
        model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc)[:160])
        raise refuse(info.path, f"does not fit the {part} config in {info.configs} ({reason})") from exc
    return model


def _as_expected(key: str, expected: set[str]) -> str:
    """transformers 5 names CLIP's parameters without the `text_model.` that checkpoints (and transformers 4) use."""
    if key not in expected and key.startswith("text_model.") and key[len("text_model.") :] in expected:
        return key[len("text_model.") :]
    return key


def _clip_l(state: dict, prefix: str, config_dir: Path, info: CheckpointInfo, cls_name: str = "CLIPTextModel"):
    """OpenAI CLIP ViT-L/14, stored in transformers' own names under `prefix`."""
    import transformers

    config = transformers.CLIPTextConfig.from_pretrained(config_dir)
    model = _empty(getattr(transformers, cls_name), config)
    weights = {}
    for key, value in state.items():
        if key.startswith(prefix):
            name = key[len(prefix) :]
            weights[name if name.startswith("text_model.") else "text_model." + name] = value
    return _filled(model, weights, "text encoder", info)


def _open_clip(state: dict, prefix: str, config_dir: Path, info: CheckpointInfo, cls_name: str = "CLIPTextModel"):
    """OpenCLIP (SD 2.x's ViT-H, SDXL's bigG) converted by diffusers' own map (split q/k/v, projection)."""
    import transformers
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    config = transformers.CLIPTextConfig.from_pretrained(config_dir)
    model = _empty(getattr(transformers, cls_name), config)
    return _filled(model, convert_open_clip_checkpoint(model, state, prefix=prefix), "text encoder", info)


def _tokenizer(info: CheckpointInfo, subfolder: str, pad: str | None):
    """The config folder's tokenizer when it has one, else CLIP's, built offline (SD 2.x and SDXL's second
    tokenizer pad with '!', as their published tokenizers do)."""
    from transformers import CLIPTokenizer

    from v2vz_engine.tokenizer import build_clip_tokenizer

    if (info.configs / subfolder / "tokenizer_config.json").is_file():
        return CLIPTokenizer.from_pretrained(info.configs, subfolder=subfolder, local_files_only=True)
    tokenizer = build_clip_tokenizer()
    if pad is not None:
        tokenizer.pad_token = pad
    return tokenizer


def load_parts(info: CheckpointInfo, dtype) -> dict:
    """The components of `info`'s checkpoint as load_model's from_pretrained calls give them: unet (dtype), vae
    (float32), text encoder(s) (dtype), tokenizer(s), and the folder's scheduler (prediction type set)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    state = read_weights(info, dtype)
    unet = _empty(UNet2DConditionModel, UNet2DConditionModel.load_config(info.configs, subfolder="unet"))
    unet = _filled(unet, convert_ldm_unet_checkpoint(state, unet.config), "UNet", info)
    vae = _empty(AutoencoderKL, AutoencoderKL.load_config(info.configs, subfolder="vae"))
    vae = _filled(vae, convert_ldm_vae_checkpoint(state, vae.config), "VAE", info)
    parts = dict(unet=unet, vae=vae)
    if info.family == "sd1":
        parts["text_encoder"] = _clip_l(state, CLIP_L, info.configs / "text_encoder", info)
        parts["tokenizer"] = _tokenizer(info, "tokenizer", None)
    elif info.family == "sd2":
        parts["text_encoder"] = _open_clip(state, OPEN_CLIP, info.configs / "text_encoder", info)
        parts["tokenizer"] = _tokenizer(info, "tokenizer", "!")
    else:
        parts["text_encoder"] = _clip_l(state, XL_CLIP_L, info.configs / "text_encoder", info)
        parts["tokenizer"] = _tokenizer(info, "tokenizer", None)
        encoder_2 = info.configs / "text_encoder_2"
        parts["text_encoder_2"] = _open_clip(state, XL_OPEN_CLIP, encoder_2, info, "CLIPTextModelWithProjection")
        parts["tokenizer_2"] = _tokenizer(info, "tokenizer_2", "!")
    del state
    config = DDIMScheduler.load_config(info.configs, subfolder="scheduler")
    parts["scheduler"] = DDIMScheduler.from_config({**config, "prediction_type": info.prediction})
    return parts


def load_single_file(spec: str, info: CheckpointInfo, device, dtype, loaded_model: type, ddim_of):
    """A LoadedModel from a single-file checkpoint: the same fields, the same DDIM settings as load_model's (which
    hands us its `LoadedModel` and `ddim_of`: importing models.py here would close an import circle)."""
    import dataclasses

    fields = {field.name for field in dataclasses.fields(loaded_model)}
    if info.family == "sdxl" and "text_encoder_2" not in fields:
        raise ModelUnavailable(f"{info.path} is an SDXL base checkpoint: this engine edits SD 1.x and 2.x only so far")
    parts = load_parts(info, dtype)
    parts["scheduler"] = ddim_of(parts["scheduler"].config)  # DDIM as load_model makes it
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if name in parts:
            parts[name].requires_grad_(False)
            parts[name].eval()
            parts[name].to(device)
    extra = {}
    if info.family == "sdxl" and "zeros_for_empty_prompt" in fields:  # SDXL's pipeline setting, true unless said
        index = _read_json(info.configs / "model_index.json") or {}
        extra["zeros_for_empty_prompt"] = bool(index.get("force_zeros_for_empty_prompt", True))
    known = {key: value for key, value in parts.items() if key in fields}
    return loaded_model(name=str(spec), device=device, dtype=dtype, **known, **extra)
