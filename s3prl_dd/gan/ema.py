"""An exponential moving average (EMA) of the generator's weights (``train.ema_decay``).

A GAN generator does not settle: the critic keeps moving its target, so consecutive generators
circle around a good one. The average of recent weights sits nearer its centre and usually
samples better than any single iterate (Yazıcı et al. 2019; Karras et al., StyleGAN). Training
keeps updating the live generator; the average is only evaluated, exported and sampled.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..utils import UserError
from .checkpoint import cpu_state


class GeneratorEMA:
    """``model``: a frozen copy of the generator in eval mode holding the average.

    After the t-th ``update`` (t = 0, 1, ...) each parameter is
    ``avg = d_t * avg + (1 - d_t) * live`` with ``d_t = min(decay, (1 + t) / (10 + t))``.
    """

    def __init__(self, generator: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise UserError(f"train.ema_decay={decay}: must be in (0, 1), or null for no EMA")
        self.decay, self.updates = float(decay), 0
        self.model = copy.deepcopy(generator).eval().requires_grad_(False)

    def current_decay(self) -> float:
        # Warm-up: the average starts at the random initial weights, and with decay 0.999 they
        # would still weigh e^-1 after 1000 updates, longer than a whole CPU run. The ramp lets
        # early averages follow the live weights and reaches `decay` once training has moved on.
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        d = self.current_decay()
        for avg, live in zip(self.model.parameters(), generator.parameters(), strict=True):
            avg.mul_(d).add_(live.detach(), alpha=1 - d)
        # Buffers are copied, not averaged: BatchNorm's running statistics are already moving
        # averages, and its batch counter is an integer.
        for avg, live in zip(self.model.buffers(), generator.buffers(), strict=True):
            avg.copy_(live)
        self.updates += 1

    def state_dict(self) -> dict:
        # The decay is the config's: a resume may change it, and the average carries on.
        return {"updates": self.updates, "model": cpu_state(self.model)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
