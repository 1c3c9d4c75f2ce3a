"""``-u synthetic -k generator.pt``: GAN samples for training batches, real features otherwise.

Real audio goes through the upstream the generator was distilled from (named in its export)
and is reduced to the same representation (one hidden state, or the featurizer's weighted sum),
so s3prl's Featurizer sees one layer of identical meaning either way. Requests (see
``requests.py``) are generated with the sampler's seeding, so the training set is a fixed
dataset of the configured budget, identical to ``s3prl-dd sample`` with the same seed."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence

from ..features.upstream import load_upstream, select
from ..gan.checkpoint import load_generator
from ..gan.data import crop_or_tile
from ..gan.realdata import step_generator
from ..gan.sampler import generate_class
from ..utils import UserError
from .requests import decode


class SyntheticUpstream(nn.Module):
    def __init__(self, ckpt: str, real_upstream: nn.Module | None = None):
        super().__init__()
        if not ckpt:
            raise UserError("-u synthetic needs the generator: -k path/to/generator.pt")
        self.generator = load_generator(ckpt)
        info = self.generator.info
        self.representation = info["representation"]
        self.real = real_upstream if real_upstream is not None else load_upstream(info["upstream"])
        self.downsample_rate = int(info.get("downsample_rate") or self.real.get_downsample_rates("hidden_states"))
        self._cache: dict[tuple[int, int], torch.Tensor] = {}
        self.generator.requires_grad_(False)

    def get_downsample_rates(self, key: str = None) -> int:
        return self.downsample_rate

    def _class_samples(self, label: int, n: int, seed: int) -> torch.Tensor:
        # Budgets nest (the sampler draws noise in fixed chunks), so one draw of the largest n
        # serves every smaller request of the same class and seed.
        cached = self._cache.get((label, seed))
        if cached is None or len(cached) < n:
            cached = generate_class(self.generator, label, n, seed)
            self._cache[(label, seed)] = cached
        return cached

    def _synthetic(self, req: dict) -> torch.Tensor:
        x = self._class_samples(req["label"], req["class_total"], req["seed"])[req["index"]]
        if req["length"] != x.shape[0]:
            x = crop_or_tile(x, req["length"], step_generator(req["seed"], "length", req["label"] * 1_000_003 + req["index"]))
        return x

    def _real(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        hidden = self.real(wavs)["hidden_states"]
        feats = select(list(hidden), self.representation)
        return list(feats)

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        requests = [decode(w) for w in wavs]
        out: list[torch.Tensor | None] = [None] * len(wavs)
        real_idx = [i for i, r in enumerate(requests) if r is None]
        if real_idx:
            for i, f in zip(real_idx, self._real([wavs[i] for i in real_idx])):
                out[i] = f
        device = wavs[0].device
        for i, r in enumerate(requests):
            if r is not None:
                out[i] = self._synthetic(r).to(device)
        padded = pad_sequence(out, batch_first=True)
        return {"hidden_states": [padded], "last_hidden_state": padded}


def synthetic(ckpt: str = None, model_config: str = None, refresh: bool = False, **kwargs) -> SyntheticUpstream:
    """s3prl hub entry: ``-u synthetic -k generator.pt``."""
    return SyntheticUpstream(ckpt)
