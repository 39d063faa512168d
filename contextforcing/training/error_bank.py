"""Error banks for Error-Recycling Fine-Tuning (ERFT) of the context teacher.

A teacher trained only on clean context breaks when it continues a student's imperfect rollout.
ERFT (from Stable Video Infinity, used by Context Forcing's teacher) feeds it context and targets
perturbed by errors the model itself made earlier in training, so it learns to steer back.

The bank keys errors by timestep: the bins are the timesteps of a 50-step shift-5 sampling
schedule, and a training timestep maps to the nearest bin, because an error made at noise level t is
what a sampler would carry forward from that level. Each bin holds at most `capacity` errors; when
it is full, a new error replaces the stored one nearest to it in L2, which keeps the bank diverse
instead of letting one mode crowd out the rest.

Errors live on the CPU; sampling takes an explicit generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from contextforcing.diffusion.sampling import euler_timesteps

__all__ = ["ErrorBank"]


class ErrorBank:
    """Timestep-binned store of error tensors, all of one shape.

    Args:
        num_bins: bins, at the timesteps of a `num_bins`-step schedule with shift `shift`.
        capacity: errors kept per bin.
        shift: timestep shift of that schedule.
    """

    def __init__(self, num_bins: int = 50, capacity: int = 500, shift: float = 5.0) -> None:
        if num_bins < 1 or capacity < 1:
            raise ValueError(f"num_bins and capacity must be positive, got {num_bins}, {capacity}")
        self.capacity = capacity
        self.bin_timesteps = euler_timesteps(num_bins, shift)[:-1].float()  # drop the final t = 0
        self._bins: list[list[Tensor]] = [[] for _ in range(num_bins)]

    @property
    def num_bins(self) -> int:
        return len(self._bins)

    def __len__(self) -> int:
        return sum(len(b) for b in self._bins)

    def bin_of(self, t: Tensor) -> Tensor:
        """Nearest bin of each timestep [N] -> [N] long."""
        return (t.float().cpu()[:, None] - self.bin_timesteps[None]).abs().argmin(dim=1)

    def add(self, errors: Tensor, t: Tensor) -> None:
        """Store errors [N, ...] made at timesteps [N]; a full bin replaces its nearest stored error."""
        if errors.shape[0] != t.shape[0]:
            raise ValueError(f"{errors.shape[0]} errors but {t.shape[0]} timesteps")
        for error, index in zip(errors.detach().float().cpu(), self.bin_of(t).tolist(), strict=True):
            stored = self._bins[index]
            if stored and stored[0].shape != error.shape:
                raise ValueError(
                    f"error shape {tuple(error.shape)} differs from the bank's {tuple(stored[0].shape)}"
                )
            if len(stored) < self.capacity:
                stored.append(error.clone())
            else:
                distances = (torch.stack(stored) - error).flatten(1).norm(dim=1)
                stored[int(distances.argmin())] = error.clone()

    def sample(self, t: Tensor, generator: torch.Generator) -> Tensor | None:
        """One stored error per timestep [N] from its bin, stacked [N, ...]; None if any bin is empty."""
        picks = []
        for index in self.bin_of(t).tolist():
            stored = self._bins[index]
            if not stored:
                return None
            picks.append(stored[int(torch.randint(len(stored), (1,), generator=generator))])
        return torch.stack(picks)

    def sample_any(self, count: int, generator: torch.Generator) -> Tensor | None:
        """`count` errors drawn uniformly from the whole bank, [count, ...]; None if it is empty."""
        flat = [e for stored in self._bins for e in stored]
        if not flat:
            return None
        picks = torch.randint(len(flat), (count,), generator=generator).tolist()
        return torch.stack([flat[i] for i in picks])

    def state_dict(self) -> dict[str, Tensor]:
        state = {"capacity": torch.tensor(self.capacity), "bin_timesteps": self.bin_timesteps.clone()}
        for index, stored in enumerate(self._bins):
            if stored:
                state[f"bin.{index}"] = torch.stack(stored)
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if (
            not torch.equal(state["bin_timesteps"], self.bin_timesteps)
            or int(state["capacity"]) != self.capacity
        ):
            raise ValueError("error bank state has other bins or capacity than this bank")
        self._bins = [
            list(state[f"bin.{i}"].unbind(0)) if f"bin.{i}" in state else [] for i in range(self.num_bins)
        ]
