"""Wan 2.1 text-to-video models for FlowEdit: a Wan diffusers folder, a hub id in the cache, a single-file
transformer, or a built-in model with random weights.

Built-ins are built once in code as a `WanPipeline`, written with `save_pretrained` into the cache and read back with
`from_pretrained`, so tests and benchmarks load exactly what a real Wan diffusers folder holds (`transformer/`,
`vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`, model_index.json).

Where the numbers come from (checked against public material, December 2026):
- Wan 2.1 T2V 1.3B transformer: dim 1536 (12 heads x 128), 30 layers, ffn 8960, freq_dim 256, patch (1, 2, 2),
  text_dim 4096, 16 channels in and out, qk_norm rms_norm_across_heads, cross_attn_norm, eps 1e-6: the Wan2.1
  repository's wan/configs/wan_t2v_1_3B.py (dim, ffn_dim, freq_dim, num_heads, num_layers, patch_size, qk_norm,
  cross_attn_norm, eps) and the diffusers-format transformer/config.json of Wan2.1-T2V-1.3B-Diffusers copies on the
  hub (attention_head_dim 128, rope_max_seq_len 1024, text_dim 4096).
- The VAE: AutoencoderKLWan's defaults are Wan 2.1's (base_dim 96, z_dim 16, dim_mult [1, 2, 4, 4], 2 res blocks,
  temporal downsampling [False, True, True], the 16 latents_mean/latents_std values), identical to the vae/config.json
  of Wan2.1-T2V-1.3B-Diffusers (`_name_or_path` Wan-AI/Wan2.1-T2V-1.3B-Diffusers) and to diffusers' docs.
- The text encoder: UMT5-XXL (d_model 4096, 24 layers, 64 heads x 64, d_ff 10240, gated-gelu, vocab 256384): the
  text_encoder/config.json of the Wan-AI diffusers folders.
- flow_shift 3.0 for 480p (5.0 for 720p): diffusers' WanPipeline example (pipeline_wan.py) and the Wan docs ("The
  default value is 3.0 for Wan"); the Wan-AI folders ship UniPCMultistepScheduler(flow_shift=3.0).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from v2vz.api.endpoint import cache_root
from v2vz.api.errors import ModelUnavailable
from v2vz_engine.models import build_once, compute_dtype, resolve_device
from v2vz_engine.wan.folders import WAN_BUILTIN_NAMES, is_wan_folder

log = logging.getLogger(__name__)

WAN_BUILTIN_VERSION = "v1"  # bump when a Wan built-in's architecture or weights change: stale caches are rebuilt
FLOW_SHIFT_480P = 3.0
NATIVE_480P = (832, 480)  # (width, height) of Wan 2.1 480p: WanPipeline's default size
TEXT_LENGTH = 512  # Wan's text_len: WanPipeline pads every prompt to 512 tokens
METADATA_FILE = "v2vz_wan.json"  # what a built-in folder says of itself (name, native size) beyond diffusers' files

# Wan 2.1 T2V 1.3B's transformer (see the module docstring for the sources).
WAN21_1_3B_TRANSFORMER: dict = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
    added_kv_proj_dim=None,
    rope_max_seq_len=1024,
)
# Wan 2.1's VAE: AutoencoderKLWan's defaults (latents_mean/latents_std included) are the published model's.
WAN21_VAE: dict = dict(
    base_dim=96,
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    attn_scales=[],
    temperal_downsample=[False, True, True],
)
# UMT5-XXL as Wan's folders ship it, except what `WanShape.text_encoder` overrides (layers, vocabulary).
UMT5_XXL: dict = dict(
    d_model=4096,
    d_kv=64,
    num_heads=64,
    d_ff=10240,
    num_layers=24,
    feed_forward_proj="gated-gelu",
    dense_act_fn="gelu_new",
    is_gated_act=True,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    layer_norm_epsilon=1e-6,
    scalable_attention=True,
    tie_word_embeddings=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    dropout_rate=0.0,
)


# A flow-matching transformer predicts a velocity, and FlowEdit (like any flow ODE) moves latents by sum(dt * v) with
# sum(dt) = 1: unlike DDIM inversion's epsilon, whose errors 1/sqrt(alpha) amplifies (models.OUTPUT_SCALE), a
# velocity of unit size keeps a round trip finite. Measured: the random transformers predict velocities of standard
# deviation 0.5-0.7 (tiny-wan; wan-random 0.57, max |v| under 3 in bench_wan_random.py), below what a trained model's
# (noise - x0) has (about 1.4), and an 8-step Euler round trip of tiny-wan stays finite (test_wan_models.py): their
# output is left unscaled.
RANDOM_OUTPUT_SCALE = 1.0


@dataclass(frozen=True)
class WanShape:
    """A Wan built-in: the three models' configs, its native size and the dtype its weights are built and saved in."""

    transformer: dict
    vae: dict
    text_encoder: dict  # changes to UMT5_XXL (its vocab_size is always the built tokenizer's)
    native_size: tuple[int, int]  # (width, height)
    build_dtype: torch.dtype = torch.float32
    output_scale: float = RANDOM_OUTPUT_SCALE  # multiplies proj_out's weights


