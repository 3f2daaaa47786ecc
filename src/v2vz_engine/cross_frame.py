"""Cross-frame modeling (method.md section 3): self-attention (attn1) across the frames of a clip.

Video latents are a batch of frames `(B*F, ...)`, frames contiguous per clip. The processors here are diffusers
attention processors, installed with `unet.set_attn_processor`; they read the frame count from a shared
`FrameContext` that the pipeline sets before each UNet call.

- dense: every frame's queries attend to the tokens of all F frames. The keys are the same for every frame, so this
  is ordinary attention over the clip's F*N tokens: one `scaled_dot_product_attention` call, K/V never repeated.
- sparse_causal: keys/values of [first frame, previous frame] (the published code's layers other than three).
- per_frame: plain image self-attention (used for inversion and null-text optimization).
- dense_kv_repeat: the published implementation of dense attention (K/V of all frames repeated for every frame,
  memory ~F^2). Kept only as a reference for tests and benchmarks.

Batch elements (uncond/cond, source/edit branch) never attend to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from v2vz_engine.attention_io import enter, leave

if TYPE_CHECKING:
    from v2vz_engine.self_replace import SelfReplace

Mode = Literal["dense", "sparse_causal", "per_frame", "dense_kv_repeat"]
MODES: tuple[str, ...] = ("dense", "sparse_causal", "per_frame", "dense_kv_repeat")

# The three self-attention layers the published code makes dense; the other 13 are sparse-causal.
PUBLISHED_DENSE_LAYERS = (
    "down_blocks.0.attentions.0.",
    "mid_block.attentions.0.",
    "up_blocks.1.attentions.0.",
)


@dataclass
class FrameContext:
    """Per-call state shared by every processor and norm of one UNet."""

    frames: int = 1
    cross_frame: bool = True  # False: every attn1 layer attends within its own frame
    joint_groupnorm: bool = False  # ResNet GroupNorm statistics over all frames of a clip
    self_replace: SelfReplace | None = None  # the edit branch attends with the source's probabilities (self_replace.py)


def self_attention_names(unet: nn.Module) -> list[str]:
    return [name for name in unet.attn_processors if name.endswith("attn1.processor")]


def layout_modes(unet: nn.Module, layout: str) -> dict[str, Mode]:
    """The attn1 mode of every self-attention layer for a named layout."""
    names = self_attention_names(unet)
    if layout in ("dense", "sparse_causal", "per_frame", "dense_kv_repeat"):
        return dict.fromkeys(names, layout)
    if layout == "published":
        return {name: "dense" if name.startswith(PUBLISHED_DENSE_LAYERS) else "sparse_causal" for name in names}
    raise ValueError(f"unknown attention layout {layout!r}")


def _to_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, heads*dim) -> (batch, heads, tokens, dim)."""
    batch, tokens, inner = x.shape
    return x.view(batch, tokens, heads, inner // heads).transpose(1, 2)


def _from_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, tokens, dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * dim)


def frame_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int, heads: int, mode: Mode
) -> torch.Tensor:
    """Self-attention of projected q/k/v `(B*F, N, C)` under a cross-frame mode; returns `(B*F, N, C)`."""
    total, tokens, channels = q.shape
    if mode == "per_frame" or frames == 1:
        return _from_heads(
            F.scaled_dot_product_attention(_to_heads(q, heads), _to_heads(k, heads), _to_heads(v, heads))
        )
    if total % frames:
        raise ValueError(f"batch {total} is not a whole number of clips of {frames} frames")
    clips = total // frames
    if mode == "dense":
        # Fold the frames into the token axis: one softmax over F*N keys, per clip.
        fold = lambda x: _to_heads(x.reshape(clips, frames * tokens, channels), heads)  # noqa: E731
        out = F.scaled_dot_product_attention(fold(q), fold(k), fold(v))
        return _from_heads(out).reshape(total, tokens, channels)
    k5, v5 = k.view(clips, frames, tokens, channels), v.view(clips, frames, tokens, channels)
    if mode == "sparse_causal":
        previous = torch.arange(frames, device=q.device) - 1
        previous[0] = 0
        first = torch.zeros(frames, dtype=torch.long, device=q.device)
        k_sel = torch.cat([k5[:, first], k5[:, previous]], dim=2)
        v_sel = torch.cat([v5[:, first], v5[:, previous]], dim=2)
    elif mode == "dense_kv_repeat":
        k_sel = k5.reshape(clips, 1, frames * tokens, channels).repeat(1, frames, 1, 1)
        v_sel = v5.reshape(clips, 1, frames * tokens, channels).repeat(1, frames, 1, 1)
    else:
        raise ValueError(f"unknown cross-frame mode {mode!r}")
    k_sel = k_sel.reshape(total, -1, channels)
    v_sel = v_sel.reshape(total, -1, channels)
    return _from_heads(
        F.scaled_dot_product_attention(_to_heads(q, heads), _to_heads(k_sel, heads), _to_heads(v_sel, heads))
    )


class CrossFrameAttnProcessor:
    """attn1 processor: self-attention whose keys/values span the frames of a clip (see module doc)."""

    def __init__(self, mode: Mode, context: FrameContext) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown cross-frame mode {mode!r}")
        self.mode: Mode = mode
        self.context = context

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("CrossFrameAttnProcessor is for unmasked self-attention (attn1) only")
        entered = enter(attn, hidden_states, temb)
        x = entered.hidden_states
        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        if self.context.self_replace is not None:
            q, k = self.context.self_replace.swap(q, k)
        mode: Mode = self.mode if self.context.cross_frame else "per_frame"
        out = frame_attention(q, k, v, self.context.frames, attn.heads, mode).to(q.dtype)
        return leave(attn, out, entered)


class FrameJointGroupNorm(nn.GroupNorm):
    """A ResNet GroupNorm whose statistics span all frames of a clip (the published UNet's 5-D GroupNorm).

    It shares the weight and bias Parameters of the norm it replaces, so the state dict is unchanged.
    """

    def __init__(self, source: nn.GroupNorm, context: FrameContext) -> None:
        super().__init__(source.num_groups, source.num_channels, source.eps, source.affine)
        self.weight, self.bias = source.weight, source.bias
        self.context = context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = self.context.frames
        if not self.context.joint_groupnorm or frames == 1 or x.ndim != 4:
            return super().forward(x)
        total, channels, height, width = x.shape
        clips = total // frames
        video = x.view(clips, frames, channels, height, width).transpose(1, 2)  # (B, C, F, H, W)
        out = F.group_norm(video, self.num_groups, self.weight, self.bias, self.eps)
        return out.transpose(1, 2).reshape(total, channels, height, width)


def install_frame_joint_groupnorm(unet: nn.Module, context: FrameContext) -> int:
    """Replace every ResNet norm (and conv_norm_out) by a FrameJointGroupNorm; the transformers' own stay."""
    from diffusers.models.resnet import ResnetBlock2D

    replaced = 0
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            for attr in ("norm1", "norm2"):
                replaced += _install_on(module, attr, context)
    return replaced + _install_on(unet, "conv_norm_out", context)


def _install_on(parent: nn.Module, attr: str, context: FrameContext) -> int:
    """Replace one GroupNorm, or re-bind an already replaced one to this context (a second pipeline on the model)."""
    norm = getattr(parent, attr, None)
    if isinstance(norm, FrameJointGroupNorm):
        norm.context = context
        return 1
    if type(norm) is nn.GroupNorm:
        setattr(parent, attr, FrameJointGroupNorm(norm, context))
        return 1
    return 0
