"""The deterministic DDIM schedule, written out by hand (method.md section 2).

diffusers' DDIMInverseScheduler indexes the inversion slightly differently; writing both directions here keeps
inversion and sampling exact mirrors of each other, which is what makes the round trip work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DdimSchedule:
    """Timesteps (descending, e.g. 981 .. 1) and the cumulative alphas they index."""

    timesteps: tuple[int, ...]
    alphas_cumprod: torch.Tensor  # float64, indexed by training timestep
    final_alpha_cumprod: float  # the alpha "before" the last step (alphas_cumprod[0] with set_alpha_to_one=False)

    @classmethod
    def from_scheduler(cls, scheduler, steps: int) -> DdimSchedule:
        """Take the timesteps and alphas of a diffusers DDIMScheduler configured as the method says."""
        scheduler.set_timesteps(steps)
        return cls(
            timesteps=tuple(int(t) for t in scheduler.timesteps),
            alphas_cumprod=scheduler.alphas_cumprod.to(torch.float64).clone(),
            final_alpha_cumprod=float(scheduler.final_alpha_cumprod),
        )

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def stride(self) -> int:
        return self.timesteps[0] - self.timesteps[1] if len(self.timesteps) > 1 else self.timesteps[0] + 1

    def alpha(self, t: int) -> float:
        return float(self.alphas_cumprod[t])

    def alpha_prev(self, t: int) -> float:
        """The alpha of the step after t in sampling order (t - stride), or the final one."""
        prev = t - self.stride
        return float(self.alphas_cumprod[prev]) if prev >= 0 else self.final_alpha_cumprod

    def step(self, eps: torch.Tensor, t: int, z: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM sampling step z_t -> z_{t-stride} (eta 0)."""
        a_t, a_prev = self.alpha(t), self.alpha_prev(t)
        x0 = (z - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps

    def inverse_step(self, eps: torch.Tensor, t: int, z: torch.Tensor) -> torch.Tensor:
        """One DDIM inversion step z_{t-stride} -> z_t, with eps evaluated at t on the current latent."""
        a_t, a_prev = self.alpha(t), self.alpha_prev(t)
        x0 = (z - (1 - a_prev) ** 0.5 * eps) / a_prev**0.5
        return a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps
