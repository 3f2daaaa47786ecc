"""The deterministic DDIM schedule, written out by hand (method.md section 2).

diffusers' DDIMInverseScheduler indexes the inversion slightly differently; writing both directions here keeps
inversion and sampling exact mirrors of each other, which is what makes the round trip work.

The UNet's output is what the model predicts: the noise (`epsilon`, SD 1.x and SD 2.x-base) or the velocity
`v = sqrt(a) eps - sqrt(1 - a) x0` (`v_prediction`, SD 2.x 768). A step turns it into the clean latent and the
noise of the latent it was predicted on (at v-prediction that needs no division by sqrt(a), so a zero-terminal-SNR
schedule, whose last alpha is 0, steps fine). Guidance mixes the outputs linearly, and both conversions are linear
in the output for one latent, so guiding v is guiding eps. Each step's predecessor comes from the timesteps
themselves, so "trailing" and "linspace" spacings (unequal strides) step right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

PredictionType = Literal["epsilon", "v_prediction"]


@dataclass(frozen=True)
class DdimSchedule:
    """Timesteps (descending, e.g. 981 .. 1) and the cumulative alphas they index."""

    timesteps: tuple[int, ...]
    alphas_cumprod: torch.Tensor  # float64, indexed by training timestep
    final_alpha_cumprod: float  # the alpha "before" the last step (alphas_cumprod[0] with set_alpha_to_one=False)
    prediction_type: PredictionType = "epsilon"
    _previous: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"DDIM steps models that predict epsilon or v, not {self.prediction_type!r}")
        previous = dict(zip(self.timesteps, self.timesteps[1:], strict=False))
        object.__setattr__(self, "_previous", previous)

    @classmethod
    def from_scheduler(cls, scheduler, steps: int) -> DdimSchedule:
        """Take the timesteps, alphas and prediction type of a diffusers DDIMScheduler configured as the method says."""
        scheduler.set_timesteps(steps)
        return cls(
            timesteps=tuple(int(t) for t in scheduler.timesteps),
            alphas_cumprod=scheduler.alphas_cumprod.to(torch.float64).clone(),
            final_alpha_cumprod=float(scheduler.final_alpha_cumprod),
            prediction_type=scheduler.config.get("prediction_type", "epsilon"),
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
        """The alpha of the step after t in sampling order (the next timestep), or the final one."""
        prev = self._previous.get(t, t - self.stride)
        return float(self.alphas_cumprod[prev]) if prev >= 0 else self.final_alpha_cumprod

    def clean_and_noise(self, output: torch.Tensor, a: float, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) of a latent `z` whose alpha is `a`, from the model's output for it."""
        if self.prediction_type == "v_prediction":
            return a**0.5 * z - (1 - a) ** 0.5 * output, a**0.5 * output + (1 - a) ** 0.5 * z
        return (z - (1 - a) ** 0.5 * output) / a**0.5, output

    def step(self, output: torch.Tensor, t: int, z: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM sampling step z_t -> z_prev (eta 0), from the model's output at t."""
        x0, eps = self.clean_and_noise(output, self.alpha(t), z)
        a_prev = self.alpha_prev(t)
        return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps

    def inverse_step(self, output: torch.Tensor, t: int, z: torch.Tensor) -> torch.Tensor:
        """One DDIM inversion step z_prev -> z_t, with the output evaluated at t on the current latent (whose alpha
        is the previous level's: diffusers' DDIMInverseScheduler converts a v there too)."""
        x0, eps = self.clean_and_noise(output, self.alpha_prev(t), z)
        a_t = self.alpha(t)
        return a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps
