"""Video inversion (method.md section 2): DDIM inversion, then null-text optimization shared by all frames.

The result, an `Inversion`, depends only on the clip, its range and size, the model, the source prompt and the
inversion settings - never on the target prompt - so it is saved and reused for every re-prompt of a clip.
What it holds depends on how the edit ties its source branch to the clip (EditOptions.inversion):
- null-text: z_T and one optimized null embedding per step;
- direct: z_T and the whole DDIM inversion trajectory, which the source branch is set to at every step (direct.py);
- negative-prompt: z_T only (the source prompt's embedding is the unconditional one).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from v2vz.api.files import atomic_path
from v2vz_engine.schedule import DdimSchedule
from v2vz_engine.step_rules import LrDecay, null_lr

NoisePredictor = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]  # (z, t, text embedding per frame) -> eps
StepCallback = Callable[[int, int], None]  # (step done, total); raises Cancelled to stop


@dataclass
class Inversion:
    """z_T, then what the edit needs per step (see the module doc), and what they were computed from."""

    z_T: torch.Tensor  # (frames, 4, h, w) float32
    nulls: torch.Tensor | None = None  # null-text: (steps, 77, D) float32; nulls[i] serves timesteps[i]
    meta: dict[str, Any] = field(default_factory=dict)
    step_losses: torch.Tensor | None = None  # (steps, 2): each step's loss before and after its optimization
    trajectory: torch.Tensor | None = None  # direct: (steps + 1, frames, 4, h, w), [i] enters edit step i, [-1] z_0

    TENSORS: ClassVar[tuple[str, ...]] = ("z_T", "nulls", "step_losses", "trajectory")

    def __post_init__(self) -> None:
        """Every tensor contiguous: a fresh inversion (whose latents come out of the VAE in another memory layout)
        and the same one loaded from the cache then run the edit through the same kernels, so a re-prompt from the
        cache gives exactly the frames of a fresh edit (convolutions round differently per layout)."""
        for name in self.TENSORS:
            tensor = getattr(self, name)
            if tensor is not None and not tensor.is_contiguous():
                setattr(self, name, tensor.contiguous())

    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary name, then rename): a crash never leaves a half-written cache entry.

        A trajectory's first latent is z_T: it is stored once.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = [name for name in self.TENSORS if getattr(self, name) is not None]
        if self.trajectory is not None:
            names.remove("z_T")
        tensors = {name: getattr(self, name).contiguous().cpu() for name in names}
        with atomic_path(path, mode=0o600) as temp:
            save_file(tensors, str(temp), metadata={"meta": json.dumps(self.meta, sort_keys=True)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Inversion:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata().get("meta", "{}"))
        tensors = load_file(str(path))
        if "trajectory" in tensors:
            tensors["z_T"] = tensors["trajectory"][0]
        return cls(meta=meta, **{name: tensors.get(name) for name in cls.TENSORS})

    @property
    def steps(self) -> int | None:
        """The edit steps it serves (None for negative-prompt, which holds nothing per step)."""
        if self.trajectory is not None:
            return self.trajectory.shape[0] - 1
        return None if self.nulls is None else self.nulls.shape[0]


class InversionStore(Protocol):
    """Where inversions are kept between jobs, by cache key (the daemon's InversionCache is one)."""

    def get(self, key: str) -> Inversion | None: ...

    def put(self, key: str, inversion: Inversion) -> object: ...


# Part of every key: bump it when the inversion's algorithm or file layout changes, so old entries are never served.
# 2: the inversion method in the key, direct inversion's trajectory, the null-text learning-rate rule.
CACHE_FORMAT = 2


def frames_digest(frames: np.ndarray) -> str:
    """sha256 of decoded frames at the working size: shape, dtype and pixels (contiguous order, any strides)."""
    data = np.ascontiguousarray(frames)
    digest = hashlib.sha256()
    digest.update(json.dumps({"shape": list(data.shape), "dtype": data.dtype.str}).encode())
    digest.update(data.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def cache_key(
    frames_digest: str,
    start: int,
    count: int,
    width: int,
    height: int,
    model: str,
    source_prompt: str,
    inversion_options: dict[str, Any],
    loras: tuple[tuple[str, float], ...] = (),
) -> str:
    """sha256 of a canonical JSON of everything an inversion depends on; there is no target prompt to pass.

    `inversion_options` is EditOptions.inversion_key(). Values must be JSON (a TypeError otherwise, rather than a
    lossy str()). Note 7 and 7.0 are different JSON, so callers should pass options from EditOptions as they are.
    `loras`: (digest, scale) of each LoRA on the model (loras.applied_key); none keeps the base model's keys as
    they always were.
    """
    document = {
        "format": CACHE_FORMAT,
        "frames": frames_digest,
        "start": start,
        "count": count,
        "width": width,
        "height": height,
        "model": model,
        "source_prompt": source_prompt,
        "options": inversion_options,
    }
    if loras:
        document["loras"] = [[digest, float(scale)] for digest, scale in loras]
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def ddim_invert(
    predict: NoisePredictor,
    schedule: DdimSchedule,
    z0: torch.Tensor,
    text: torch.Tensor,
    on_step: StepCallback | None = None,
) -> list[torch.Tensor]:
    """Deterministic DDIM inversion at guidance 1: the latents z_0, z_{t_1}, ..., z_T (steps + 1 of them)."""
    latents = [z0]
    z = z0
    with torch.no_grad():
        for i, t in enumerate(reversed(schedule.timesteps)):
            z = schedule.inverse_step(predict(z, t, text), t, z)
            latents.append(z)
            if on_step:
                on_step(i + 1, schedule.steps)
    return latents


def early_stop_threshold(step: int) -> float:
    """The published early-stop rule: a step is good enough once its loss is below 1e-5 + step * 2e-5."""
    return 1e-5 + step * 2e-5


def optimize_nulls(
    predict: NoisePredictor,
    schedule: DdimSchedule,
    latents: list[torch.Tensor],
    cond: torch.Tensor,
    null_init: torch.Tensor,
    guidance: float,
    inner_steps: int = 1,
    lr: float = 1e-2,
    early_stop: bool = True,
    on_step: StepCallback | None = None,
    before_inner: StepCallback | None = None,
    lr_decay: LrDecay = "steps",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Null-text optimization made video-level: ONE null embedding per step for the whole clip.

    For edit step i (timestep t), starting from z_T and warm-starting from step i-1's optimum, Adam moves the null
    embedding so that a guided DDIM step from the current latent lands on the inversion's latent at t - stride.
    `cond` is the source prompt's embedding per frame; `null_init` is (1, 77, D). The learning rate of step i is
    `step_rules.null_lr(lr, i, steps, lr_decay)`.
    Returns the nulls (steps, 77, D) in float32 and each step's loss before and after (steps, 2).
    `before_inner(step, inner)` runs before every inner iteration (one UNet call and its backward), so a cancel is
    honoured within one UNet call however many inner steps there are.
    """
    frames = latents[0].shape[0]
    steps = schedule.steps
    null = null_init.detach().float().clone()
    z_cur = latents[-1]
    nulls, losses = [], []
    for i, t in enumerate(schedule.timesteps):
        target = latents[steps - i - 1]
        null = null.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([null], lr=null_lr(lr, i, steps, lr_decay))
        with torch.no_grad():
            eps_cond = predict(z_cur, t, cond)
        before = None
        for inner in range(inner_steps):
            if before_inner:
                before_inner(i + 1, inner + 1)
            eps_uncond = predict(z_cur, t, null.expand(frames, -1, -1))
            eps = eps_uncond + guidance * (eps_cond - eps_uncond)
            loss = F.mse_loss(schedule.step(eps, t, z_cur), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            before = value if before is None else before
            if early_stop and value < early_stop_threshold(i):
                break
        null = null.detach()
        with torch.no_grad():
            eps_uncond = predict(z_cur, t, null.expand(frames, -1, -1))
            z_cur = schedule.step(eps_uncond + guidance * (eps_cond - eps_uncond), t, z_cur)
            after = F.mse_loss(z_cur, target).item()
        nulls.append(null[0])
        losses.append((before, after))
        if on_step:
            on_step(i + 1, steps)
    return torch.stack(nulls), torch.tensor(losses, dtype=torch.float64)
