"""Loading the diffusion model: a diffusers folder, a hub id, or a built-in model with random weights.

Built-in models are built once in code, written with `save_pretrained` into the cache and read back with
`from_pretrained`, so tests and benchmarks exercise the same loading path as a real Stable Diffusion folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
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
    text_encoder_2: torch.nn.Module | None = None  # SDXL's second (projecting) text encoder; None: SD 1.x/2.x
    tokenizer_2: object | None = None
    zeros_for_empty_prompt: bool = False  # SDXL: the unconditional input is zeros (its pipeline's setting)

    @property
    def family(self) -> str:
        """ "sdxl" (two text encoders, pooled embedding, time ids: conditioning.py) or "sd"."""
        return "sd" if self.text_encoder_2 is None else "sdxl"

    @property
    def pooled_width(self) -> int:
        """The width of SDXL's pooled text embedding (the second encoder's projection); 0 for SD 1.x/2.x."""
        return 0 if self.text_encoder_2 is None else int(self.text_encoder_2.config.projection_dim)

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

    @property
    def prediction_type(self) -> str:
        """What the UNet predicts: "epsilon" (SD 1.x, SD 2.x-base) or "v_prediction" (SD 2.x 768): schedule.py."""
        return str(self.scheduler.config.get("prediction_type", "epsilon"))


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


def _vae_config(channels: tuple[int, ...], layers: int, groups: int, latent_size: int, scaling: float) -> dict:
    """The 8x AutoencoderKL every Stable Diffusion family shares; only its widths and scaling factor differ."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=channels,
        layers_per_block=layers,
        latent_channels=4,
        norm_num_groups=groups,
        sample_size=latent_size * 8,
        scaling_factor=scaling,
    )


@dataclass(frozen=True)
class BuiltinShape:
    """The widths and depths of a Stable Diffusion 1.x layout (UNet, VAE, CLIP text encoder), and what its UNet
    predicts (a v-prediction model carries its scheduler settings: SD 2.x 768's, or zero-terminal-SNR ones)."""

    sample_size: int  # latent side the UNet is trained at (8 latents = 64 pixels)
    unet_channels: tuple[int, int, int, int]
    vae_channels: tuple[int, int, int, int]
    vae_layers: int
    text: tuple[int, int, int, int]  # width, feed-forward width, layers, heads
    norm_groups: int
    head_dim: int
    scheduler: dict = field(default_factory=dict)  # changes to SCHEDULER_CONFIG

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
            "vae": _vae_config(self.vae_channels, self.vae_layers, self.norm_groups, self.sample_size, 0.18215),
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
            "scheduler": {**SCHEDULER_CONFIG, **self.scheduler},
        }


# A Stable-Diffusion-shaped model small enough for CPU tests: same block layout, 16 self-attention layers.
TINY = BuiltinShape(8, (32, 64, 64, 64), (8, 16, 16, 16), vae_layers=1, text=(32, 64, 2, 4), norm_groups=8, head_dim=4)
# `tiny` predicting v with a zero-terminal-SNR schedule and trailing timesteps (the settings of SD 2.x 768 and of
# the zero-SNR fine-tunes): the v-prediction path of inversion and both branches, for tests.
TINY_V = dataclasses.replace(
    TINY, scheduler=dict(prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")
)
# Stable Diffusion 1.5's exact architecture (UNet, VAE, CLIP ViT-L/14 text encoder).
SD15 = BuiltinShape(
    64, (320, 640, 1280, 1280), (128, 256, 512, 512), vae_layers=2, text=(768, 3072, 12, 12), norm_groups=32, head_dim=8
)


@dataclass(frozen=True)
class XlShape:
    """The widths and depths of an SDXL base layout: a three-level UNet with transformer depth per level, the
    "text_time" added embedding, two CLIP text encoders (the second with a projection: the pooled embedding)."""

    sample_size: int  # latent side (128 latents = 1024 pixels)
    unet_channels: tuple[int, int, int]
    transformer_layers: tuple[int, int, int]
    head_dim: tuple[int, int, int]
    time_embed_dim: int  # addition_time_embed_dim: per time id
    vae_channels: tuple[int, int, int, int]
    vae_layers: int
    text: tuple[int, int, int, int]  # the first encoder: width, feed-forward width, layers, heads
    text_2: tuple[int, int, int, int]  # the second encoder, whose width is also the pooled embedding's
    norm_groups: int

    def configs(self) -> dict[str, dict]:
        width, ffn, layers, heads = self.text
        width_2, ffn_2, layers_2, heads_2 = self.text_2
        encoder = dict(
            vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407
        )
        return {
            "unet": dict(
                sample_size=self.sample_size,
                in_channels=4,
                out_channels=4,
                layers_per_block=2,
                block_out_channels=self.unet_channels,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=self.transformer_layers,
                attention_head_dim=self.head_dim,
                cross_attention_dim=width + width_2,
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=self.time_embed_dim,
                projection_class_embeddings_input_dim=6 * self.time_embed_dim + width_2,
                norm_num_groups=self.norm_groups,
            ),
            "vae": _vae_config(self.vae_channels, self.vae_layers, self.norm_groups, self.sample_size, 0.13025),
            "text_encoder": dict(
                encoder,
                hidden_size=width,
                intermediate_size=ffn,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                hidden_act="quick_gelu",
                projection_dim=width,
            ),
            "text_encoder_2": dict(
                encoder,
                hidden_size=width_2,
                intermediate_size=ffn_2,
                num_hidden_layers=layers_2,
                num_attention_heads=heads_2,
                hidden_act="gelu",
                projection_dim=width_2,
            ),
            "scheduler": dict(SCHEDULER_CONFIG),
        }


# SDXL's layout at tiny widths, for tests: 2 transformer layers in the lowest level, as SDXL has more than one.
TINY_XL = XlShape(
    8,
    (32, 64, 64),
    (1, 1, 2),
    (2, 4, 4),
    8,
    (8, 16, 16, 16),
    1,
    text=(16, 32, 2, 2),
    text_2=(32, 64, 2, 4),
    norm_groups=8,
)
# SDXL base's exact architecture (UNet 2.6 B parameters, CLIP ViT-L and OpenCLIP ViT-bigG), random weights: for
# memory and speed figures only (it is built on first use: about 14 GB on disk in fp32).
SDXL = XlShape(
    128,
    (320, 640, 1280),
    (1, 2, 10),
    (5, 10, 20),
    256,
    (128, 256, 512, 512),
    2,
    text=(768, 3072, 12, 12),
    text_2=(1280, 5120, 32, 20),
    norm_groups=32,
)

BUILTIN_MODELS = {"tiny": TINY, "tiny-v": TINY_V, "tiny-xl": TINY_XL, "sd15-random": SD15, "sdxl-random": SDXL}


def builtin_modules(name: str) -> dict[str, object]:
    """A built-in model's components with deterministic random weights (each seeded on its own)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from v2vz_engine.tokenizer import build_clip_tokenizer

    configs = BUILTIN_MODELS[name].configs()
    modules: dict[str, object] = {}
    torch.manual_seed(0)
    modules["unet"] = unet = UNet2DConditionModel(**configs["unet"])
    with torch.no_grad():
        unet.conv_out.weight.mul_(OUTPUT_SCALE)
        unet.conv_out.bias.mul_(OUTPUT_SCALE)
    torch.manual_seed(1)
    modules["vae"] = AutoencoderKL(**configs["vae"])
    torch.manual_seed(2)
    modules["text_encoder"] = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
    modules["tokenizer"] = build_clip_tokenizer()
    if "text_encoder_2" in configs:
        torch.manual_seed(3)
        modules["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"]))
        modules["tokenizer_2"] = build_clip_tokenizer()
    modules["scheduler"] = DDIMScheduler(**configs["scheduler"])
    return modules


# Built-in models with trained weights shipped in the package (fp16 safetensors; the tokenizer is built from the
# shipped CLIP merges): toyworld, trained by benchmarks/train_toyworld.py on the toy world of v2vz.world.
TRAINED_BUILTINS: dict[str, Path] = {"toyworld": Path(__file__).parent / "data" / "toyworld"}


def build_builtin(name: str, folder: Path) -> None:
    """Build a built-in model as a diffusers folder: the shipped trained weights, or deterministic random ones."""
    if name in TRAINED_BUILTINS:
        from v2vz_engine.tokenizer import build_clip_tokenizer

        if not (TRAINED_BUILTINS[name] / "unet" / "config.json").is_file():
            raise ModelUnavailable(
                f"the built-in {name}'s weights are missing from {TRAINED_BUILTINS[name]}: reinstall v2vz, or make "
                f"them with benchmarks/train_toyworld.py"
            )
        shutil.copytree(TRAINED_BUILTINS[name], folder, dirs_exist_ok=True)
        build_clip_tokenizer().save_pretrained(folder / "tokenizer")
        return
    for part, module in builtin_modules(name).items():
        module.save_pretrained(folder / part)
    if "text_encoder_2" in BUILTIN_MODELS[name].configs():
        (folder / "model_index.json").write_text(
            '{"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": true}\n'
        )


def builtin_in_memory(name: str, device: str | torch.device | None = None) -> LoadedModel:
    """A built-in model made on the device without writing it: what benchmarks/gpu_check.py times SDXL's
    architecture with (sdxl-random is about 14 GB in fp32 on disk, minutes to write on a lent GPU's clock)."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    dtype = compute_dtype(dev)
    parts = builtin_modules(name)
    for part in ("unet", "text_encoder", "text_encoder_2"):
        if part in parts:
            parts[part].to(dev, dtype).requires_grad_(False).eval()
    parts["vae"].to(dev, torch.float32).requires_grad_(False).eval()
    return LoadedModel(
        name=name,
        unet=parts["unet"],
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        scheduler=ddim_of(parts["scheduler"].config),
        device=dev,
        dtype=dtype,
        text_encoder_2=parts.get("text_encoder_2"),
        tokenizer_2=parts.get("tokenizer_2"),
        zeros_for_empty_prompt="text_encoder_2" in parts,
    )


def text_to_image(model: LoadedModel) -> object:
    """diffusers' own text-to-image pipeline on a loaded model's parts (DDIM, no safety checker): how the trained
    world's gates and tests see what the model draws from a caption alone. Its scheduler is a copy: the model's
    stays the method's."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    sampler = StableDiffusionPipeline(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=model.tokenizer,
        unet=model.unet,
        scheduler=DDIMScheduler.from_config(model.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    sampler.set_progress_bar_config(disable=True)
    return sampler


def ddim_of(config) -> object:
    """DDIM exactly as the method uses it, whatever scheduler the model folder ships: deterministic, no clipping, the
    final alpha the first one's. An epsilon model steps with SD 1.x's spacing ("leading", offset 1: the published
    set-up); a v-prediction model keeps its own spacing, offset and zero-terminal-SNR rescaling (schedule.py)."""
    from diffusers import DDIMScheduler

    settings = dict(clip_sample=False, set_alpha_to_one=False)
    if config.get("prediction_type", "epsilon") == "epsilon" and not config.get("rescale_betas_zero_snr"):
        settings.update(steps_offset=1, timestep_spacing="leading")
    elif config.get("prediction_type") not in ("epsilon", "v_prediction"):
        raise ModelUnavailable(
            f"the model predicts {config.get('prediction_type')!r}; v2vz edits models that predict epsilon or v"
        )
    return DDIMScheduler.from_config(config, **settings)


def _weights_tag(name: str) -> str:
    """For a trained built-in, a digest of its shipped weights: a retrained model never meets a stale cache."""
    if name not in TRAINED_BUILTINS:
        return ""
    digest = hashlib.sha256()
    for path in sorted(TRAINED_BUILTINS[name].rglob("*.safetensors")):
        digest.update(path.read_bytes())
    return "-" + digest.hexdigest()[:12]


def ensure_builtin(name: str, cache_dir: str | Path | None = None) -> Path:
    """The built-in model's folder in the cache, built on first use (atomically: a crash never leaves half a model)."""
    folder = cache_root(cache_dir) / "models" / f"{name}-{BUILTIN_VERSION}{_weights_tag(name)}"
    return build_once(folder, Path("unet") / "config.json", lambda staging: build_builtin(name, staging))


def build_once(folder: Path, marker: Path, build) -> Path:
    """`folder`, built by `build(staging)` unless `folder / marker` is there: into a private staging folder beside
    it, renamed into place when complete, so a crash never leaves half a model and two builders never mix files."""
    if (folder / marker).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the built-in model %s", folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        build(staging)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a shared cache must stay readable
        try:
            staging.rename(folder)
        except OSError:  # another process finished first: theirs is as good as ours
            if not (folder / marker).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


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
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    _quiet_libraries()
    spec = spec or default_model()
    located = locate(spec)  # built-in, a folder, or a hub model already cached: never a wait on the network
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    dtype = compute_dtype(dev)
    if located.kind == "file":  # a single-file checkpoint: its own loader, the same LoadedModel (single_file.py)
        from v2vz_engine.single_file import load_single_file

        return load_single_file(str(spec), located.checkpoint, dev, dtype, LoadedModel, ddim_of)
    source = ensure_builtin(spec, cache_dir) if located.kind == "builtin" else located.path
    try:
        kwargs = dict(local_files_only=True)
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, **kwargs)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=torch.float32, **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", dtype=dtype, **kwargs)
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs)
        scheduler = DDIMScheduler.from_pretrained(source, subfolder="scheduler", **kwargs)
        second = tokenizer_2 = None
        if (Path(source) / "text_encoder_2").is_dir():  # SDXL: the projecting encoder and its tokenizer
            second = CLIPTextModelWithProjection.from_pretrained(
                source, subfolder="text_encoder_2", dtype=dtype, **kwargs
            )
            tokenizer_2 = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer_2", **kwargs)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(reason) > 160:
            reason = reason[:157].rsplit(" ", 1)[0] + "..."
        raise ModelUnavailable(
            f"model {spec!r} cannot be loaded from {source} ({reason}): pass --model another folder, a hub id or a "
            f"built-in model ({', '.join([*TRAINED_BUILTINS, *BUILTIN_MODELS])})"
        ) from exc
    scheduler = ddim_of(scheduler.config)
    for module in (unet, vae, text_encoder, second):
        if module is not None:
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
        text_encoder_2=second,
        tokenizer_2=tokenizer_2,
        zeros_for_empty_prompt=second is not None and _zeros_for_empty_prompt(Path(source)),
    )


def _zeros_for_empty_prompt(folder: Path) -> bool:
    """SDXL's pipeline setting (model_index.json): an empty prompt conditions on zeros. True when not said."""
    import json

    try:
        return bool(json.loads((folder / "model_index.json").read_text()).get("force_zeros_for_empty_prompt", True))
    except (OSError, ValueError):
        return True
