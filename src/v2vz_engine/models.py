"""Loading the diffusion model: a diffusers folder, a hub id, or a built-in model with random weights.

Built-in models are built once in code, written with `save_pretrained` into the cache and read back with
`from_pretrained`, so tests and benchmarks exercise the same loading path as a real Stable Diffusion folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from v2vz.api.endpoint import cache_root  # noqa: F401 - models.cache_root, as its callers know it
from v2vz.api.errors import InvalidArgument, ModelUnavailable
from v2vz_engine.model_source import default_model, locate

log = logging.getLogger(__name__)

BUILTIN_VERSION = "v1"  # bump when a built-in model's architecture or weights change, so stale caches are rebuilt
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
)
OUTPUT_SCALE = 0.02  # random UNets predict noise far too large for DDIM to round-trip (method.md section 8)


@dataclass
class LoadedModel:
    """The parts of a Stable Diffusion pipeline the engine uses, on one device."""

    name: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object  # a DDIMScheduler: gives the timesteps and alphas_cumprod
    device: torch.device
    dtype: torch.dtype  # the UNet's and text encoder's compute dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        """The resolution the UNet was trained at (512 for SD 1.x): the default working long side."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)


def resolve_device(device: str | None = None) -> torch.device:
    """'auto' (or None) picks CUDA when present, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise InvalidArgument(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"device {device!r} asked for but no CUDA GPU is available: use --device cpu")
    return resolved


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that have it (fp16 otherwise), fp32 on the CPU where half precision is slow."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ---------------------------------------------------------------------------------------------------------------
# Built-in models


@dataclass(frozen=True)
class BuiltinShape:
    """The widths and depths of a Stable Diffusion 1.x layout (UNet, VAE, CLIP text encoder)."""

    sample_size: int  # latent side the UNet is trained at (8 latents = 64 pixels)
    unet_channels: tuple[int, int, int, int]
    vae_channels: tuple[int, int, int, int]
    vae_layers: int
    text: tuple[int, int, int, int]  # width, feed-forward width, layers, heads
    norm_groups: int
    head_dim: int

    def configs(self) -> dict[str, dict]:
        """The diffusers/transformers configs of the three models."""
        width, ffn, layers, heads = self.text
        return {
            "unet": dict(
                sample_size=self.sample_size,
                in_channels=4,
                out_channels=4,
                layers_per_block=2,
                block_out_channels=self.unet_channels,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                cross_attention_dim=width,
                attention_head_dim=self.head_dim,
                norm_num_groups=self.norm_groups,
            ),
            "vae": dict(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=self.vae_channels,
                layers_per_block=self.vae_layers,
                latent_channels=4,
                norm_num_groups=self.norm_groups,
                sample_size=self.sample_size * 8,
                scaling_factor=0.18215,
            ),
            "text_encoder": dict(
                vocab_size=49408,
                hidden_size=width,
                intermediate_size=ffn,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                projection_dim=width,
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=49407,
            ),
        }


# A Stable-Diffusion-shaped model small enough for CPU tests: same block layout, 16 self-attention layers.
TINY = BuiltinShape(8, (32, 64, 64, 64), (8, 16, 16, 16), vae_layers=1, text=(32, 64, 2, 4), norm_groups=8, head_dim=4)
# Stable Diffusion 1.5's exact architecture (UNet, VAE, CLIP ViT-L/14 text encoder).
SD15 = BuiltinShape(
    64, (320, 640, 1280, 1280), (128, 256, 512, 512), vae_layers=2, text=(768, 3072, 12, 12), norm_groups=32, head_dim=8
)


BUILTIN_MODELS = {"tiny": TINY, "sd15-random": SD15}


def build_builtin(name: str, folder: Path) -> None:
    """Build a built-in model with deterministic random weights and save it as a diffusers folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from v2vz_engine.tokenizer import build_clip_tokenizer

    configs = BUILTIN_MODELS[name].configs()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**configs["unet"])
    with torch.no_grad():
        unet.conv_out.weight.mul_(OUTPUT_SCALE)
        unet.conv_out.bias.mul_(OUTPUT_SCALE)
    torch.manual_seed(1)
    vae = AutoencoderKL(**configs["vae"])
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    build_clip_tokenizer().save_pretrained(folder / "tokenizer")
    DDIMScheduler(**SCHEDULER_CONFIG).save_pretrained(folder / "scheduler")


def ensure_builtin(name: str, cache_dir: str | Path | None = None) -> Path:
    """The built-in model's folder in the cache, built on first use (atomically: a crash never leaves half a model)."""
    folder = cache_root(cache_dir) / "models" / f"{name}-{BUILTIN_VERSION}"
    if (folder / "unet" / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the built-in model %s in %s", name, folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        build_builtin(name, staging)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a shared cache must stay readable
        try:
            staging.rename(folder)
        except OSError:  # another process finished first: theirs is as good as ours
            if not (folder / "unet" / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# Loading


def _quiet_libraries() -> None:
    """Our own progress bar is the one a user sees: silence the libraries' bars and info chatter."""
    import warnings

    import diffusers
    import transformers

    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def load_model(
    spec: str | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
) -> LoadedModel:
    """Load a built-in model, a diffusers folder, or a hub id already in the Hugging Face cache (`v2vz models
    pull` fetches one): model_source.locate finds it first, so nothing waits on the network."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    _quiet_libraries()
    spec = spec or default_model()
    located = locate(spec)  # built-in, a folder, or a hub model already cached: never a wait on the network
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    dtype = compute_dtype(dev)
    source = ensure_builtin(spec, cache_dir) if located.kind == "builtin" else located.path
    try:
        kwargs = dict(local_files_only=True)
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, **kwargs)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=torch.float32, **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", dtype=dtype, **kwargs)
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs)
        scheduler = DDIMScheduler.from_pretrained(source, subfolder="scheduler", **kwargs)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(reason) > 160:
            reason = reason[:157].rsplit(" ", 1)[0] + "..."
        raise ModelUnavailable(
            f"model {spec!r} cannot be loaded from {source} ({reason}): pass --model another folder, a hub id or a "
            f"built-in model ({', '.join(BUILTIN_MODELS)})"
        ) from exc
    # DDIM exactly as the method uses it, whatever scheduler the model folder ships.
    scheduler = DDIMScheduler.from_config(
        scheduler.config,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
        module.eval()
        module.to(dev)
    return LoadedModel(
        name=str(spec),
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        device=dev,
        dtype=dtype,
    )