# Wan 2.1's layout, every width tiny: a CPU edit of 9 frames at 64x48 takes well under a second per step.
TINY_WAN = WanShape(
    transformer={
        **WAN21_1_3B_TRANSFORMER,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "text_dim": 32,
        "ffn_dim": 64,
        "num_layers": 2,
    },
    vae={**WAN21_VAE, "base_dim": 4, "num_res_blocks": 1},
    text_encoder=dict(d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2),
    native_size=(64, 48),
)
# Wan 2.1 T2V 1.3B's exact transformer and VAE, random weights, for memory and speed figures. The text encoder keeps
# UMT5-XXL's width (4096, the transformer's text_dim), heads and feed-forward but ONE layer of 24 and a small
# vocabulary: the real one is 5.7 B parameters (about 11 GB in bf16), too big for a 24 GiB CPU machine, and the
# method's cost per step is the transformer's (the prompt is encoded once per edit). Built and saved in bf16.
WAN_RANDOM = WanShape(
    transformer=dict(WAN21_1_3B_TRANSFORMER),
    vae=dict(WAN21_VAE),
    text_encoder=dict(num_layers=1),
    native_size=NATIVE_480P,
    build_dtype=torch.bfloat16,
)
WAN_BUILTINS: dict[str, WanShape] = dict(zip(WAN_BUILTIN_NAMES, (TINY_WAN, WAN_RANDOM), strict=True))


@dataclass
class WanModel:
    """The parts of a Wan 2.1 text-to-video pipeline FlowEdit uses, on one device."""

    name: str
    transformer: torch.nn.Module  # WanTransformer3DModel: predicts the flow velocity
    vae: torch.nn.Module  # AutoencoderKLWan, always float32 (Wan's advice: decoding quality)
    text_encoder: torch.nn.Module  # UMT5EncoderModel
    tokenizer: object
    device: torch.device
    dtype: torch.dtype  # the transformer's and text encoder's compute dtype
    flow_shift: float = FLOW_SHIFT_480P  # the timestep shift of the folder's scheduler (3.0: 480p)
    native: tuple[int, int] = field(default=NATIVE_480P)  # (width, height) the model works best at

    @property
    def family(self) -> str:
        """ "wan": the engine's switch between FlowEdit and vid2vid-zero (LoadedModel.family: "sd", "sdxl")."""
        return "wan"

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent along height and width (8)."""
        return int(self.vae.config.scale_factor_spatial)

    @property
    def temporal_compression(self) -> int:
        """Frames per latent frame after the first (4): a 4k+1-frame clip has k+1 latent frames."""
        return int(self.vae.config.scale_factor_temporal)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.z_dim)

    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this (16: the VAE's 8 times the transformer's 2x2 patches)."""
        return self.spatial_compression * int(self.transformer.config.patch_size[1])

    @property
    def native_size(self) -> tuple[int, int]:
        """(width, height): 832x480 for Wan 2.1 480p, 64x48 for tiny-wan."""
        return self.native

    @property
    def text_width(self) -> int:
        return int(self.transformer.config.text_dim)

    def valid_frame_count(self, frames: int) -> bool:
        """A Wan clip has 4k+1 frames (k >= 0): the first frame is encoded alone, then groups of 4."""
        return frames >= 1 and (frames - 1) % self.temporal_compression == 0

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a 4k+1-frame clip: k+1."""
        return (frames - 1) // self.temporal_compression + 1

    def usable_frames(self, frames: int) -> int:
        """The longest valid clip within `frames` (4k+1 <= frames): how many frames of a group can be edited."""
        return (frames - 1) // self.temporal_compression * self.temporal_compression + 1 if frames >= 1 else 0

    def frames_of_latents(self, latent_frames: int) -> int:
        """Frames decoded from `latent_frames` latent frames: 4(n-1)+1."""
        return (latent_frames - 1) * self.temporal_compression + 1

    def flow_scheduler(self) -> object:
        """A fresh FlowMatchEulerDiscreteScheduler with the model's shift: FlowEdit's Euler steps and timesteps."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=self.flow_shift)


