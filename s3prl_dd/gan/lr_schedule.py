"""Learning-rate schedules of the GAN trainer (``optim.lr_schedule``, ``optim.warmup_steps``,
``optim.lr_min_ratio``), applied alike to the generator's and the critic's optimizer.

The lr of a step is the configured lr times a factor that is a pure function of the number of
generator steps taken, so the checkpoint's step is the whole scheduler state: a resumed run sets
the same lr at the same step, and needs no scheduler object of its own to restore.
"""
from __future__ import annotations

import math

import torch

from ..utils import UserError

SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total: int, schedule: str = "constant", warmup: int = 0,
              min_ratio: float = 0.1) -> float:
    """Multiplier of the configured lr for the generator step that follows ``step`` steps.

    Warm-up rises linearly to 1 over the first ``warmup`` steps, starting at 1/warmup rather
    than 0 so that no step is spent without an update. ``cosine`` then falls from 1 to
    ``min_ratio``, reached when all ``total`` steps are taken."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class LRSchedule:
    """Sets every param group's lr to its configured lr times ``lr_factor``."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], total: int, schedule: str = "constant",
                 warmup: int = 0, min_ratio: float = 0.1):
        if schedule not in SCHEDULES:
            raise UserError(f"optim.lr_schedule={schedule!r}: one of {', '.join(SCHEDULES)}")
        if int(warmup) < 0 or not 0.0 <= float(min_ratio) <= 1.0:
            raise UserError(f"optim.warmup_steps={warmup} must be >= 0 and optim.lr_min_ratio={min_ratio} "
                            "in [0, 1]")
        self.optimizers, self.total, self.schedule = optimizers, int(total), schedule
        self.warmup, self.min_ratio = int(warmup), float(min_ratio)
        # Taken before any checkpoint is loaded: a resumed optimizer's groups hold the scheduled
        # lr of its last step, not the configured one.
        self.base = [[group["lr"] for group in opt.param_groups] for opt in optimizers]

    @classmethod
    def from_config(cls, cfg: dict, optimizers: list[torch.optim.Optimizer]) -> "LRSchedule":
        # Over train.steps as configured now: a resume that trains longer stretches the decay.
        opt = cfg["optim"]
        return cls(optimizers, int(cfg["train"]["steps"]), opt["lr_schedule"], opt["warmup_steps"], opt["lr_min_ratio"])

    def set_step(self, step: int) -> None:
        """Set the lr of the generator step that follows ``step`` steps (and its critic steps)."""
        factor = lr_factor(step, self.total, self.schedule, self.warmup, self.min_ratio)
        for opt, base in zip(self.optimizers, self.base):
            for group, lr in zip(opt.param_groups, base):
                group["lr"] = lr * factor
