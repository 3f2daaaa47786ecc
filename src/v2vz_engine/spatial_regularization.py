"""Spatial regularization (method.md section 4): the source branch's cross-attention maps steer the edit branch.

Both branches are denoised together, one UNet call per step, batch order
`[uncond-src, uncond-edit, cond-src, cond-edit] x frames`; with direct inversion the source branch needs no
unconditional pass, so the order is `[uncond-edit, cond-src, cond-edit]` (direct.py). In every cross-attention
(attn2) layer the attention probabilities are computed explicitly and, for the conditional pair only (the last two
groups), the edit branch's maps are replaced by the source branch's, frame by frame and head by head, for the first
part of the schedule (prompt-to-prompt). The same processor hands the maps of a local edit's words to its
`WordMaps` (local_edit.py) at every step; without words, after the cutoff, it never looks at the batch layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from v2vz_engine.attention_io import enter, leave
from v2vz_engine.local_edit import WordMaps
from v2vz_engine.prompt_alignment import RefinePadding, edit_mode, refine_mapper, replace_mapper
from v2vz_engine.step_rules import CutoffRule, cross_replace_cutoff

BRANCHES = 4  # uncond-src, uncond-edit, cond-src, cond-edit
DIRECT_BRANCHES = 3  # uncond-edit, cond-src, cond-edit


@dataclass
class PromptControl:
    """What every attn2 processor of one edit shares: the token mapper, the cutoff and the step counter.

    The current step is known by counting attention-layer calls: each UNet call makes `layers` of them.
    """

    mode: str  # "replace" or "refine"
    frames: int
    cutoff_step: int  # the source maps are used for steps < cutoff_step
    layers: int  # attn2 layers per UNet call
    branches: int = BRANCHES  # groups of `frames` per UNet call while replacing; the last two are cond-src, cond-edit
    replace_matrix: torch.Tensor | None = None  # (77, 77): edit[t] = sum_s src[s] * M[s, t]
    refine_index: torch.Tensor | None = None  # (77,)
    refine_alpha: torch.Tensor | None = None  # (77,)
    calls: int = field(default=0)
    self_cutoff_step: int = 0  # self_replace.py replaces attn1 for steps < self_cutoff_step (it needs the source)
    maps: WordMaps | None = None  # a local edit's word maps, collected at every step

    @classmethod
    def for_prompts(
        cls,
        source: str,
        target: str,
        tokenizer,
        frames: int,
        steps: int,
        layers: int,
        cross_replace: float,
        refine_cross_replace: float,
        *,
        cutoff: CutoffRule = "nearest",
        refine_padding: RefinePadding = "aligned",
        branches: int = BRANCHES,
    ) -> PromptControl:
        """Replace when the prompts have the same word count, refine otherwise (prompt-to-prompt's rule)."""
        mode = edit_mode(source, target)
        fraction = cross_replace if mode == "replace" else refine_cross_replace
        cutoff_step = cross_replace_cutoff(fraction, steps, cutoff)
        control = cls(mode=mode, frames=frames, cutoff_step=cutoff_step, layers=layers, branches=branches)
        if mode == "replace":
            control.replace_matrix = replace_mapper(source, target, tokenizer)
        else:
            mapped = refine_mapper(source, target, tokenizer, padding=refine_padding)
            control.refine_index, control.refine_alpha = mapped
        return control

    @property
    def step(self) -> int:
        return self.calls // self.layers

    def replacing(self, step: int) -> bool:
        """Whether edit step `step` uses the source's cross-attention maps."""
        return step < self.cutoff_step

    def source_needed(self, step: int) -> bool:
        """Whether edit step `step` needs the source branch in its UNet call (its cross- or self-attention)."""
        return step < max(self.cutoff_step, self.self_cutoff_step)

    def groups(self, step: int) -> int:
        """Groups of `frames` in step `step`'s UNet call: direct inversion's source branch leaves once unneeded."""
        if self.branches == DIRECT_BRANCHES and not self.source_needed(step):
            return 2  # uncond-edit, cond-edit
        return self.branches

    def edit_maps(self, source: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """The edit branch's maps `(..., tokens)` given the source branch's maps and its own."""
        if self.mode == "replace":
            matrix = self.replace_matrix.to(device=source.device, dtype=source.dtype)
            return source @ matrix
        index = self.refine_index.to(source.device)
        alpha = self.refine_alpha.to(device=source.device, dtype=source.dtype)
        return source[..., index] * alpha + own * (1 - alpha)


class SpatialRegularizationProcessor:
    """attn2 processor that injects the source branch's cross-attention maps into the edit branch."""

    def __init__(self, control: PromptControl) -> None:
        self.control = control

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        control = self.control
        step = control.step
        active = control.replacing(step)
        control.calls += 1
        entered = enter(attn, hidden_states, temb)
        hidden_states = entered.hidden_states
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)

        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        if active or control.maps is not None:
            probs = attn.get_attention_scores(q, k, attention_mask)  # (groups*F*heads, N, tokens)
            total, pixels, tokens = probs.shape
            groups = control.groups(step)
            maps = probs.view(groups, control.frames, attn.heads, pixels, tokens)
            if control.maps is not None:  # each branch's own maps, before any injection (prompt-to-prompt's)
                control.maps.add(maps, source_present=groups > 2)
            if active:
                edit = control.edit_maps(maps[-2], maps[-1])
                probs = torch.cat([maps[:-1], edit.unsqueeze(0)]).view(total, pixels, tokens)
            out = torch.bmm(probs, v)
        else:
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return leave(attn, attn.batch_to_head_dim(out), entered)


def cross_attention_names(unet) -> list[str]:
    return [name for name in unet.attn_processors if name.endswith("attn2.processor")]
