"""Frames to Wan latents and back, prompts to Wan text embeddings, and one velocity prediction: exactly as
diffusers' WanPipeline and WanVideoToVideoPipeline do them, as functions of values so FlowEdit can call them.

Latent normalization (pipeline_wan_video2video.prepare_latents, pipeline_wan's decode): the VAE's raw latents z
(the posterior's mode) become (z - latents_mean) / latents_std per channel, and decoding inverts it. Memory: the Wan
VAE already runs causally over time (the first frame, then 4 frames at a time, with a feature cache), so a clip's
length adds only its input and output tensors; `load_wan` turns on the VAE's spatial tiling, which diffusers applies
above 256 pixels a side (tiles of 256 with stride 192), so 480p and larger never hold a whole frame's activations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from v2vz.api.errors import InvalidArgument
from v2vz_engine.wan.models import TEXT_LENGTH, WanModel


def _statistics(model: WanModel, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    config = model.vae.config
    shape = (1, int(config.z_dim), 1, 1, 1)
    mean = torch.tensor(config.latents_mean, dtype=like.dtype, device=like.device).view(shape)
    std = torch.tensor(config.latents_std, dtype=like.dtype, device=like.device).view(shape)
    return mean, std


def normalize_latents(model: WanModel, raw: torch.Tensor) -> torch.Tensor:
    """The VAE's raw latents as the transformer sees them: (z - latents_mean) / latents_std per channel."""
    mean, std = _statistics(model, raw)
    return (raw - mean) / std


def denormalize_latents(model: WanModel, latents: torch.Tensor) -> torch.Tensor:
    """The inverse of `normalize_latents`: what the VAE decodes."""
    mean, std = _statistics(model, latents)
    return latents * std + mean


def check_video(model: WanModel, frames: np.ndarray) -> None:
    """One line for frames the VAE cannot encode: not uint8 (F, H, W, 3), not 4k+1 frames, sides not multiples of 8."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise InvalidArgument(f"Wan encodes uint8 frames of shape (frames, height, width, 3), got {got}")
    count, height, width = frames.shape[:3]
    if not model.valid_frame_count(count):
        raise InvalidArgument(
            f"Wan encodes 4k+1 frames (1, 5, 9, ..., 81), got {count}: use {model.usable_frames(count)} of them"
        )
    step = model.spatial_compression
    if height % step or width % step:
        raise InvalidArgument(f"Wan encodes frames whose sides are multiples of {step}, got {width}x{height}")


@torch.no_grad()
def encode_video(model: WanModel, frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (F, H, W, 3), F = 4k+1, to normalized latents (1, 16, k+1, H/8, W/8) in float32 on the model's
    device: pixels to [-1, 1], the posterior's mode (the video-to-video pipeline's "argmax"), then normalized."""
    check_video(model, frames)
    video = torch.from_numpy(np.ascontiguousarray(frames)).to(model.device)
    video = video.permute(3, 0, 1, 2).unsqueeze(0).to(torch.float32) / 127.5 - 1.0  # (1, 3, F, H, W)
    raw = model.vae.encode(video).latent_dist.mode()
    del video
    return normalize_latents(model, raw.to(torch.float32))


@torch.no_grad()
def decode_video(model: WanModel, latents: torch.Tensor) -> np.ndarray:
    """Normalized latents (1, 16, n, h, w) to uint8 frames (4(n-1)+1, 8h, 8w, 3), as WanPipeline decodes them."""
    if latents.ndim != 5 or latents.shape[0] != 1 or latents.shape[1] != model.latent_channels:
        raise InvalidArgument(
            f"Wan decodes latents of shape (1, {model.latent_channels}, frames, height, width), got "
            f"{tuple(latents.shape)}"
        )
    raw = denormalize_latents(model, latents.to(model.device, torch.float32))
    video = model.vae.decode(raw, return_dict=False)[0]
    del raw
    video = ((video[0].clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)  # (3, F, H, W)
    return video.permute(1, 2, 3, 0).cpu().numpy()


@torch.no_grad()
def encode_prompt(model: WanModel, text: str | Sequence[str], max_length: int = TEXT_LENGTH) -> torch.Tensor:
    """Prompt(s) to UMT5 embeddings (batch, max_length, width) in the model's dtype, as WanPipeline encodes them:
    the prompt cleaned (ftfy when installed, HTML entities, whitespace), padded to max_length with its attention
    mask, and every position past the prompt's own tokens (its eos included) set to zero."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    prompts = [text] if isinstance(text, str) else list(text)
    if not prompts or max_length < 1:
        raise InvalidArgument("encode_prompt needs at least one prompt and a max_length of at least 1")
    tokens = model.tokenizer(
        [prompt_clean(prompt) for prompt in prompts],
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    ids, mask = tokens.input_ids.to(model.device), tokens.attention_mask.to(model.device)
    hidden = model.text_encoder(ids, mask).last_hidden_state.to(model.dtype)
    lengths = mask.gt(0).sum(dim=1)
    keep = torch.arange(max_length, device=model.device)[None, :] < lengths[:, None]
    return hidden * keep[:, :, None].to(hidden.dtype)


@torch.no_grad()
def predict_velocity(
    model: WanModel, latents: torch.Tensor, timestep: float | torch.Tensor, embeds: torch.Tensor
) -> torch.Tensor:
    """The transformer's flow velocity for latents (B, 16, n, h, w) at `timestep` (0..1000, the scheduler's
    timesteps) and text embeddings (B or 1, L, width), computed in the model's dtype and returned in float32."""
    batch = latents.shape[0]
    t = torch.as_tensor(timestep, device=model.device, dtype=torch.float32).reshape(-1).expand(batch)
    embeds = embeds.to(model.device, model.dtype)
    if embeds.shape[0] != batch:
        embeds = embeds.expand(batch, -1, -1)
    out = model.transformer(
        hidden_states=latents.to(model.device, model.dtype), timestep=t, encoder_hidden_states=embeds, return_dict=False
    )[0]
    return out.to(torch.float32)
