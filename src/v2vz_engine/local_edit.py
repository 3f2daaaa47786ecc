"""Local edits: only what the prompt's words name, or what the editor's matte covers, changes (method.md section 4's
optional word-driven mask: the paper's Algorithm 1, which its published code never implemented).

Word masks, at every edit step (prompt-to-prompt's local blend, made video-level):
1. the attn2 processors add the cross-attention maps of the local words to `WordMaps` (spatial_regularization.py):
   the source branch's maps for words of the source prompt, the edit branch's for words of the target prompt, the
   conditional half only, averaged over heads, upsampled from the coarser layers to the latent's size, summed over
   layers and over the steps so far;
2. each frame's sum is dilated by one latent pixel (a 3x3 maximum) and divided by its own maximum: the share of the
   frame's strongest response; the source words' and the target words' shares are joined by their maximum;
3. temporal consistency: a frame's share is averaged with its neighbours' (1/4, 1/2, 1/4) by clip position, the
   neighbours found among the window's frames and its anchors (whose shares were recorded when their own window
   edited them, so a window's first frame sees exactly what the previous window's last frame had: no seam);
4. the share above `edit_only_threshold` is the edit region.
From step `word_start` (LOCAL_BLEND_START of the steps: the layout forms first) the edit branch's latents outside
the region are replaced by the source branch's after every step: `edit = w * edit + (1 - w) * source`, where
`source` is the clip's inversion trajectory with direct inversion, and the source branch's own latents otherwise.
A matte's value is the weight `w` from the first step (its soft edges kept); with words as well, `w` is the
product of the two: their intersection. After decoding, run.py composites the edit over the source's own pixels
with the same weight (`composite`), because a latent blend alone leaves the kept region a few grey levels off (the
decoder mixes neighbouring latents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from v2vz.api.job import normal_word
from v2vz_engine.prompt_alignment import word_token_positions

LOCAL_BLEND_START = 0.2  # fraction of the steps before a word mask blends (prompt-to-prompt's local blend: 0.2)
EMPTY_BELOW = 0.5 / 255  # a frame whose weight never reaches this edits nothing: "left as shot"


def word_start(steps: int) -> int:
    """The first step whose result a word mask blends."""
    return math.ceil(LOCAL_BLEND_START * steps)


def local_positions(prompt: str, words: tuple[str, ...], tokenizer) -> tuple[int, ...]:
    """The token positions (BOS = 0) of the prompt's words that are among `words` (normal_word spellings); a word past
    the 77 tokens the text encoder reads has none."""
    spans = word_token_positions(prompt, tokenizer)
    chosen = [spans[slot] for slot, word in enumerate(prompt.split()) if normal_word(word) in words]
    return tuple(position for span in chosen for position in span)


@dataclass
class WordMaps:
    """The running sums of the local words' cross-attention maps over layers and steps, at the latent's size.

    `frames`: frames per branch in every UNet call (anchors first, then the span's own frames).
    """

    source_positions: tuple[int, ...]  # token positions (BOS = 0) of the local words in the source prompt
    target_positions: tuple[int, ...]  # ... and in the target prompt
    latent_size: tuple[int, int]  # (h, w)
    frames: int
    sums: torch.Tensor | None = None  # (2, frames, h, w): [source words, target words]

    def add(self, maps: torch.Tensor, source_present: bool) -> None:
        """One attn2 layer's probabilities `(groups, frames, heads, pixels, tokens)` of one UNet call; the last two
        groups are cond-source and cond-edit when `source_present`, else the last is cond-edit."""
        height, width = _layer_size(self.latent_size, maps.shape[3])
        if self.sums is None:
            self.sums = torch.zeros(2, self.frames, *self.latent_size, device=maps.device, dtype=torch.float32)
        picks = [(1, maps[-1], self.target_positions)]
        if source_present:
            picks.append((0, maps[-2], self.source_positions))
        for slot, group, positions in picks:
            if not positions:
                continue
            response = group[..., list(positions)].float().sum(-1).mean(1)  # (frames, pixels)
            response = response.view(self.frames, 1, height, width)
            if (height, width) != self.latent_size:
                response = F.interpolate(response, size=self.latent_size, mode="bilinear", align_corners=False)
            self.sums[slot] += response[:, 0]

    def shares(self) -> torch.Tensor:
        """(frames, h, w): each frame's dilated response as a share of its own maximum, source and target joined."""
        if self.sums is None:
            return torch.zeros(self.frames, *self.latent_size)
        dilated = F.max_pool2d(self.sums, kernel_size=3, stride=1, padding=1)
        peak = dilated.flatten(2).amax(-1).clamp_min(1e-12)[..., None, None]
        return (dilated / peak).amax(0)


def _layer_size(latent: tuple[int, int], pixels: int) -> tuple[int, int]:
    """The (h, w) of a UNet level with `pixels` tokens: the latent halved (rounding up, as a stride-2 conv does)."""
    height, width = latent
    while height * width > pixels:
        height, width = -(-height // 2), -(-width // 2)
    if height * width != pixels:
        raise ValueError(f"a layer of {pixels} tokens is no level of a {latent[0]}x{latent[1]} latent")
    return height, width


def smooth_in_time(shares: torch.Tensor, indices: tuple[int, ...]) -> torch.Tensor:
    """Each frame's share averaged with its clip neighbours' (1/4, 1/2, 1/4); a missing neighbour counts as itself.

    `indices`: the clip position of each row of `shares` (anchors and the span's frames, in any order)."""
    row = {index: slot for slot, index in enumerate(indices)}
    before = [row.get(index - 1, slot) for slot, index in enumerate(indices)]
    after = [row.get(index + 1, slot) for slot, index in enumerate(indices)]
    return 0.25 * shares[before] + 0.5 * shares + 0.25 * shares[after]


@dataclass
class LocalEdit:
    """One span's local edit: the weight that blends its edit branch towards its source branch after each step.

    `matte`: (F, h, w) in 0..1 at the latent size (None: no matte). `maps`: the word maps (None: no words). Anchors
    come first in every UNet call; `anchor_shares` (steps, A, h, w) are the shares they had in their own span.
    """

    steps: int
    indices: tuple[int, ...]  # clip positions of the span's frames
    maps: WordMaps | None = None
    matte: torch.Tensor | None = None
    threshold: float = 0.3
    anchor_indices: tuple[int, ...] = ()
    anchor_shares: torch.Tensor | None = None
    record: tuple[int, ...] = ()  # positions within the span whose shares later spans need
    recorded: list[torch.Tensor] = field(default_factory=list)  # (R, h, w) per step
    final_region: torch.Tensor | None = None  # (F, h, w): the word region after the last step

    def weight(self, step: int) -> torch.Tensor | None:
        """(F, 1, h, w) after edit step `step` (1: the edit, 0: the source); None: nothing is blended at this step."""
        weight = self.matte
        if self.maps is not None:
            region = self._word_region(step)
            if step == self.steps - 1:
                self.final_region = region.detach().cpu().clone()
            if step >= word_start(self.steps):
                weight = region if weight is None else weight * region.to(weight)
        return None if weight is None else weight.unsqueeze(1)

    def _word_region(self, step: int) -> torch.Tensor:
        """The span's frames' word region after step `step`, recording the shares later spans need."""
        shares = self.maps.shares()
        anchors = len(self.anchor_indices)
        own = shares[anchors:]
        if self.record:
            self.recorded.append(own[list(self.record)].detach().cpu().clone())
        if anchors and self.anchor_shares is not None:
            shares = torch.cat([self.anchor_shares[step].to(own), own])
            indices = self.anchor_indices + self.indices
        else:
            shares, indices = own, self.indices
        smoothed = smooth_in_time(shares, indices)[len(indices) - len(self.indices) :]
        return (smoothed > self.threshold).float()

    def recorded_shares(self) -> torch.Tensor | None:
        """(steps, R, h, w) of the recorded positions, for the spans that attend to them."""
        return torch.stack(self.recorded) if self.recorded else None


def blend(edit: torch.Tensor, source: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """`weight * edit + (1 - weight) * source`, exact where the weight is 0 or 1 (the source's, the edit's values)."""
    if weight is None:
        return edit
    weight = weight.to(edit)
    return weight * edit + (1 - weight) * source


def composite(edited: np.ndarray, source: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """uint8 (F, H, W, 3) edit over the source's own pixels by a float (F, H, W) weight; where it is 0 the result is
    the source's pixels exactly, where it is 1 the edit's."""
    weight = weight[..., None].astype(np.float32)
    mixed = weight * edited.astype(np.float32) + (1 - weight) * source.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def upsample(weight: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (F, h, w) latent weight at a frame size (bilinear: a word region's edge becomes a soft ramp)."""
    tensor = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)).unsqueeze(1)
    if tensor.shape[2:] != (height, width):
        tensor = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)
    return tensor.squeeze(1).clamp(0, 1).numpy()


SOLID = 1e-5  # a resampled weight this near 0 or 1 is that value (rounding, not an edge: 8-bit mattes step by 1/255)


def downsample(matte: np.ndarray, width: int, height: int) -> torch.Tensor:
    """A (F, H, W) matte at the latent size (area average: what the latent pixel covers)."""
    tensor = torch.from_numpy(np.ascontiguousarray(matte, dtype=np.float32)).unsqueeze(1)
    if tensor.shape[2:] != (height, width):
        tensor = F.interpolate(tensor, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    # the filter's weights sum to 1 only up to rounding (a solid white matte came out 0.9999998): snap what rounding
    # moved off 0 and 1, so a solid region stays exactly the edit's or exactly the source's
    tensor = torch.where(tensor > 1 - SOLID, 1.0, torch.where(tensor < SOLID, 0.0, tensor))
    return tensor.squeeze(1).clamp(0, 1)


def empty_frames(weight: np.ndarray) -> list[int]:
    """Positions of the frames with nothing to edit (their weight never reaches EMPTY_BELOW)."""
    peaks = weight.reshape(weight.shape[0], -1).max(axis=1)
    return [position for position, peak in enumerate(peaks) if peak < EMPTY_BELOW]