# ---------------------------------------------------------------------------------------------------------------
# Built-in models


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build modules directly in `dtype`: wan-random's transformer is 2.6 GB in bf16, 5.2 GB in fp32."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def wan_builtin_pipeline(name: str) -> object:
    """A Wan built-in as a WanPipeline with deterministic random weights (each part seeded on its own)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from v2vz_engine.wan.tokenizer import build_wan_tokenizer

    shape = WAN_BUILTINS[name]
    tokenizer = build_wan_tokenizer()
    with _default_dtype(shape.build_dtype):
        torch.manual_seed(0)
        transformer = WanTransformer3DModel(**shape.transformer)
        if shape.output_scale != 1.0:
            with torch.no_grad():
                transformer.proj_out.weight.mul_(shape.output_scale)
                transformer.proj_out.bias.mul_(shape.output_scale)
        torch.manual_seed(2)
        config = UMT5Config(**{**UMT5_XXL, **shape.text_encoder, "vocab_size": len(tokenizer)})
        text_encoder = UMT5EncoderModel(config)
    torch.manual_seed(1)
    vae = AutoencoderKLWan(**shape.vae)  # float32: the VAE runs in float32
    for module in (transformer, vae, text_encoder):
        module.requires_grad_(False).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=FLOW_SHIFT_480P)
    return WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler, transformer=transformer
    )


def wan_builtin_in_memory(name: str, device: str | torch.device, dtype: torch.dtype | None = None) -> WanModel:
    """A Wan built-in made in memory and moved to `device` (benchmarks on a lent GPU: no 3.6 GB write and read)."""
    pipeline = wan_builtin_pipeline(name)
    dev = torch.device(device)
    dtype = dtype or compute_dtype(dev)
    pipeline.transformer.to(dev, dtype)
    pipeline.text_encoder.to(dev, dtype)
    pipeline.vae.to(dev)
    pipeline.vae.enable_tiling()
    width, height = WAN_BUILTINS[name].native_size
    return WanModel(
        name,
        pipeline.transformer,
        pipeline.vae,
        pipeline.text_encoder,
        pipeline.tokenizer,
        dev,
        dtype,
        native=(width, height),
    )


def build_wan_builtin(name: str, folder: Path) -> None:
    """Write a Wan built-in as a diffusers folder (safetensors), plus the metadata file naming its native size."""
    pipeline = wan_builtin_pipeline(name)
    pipeline.save_pretrained(folder, safe_serialization=True)
    del pipeline
    width, height = WAN_BUILTINS[name].native_size
    (Path(folder) / METADATA_FILE).write_text(json.dumps({"name": name, "native_size": [width, height]}) + "\n")


def ensure_wan_builtin(name: str, cache_dir: str | Path | None = None) -> Path:
    """The Wan built-in's folder in the cache, built on first use (atomically: a crash never leaves half a model)."""
    if name not in WAN_BUILTINS:
        raise ModelUnavailable(f"{name!r} is not a Wan built-in model: use one of {', '.join(WAN_BUILTINS)}")
    folder = cache_root(cache_dir) / "models" / f"{name}-{WAN_BUILTIN_VERSION}"
    return build_once(folder, Path(METADATA_FILE), lambda staging: build_wan_builtin(name, staging))


# ---------------------------------------------------------------------------------------------------------------
# Loading (is_wan_folder, in folders.py, tells a Wan folder from a Stable Diffusion one without torch)


def _one_line(exc: BaseException) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return reason if len(reason) <= 160 else reason[:157].rsplit(" ", 1)[0] + "..."


def _unavailable(spec: str, reason: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"Wan model {spec!r} cannot be loaded ({reason}): pass a Wan diffusers folder (WanPipeline.save_pretrained), "
        f"a hub id already in the Hugging Face cache (`v2vz models pull ID` on a machine with a network) or a Wan "
        f"built-in ({', '.join(WAN_BUILTINS)})"
    )


