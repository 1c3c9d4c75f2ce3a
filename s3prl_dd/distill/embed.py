"""Embedding networks for distribution matching and herding, all on STANDARDISED features.

- :class:`RandomEmbedder`: DM's randomly initialised network, redrawn every iteration. DM
  (Zhao & Bilen 2023) uses random ConvNets on images; for speech features we use the SUPERB
  ER model's shape instead: ``Linear(D, width)`` (nn.Linear's default init, drawn from a seeded
  generator) -> optional ReLU [-> Linear(width, width) -> ReLU]* -> mean over valid frames. On
  time-means (N, D) the mean-pool is the identity. Without ReLU the embedder is linear and
  matching its class means only matches the class means of the features (a random projection);
  the ReLU makes it a random-feature kernel mean (an MMD), which also constrains the spread.
- :class:`PoolEmbedder`: the teacher pool's first layers (the 256-d projectors of every
  checkpoint in Θ), concatenated and scaled by 1/sqrt(K), so a squared distance in this space is
  the average over the pool of the squared distances in each projector's space. Teachers take
  raw features, so standardised inputs are mapped back first.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _linear_init(fan_in: int, fan_out: int, gen: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear's default init (kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in)) for weight and
    bias), drawn from ``gen`` so an iteration's embedder depends only on its seed."""
    bound = 1.0 / math.sqrt(fan_in)
    w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
    b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
    return w.to(device), b.to(device)


class RandomEmbedder:
    """A frozen random network; ``__call__(x, lengths=None)`` embeds (N, D) time-means or
    (N, T, D) frames (mean over the first ``lengths[i]`` frames) into (N, width)."""

    def __init__(self, dim: int, gen: torch.Generator, width: int = 256, depth: int = 1,
                 relu: bool = True, device="cpu"):
        self.layers, fan_in = [], dim
        for _ in range(max(1, int(depth))):
            self.layers.append(_linear_init(fan_in, width, gen, device))
            fan_in = width
        self.relu = bool(relu)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        for w, b in self.layers:
            x = F.linear(x, w, b)
            if self.relu:
                x = F.relu(x)
        return x

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h = self.frames(x)
        if h.dim() == 2:
            return h
        if lengths is None:
            return h.mean(1)
        mask = (torch.arange(h.shape[1], device=h.device)[None] < lengths[:, None].to(h.device)).to(h.dtype)
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


class PoolEmbedder(nn.Module):
    """Concatenated projector outputs of a TeacherPool on standardised time-means (N, D)."""

    def __init__(self, pool, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        ws = [t.model.projector.weight.detach() for t in pool.teachers]
        bs = [t.model.projector.bias.detach() for t in pool.teachers]
        # raw = x * std + mean; teacher k: W_k ((raw - m_k) / s_k) + b_k  -> one affine map of x
        mk = torch.stack([t.mean for t in pool.teachers])
        sk = torch.stack([t.std for t in pool.teachers])
        dev = ws[0].device
        mean, std = torch.as_tensor(mean, device=dev), torch.as_tensor(std, device=dev)
        scale = std[None] / sk                      # (K, D)
        shift = (mean[None] - mk) / sk              # (K, D)
        W = torch.cat([w * s[None] for w, s in zip(ws, scale)])           # (K*256, D)
        b = torch.cat([w @ sh + bb for w, sh, bb in zip(ws, shift, bs)])  # (K*256,)
        k = len(ws)
        self.register_buffer("W", W / math.sqrt(k))
        self.register_buffer("b", b / math.sqrt(k))

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        if x.dim() == 3:  # affine: the projection of a time-mean is the time-mean of projections
            x = x.mean(1) if lengths is None else torch.stack([xi[:int(n)].mean(0) for xi, n in zip(x, lengths)])
        return F.linear(x, self.W.to(x.dtype), self.b.to(x.dtype))
