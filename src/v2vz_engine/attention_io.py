"""What every diffusers attention processor does around its attention: shared by our attn1 and attn2 processors.

diffusers' own processors repeat these steps inline; ours keep them here so that each processor file reads as the
part of the method it implements.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Entered:
    """Token-major hidden states plus what `leave` needs to undo the preparation."""

    hidden_states: torch.Tensor  # (batch, tokens, channels)
    residual: torch.Tensor
    image_shape: tuple[int, int, int, int] | None  # (batch, channels, height, width) when the input was 4-D


def enter(attn, hidden_states: torch.Tensor, temb: torch.Tensor | None = None) -> Entered:
    """Spatial norm, 4-D -> token-major, group norm (as diffusers' AttnProcessor2_0 does before attention)."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    image_shape = None
    if hidden_states.ndim == 4:
        image_shape = tuple(hidden_states.shape)
        batch, channel, height, width = image_shape
        hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    return Entered(hidden_states, residual, image_shape)


def leave(attn, out: torch.Tensor, entered: Entered) -> torch.Tensor:
    """Output projection, back to 4-D, residual and rescale (as diffusers does after attention)."""
    out = attn.to_out[1](attn.to_out[0](out))
    if entered.image_shape is not None:
        out = out.transpose(-1, -2).reshape(entered.image_shape)
    if attn.residual_connection:
        out = out + entered.residual
    return out / attn.rescale_output_factor