def _resolve(spec: str, cache_dir: str | Path | None) -> str:
    """What from_pretrained is given: a built-in's cache folder, a Wan folder, or a hub id (read from the cache)."""
    if spec in WAN_BUILTINS:
        return str(ensure_wan_builtin(spec, cache_dir))
    if not spec or "\x00" in spec:
        raise _unavailable(spec, "an empty name or one with a NUL byte")
    path = Path(spec).expanduser()
    if path.is_dir():
        if not is_wan_folder(path):
            raise _unavailable(spec, "not a Wan folder: no WanPipeline model_index.json, no WanTransformer3DModel")
        return str(path)
    if path.exists() or spec.startswith(("/", ".", "~", "\\")) or spec.count("/") > 1:
        raise _unavailable(spec, "no such folder" if not path.exists() else "a file, not a folder")
    return spec  # a hub id: from_pretrained reads the cache only (local_files_only), it never waits on the network


def _flow_shift(source: str) -> float:
    """The folder's scheduler shift: UniPC's `flow_shift` (Wan-AI folders), FlowMatchEuler's `shift`, else 3.0."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    try:
        config = FlowMatchEulerDiscreteScheduler.load_config(source, subfolder="scheduler", local_files_only=True)
    except (OSError, ValueError):
        return FLOW_SHIFT_480P
    shift = config.get("flow_shift", config.get("shift"))
    return float(shift) if shift else FLOW_SHIFT_480P


def _native_size(source: str) -> tuple[int, int]:
    """A built-in's own size (its metadata file), else Wan 2.1's 480p (WanPipeline's default size)."""
    try:
        width, height = json.loads((Path(source) / METADATA_FILE).read_text())["native_size"]
        return int(width), int(height)
    except (OSError, ValueError, KeyError, TypeError):
        return NATIVE_480P


def load_wan(
    source: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    cache_dir: str | Path | None = None,
    transformer_file: str | Path | None = None,
) -> WanModel:
    """Load a Wan 2.1 T2V model: a Wan diffusers folder, a hub id already in the Hugging Face cache, or a built-in
    (tiny-wan, wan-random). `transformer_file`: a single-file transformer checkpoint (Wan's own or ComfyUI's key
    names, .safetensors) used instead of the folder's transformer; `source` then supplies the VAE, text encoder,
    tokenizer, scheduler and the transformer's config (so the file must be the same size of model as `source`)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    from v2vz_engine.models import _quiet_libraries

    _quiet_libraries()
    spec = str(source).strip()
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    dtype = dtype or compute_dtype(dev)
    resolved = _resolve(spec, cache_dir)
    kwargs = dict(local_files_only=True)
    try:
        if transformer_file is None:
            transformer = WanTransformer3DModel.from_pretrained(
                resolved, subfolder="transformer", torch_dtype=dtype, **kwargs
            )
        else:
            transformer = load_transformer_file(transformer_file, resolved, dtype)
        vae = AutoencoderKLWan.from_pretrained(resolved, subfolder="vae", torch_dtype=torch.float32, **kwargs)
        text_encoder = UMT5EncoderModel.from_pretrained(resolved, subfolder="text_encoder", dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(resolved, subfolder="tokenizer", **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _unavailable(spec, _one_line(exc)) from exc
    for module in (transformer, vae, text_encoder):
        module.requires_grad_(False).eval().to(dev)
    vae.enable_tiling()  # used only above 256 pixels a side (diffusers' default tile): memory bounded at 480p
    return WanModel(
        name=spec if transformer_file is None else f"{Path(transformer_file).name} (+ {spec})",
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        device=dev,
        dtype=dtype,
        flow_shift=_flow_shift(resolved),
        native=_native_size(resolved),
    )


def load_transformer_file(path: str | Path, config_source: str, dtype: torch.dtype) -> torch.nn.Module:
    """A single-file Wan transformer (.safetensors in Wan's or ComfyUI's key names) through diffusers'
    `from_single_file`, its config read from `config_source`'s transformer/ (a folder or a cached hub id): diffusers
    would otherwise fetch the config from the hub, which cannot be reached here."""
    from diffusers import WanTransformer3DModel

    file = Path(path).expanduser()
    if not file.is_file() or file.suffix != ".safetensors":
        raise ModelUnavailable(f"{file} is not a .safetensors file: pass a single-file Wan transformer checkpoint")
    return WanTransformer3DModel.from_single_file(
        str(file), config=config_source, subfolder="transformer", torch_dtype=dtype, local_files_only=True
    )
