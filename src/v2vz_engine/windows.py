"""Clips of any length: edit them as a sequence of windows that also attend to a few anchor frames.

Dense cross-frame attention over a whole shot costs O((frames x tokens)^2), so a clip is cut into windows of a few
frames, each inverted, optimized and edited on its own (the method's one null embedding per step is then shared by
the frames of a window). To keep the windows consistent, every window's self-attention also sees anchor frames:
the clip's first frame and the last frames of the previous window. Anchors are not edited again: at every edit step
their latents (both branches) are the ones recorded when their own window was edited, so they enter the UNet only
to give keys and values, and their outputs are dropped. What is kept between windows is those latent trajectories,
a few MiB per anchor frame, so memory stays that of one window plus its anchors however long the clip.

Batch order inside a window is [anchors in clip order, window frames], so sparse-causal attention's "first frame" is
the clip's first frame and the window's first frame has the previous window's last frame as its "previous".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

# Published method: 8 frames of 64x64 latents attend to each other. Our automatic window keeps the attention span
# (frames x latent tokens) at twice that and bounds the frames on both sides.
TOKEN_BUDGET = 2 * 8 * 64 * 64
MIN_AUTO_WINDOW = 4
MAX_AUTO_WINDOW = 16
# Estimated peak bytes per frame and latent token of the heaviest stage (null-text's backward through the UNet,
# SD 1.5, 2-byte weights); a GPU that runs out anyway makes the window smaller and retries (run.py).
BYTES_PER_FRAME_TOKEN = 384 * 1024
# SDXL's UNet has no attention at the latent's own resolution, but 2 and 10 transformer layers at a half and a
# quarter of it, 1280 channels wide, and 3.4x SD 1.5's weights to back-propagate through: an estimate, per latent
# token, of 4/3 of SD 1.5's until benchmarks/gpu_check.py's SDXL rows measure it on a GPU.
FAMILY_MEMORY = {"sd": 1.0, "sdxl": 4 / 3}
MEMORY_SHARE = 0.8  # of the free memory, the rest is left for the allocator's fragmentation and other processes


def plan_windows(frames: int, window: int) -> list[range]:
    """Split frames 0..frames-1 into ceil(frames / window) consecutive windows of near-equal size (larger first).

    Equal sizes keep the last window from being a lone frame or two with little temporal context.
    """
    if frames < 1 or window < 1:
        raise ValueError(f"need at least one frame and a window of at least one, got {frames} and {window}")
    count = math.ceil(frames / window)
    base, extra = divmod(frames, count)
    windows, start = [], 0
    for index in range(count):
        size = base + (1 if index < extra else 0)
        windows.append(range(start, start + size))
        start += size
    return windows


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory on the device: the GPU's free bytes, or the system's available RAM for the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimated_bytes(frames: int, width: int, height: int, dtype_bytes: int = 2, family: str = "sd") -> float:
    """The peak memory a window of `frames` frames is expected to need above the model's weights (the heaviest
    stage's estimate that `auto_window` fits into the free memory; benchmarks/gpu_check.py measures it)."""
    tokens = max(1, (width // 8) * (height // 8))
    return frames * BYTES_PER_FRAME_TOKEN * FAMILY_MEMORY[family] * tokens * dtype_bytes / 2


def auto_window(width: int, height: int, free_bytes: int | None, dtype_bytes: int = 2, family: str = "sd") -> int:
    """The default window for a working size (pixels), model family and free memory: the token budget, capped by
    memory (SDXL's 1024x1024 is 16,384 latent tokens a frame: the minimum of 4 frames, fewer if memory is short)."""
    tokens = max(1, (width // 8) * (height // 8))
    window = max(MIN_AUTO_WINDOW, min(MAX_AUTO_WINDOW, TOKEN_BUDGET // tokens))
    if free_bytes is not None:
        per_frame = estimated_bytes(1, width, height, dtype_bytes, family)
        window = min(window, int(free_bytes * MEMORY_SHARE // per_frame))
    return max(1, window)


@dataclass
class AnchorBank:
    """Latent trajectories of the frames later windows attend to, keyed by frame index within the job.

    Each trajectory is (steps, 2, 4, h, w): the latent entering every edit step, source and edit branch.
    """

    tail: int  # frames of the previous window to keep besides the first frame
    trajectories: dict[int, torch.Tensor] = field(default_factory=dict)
    shares: dict[int, torch.Tensor] = field(default_factory=dict)  # a local edit's word shares (steps, h, w)

    def anchors_for(self, window: range) -> tuple[list[int], torch.Tensor | None]:
        """The anchor frame indices of a window (clip order) and their stacked trajectories (steps, 2, A, 4, h, w)."""
        indices = sorted(i for i in self.trajectories if i < window.start)
        if not indices:
            return [], None
        return indices, torch.stack([self.trajectories[i] for i in indices], dim=2)

    def to_record(self, window: range) -> list[int]:
        """Positions within `window` whose trajectories later windows need: the first frame, the last `tail`."""
        keep = {len(window) - 1 - k for k in range(min(self.tail, len(window)))}
        if window.start == 0:
            keep.add(0)
        return sorted(keep)

    def shares_for(self, indices: list[int]) -> torch.Tensor | None:
        """The word shares (steps, A, h, w) of anchor frames `indices`; None without a word mask."""
        if not indices or any(i not in self.shares for i in indices):
            return None
        return torch.stack([self.shares[i] for i in indices], dim=1)

    def store(
        self, window: range, positions: list[int], trajectories: torch.Tensor, shares: torch.Tensor | None = None
    ) -> None:
        """Keep the recorded trajectories (steps, 2, R, ...) and word shares (steps, R, h, w) of a finished window;
        drop the previous tail."""
        self.trajectories = {i: t for i, t in self.trajectories.items() if i == 0}
        self.shares = {i: t for i, t in self.shares.items() if i == 0}
        for slot, position in enumerate(positions):
            self.trajectories[window.start + position] = trajectories[:, :, slot].clone()
            if shares is not None:
                self.shares[window.start + position] = shares[:, slot].clone()


# ----------------------------------------------------------------------------------------------------------------
# Anchored windows (after Fairy, Wu et al. 2024): a few anchor frames spread over the whole range are edited together
# first, and every window then attends to them (and only them), so no window waits for another: with workers to
# spare, a clip of any length takes two edits end to end (the anchor pass, then all windows at once). Chained windows
# (AnchorBank above) need one edit per window, one after the other.


def spread_anchors(frames: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over 0..frames-1, first and last included (fewer for a short range)."""
    if frames < 1:
        raise ValueError(f"need at least one frame, got {frames}")
    if count <= 1 or frames == 1:
        return [0]
    count = min(count, frames)
    return sorted({round(k * (frames - 1) / (count - 1)) for k in range(count)})


@dataclass(frozen=True)
class WindowPlan:
    """How the windows of one job depend on each other: plain values a scheduler reads.

    links "chained": window k needs window k-1's recorded trajectories. "anchored": every window needs only the
    anchor pass (the frames `anchor_frames`, edited together first); a range that fits in one window has no anchor
    pass in either mode.
    """

    windows: tuple[range, ...]
    links: str
    anchor_frames: tuple[int, ...] = ()

    @property
    def anchored(self) -> bool:
        return bool(self.anchor_frames)

    def depends_on(self, index: int) -> tuple[int, ...]:
        """The windows window `index` waits for (-1: the anchor pass): run.py submits a window once they are done."""
        if self.anchored:
            return (-1,)
        return (index - 1,) if index > 0 else ()

    @property
    def critical_path(self) -> int:
        """Edits one after another however many workers there are: 2 anchored, one per window chained (run.py logs
        it with the plan; benchmarks/bench_window_links.py reports it)."""
        if len(self.windows) == 1:
            return 1
        return 2 if self.anchored else len(self.windows)


def plan_links(frames: int, window: int, links: str, anchors: int) -> WindowPlan:
    """The windows of a `frames`-frame range and how they link: `anchors` + 1 anchor frames when anchored."""
    windows = tuple(plan_windows(frames, window))
    if links not in ("chained", "anchored"):
        raise ValueError(f"unknown window links {links!r}")
    if links == "chained" or len(windows) == 1:
        return WindowPlan(windows, links)
    return WindowPlan(windows, links, tuple(spread_anchors(frames, anchors + 1)))
