"""Fitting real utterances of any length to the GAN's fixed input (see ``models`` docstring)."""
from __future__ import annotations

from typing import Mapping

import torch

from s3prl_dd.utils import UserError


def crop_or_tile(x: torch.Tensor, T: int, generator: torch.Generator | None = None,
                 mode: str = "tile") -> torch.Tensor:
    """(L, D) -> (T, D): a random crop when L >= T, else the utterance repeated until T frames.

    Tiling (rather than zero padding) keeps the time mean, which is all the linear SUPERB ER
    model sees. ``mode="reflect"`` tiles x, flip(x), x, ... so the seams have no jump; unlike
    ``F.pad(mode="reflect")`` it works for any L >= 1.
    """
    L = x.shape[0]
    if L == 0:
        raise ValueError("crop_or_tile: empty utterance")
    if L >= T:
        start = int(torch.randint(0, L - T + 1, (1,), generator=generator, device=_dev(generator)))
        return x[start:start + T]
    if mode == "reflect":
        x = torch.cat([x, x.flip(0)])
    elif mode != "tile":
        raise UserError(f"crop_or_tile: mode '{mode}' is not 'tile' or 'reflect'")
    return x.repeat(-(-T // x.shape[0]), 1)[:T]


def fit_real(x: torch.Tensor, model_cfg: Mapping, generator: torch.Generator | None = None,
             mode: str = "tile") -> torch.Tensor:
    """One real utterance (L, D) as the discriminator of ``model_cfg`` expects it: (T, D) for
    the conv archs, the (1, D) time mean for ``gan_mlp``."""
    if model_cfg["arch"] == "gan_mlp":
        return x.mean(0, keepdim=True)
    return crop_or_tile(x, int(model_cfg["T"]), generator, mode)


def _dev(generator):
    return generator.device if generator is not None else "cpu"
