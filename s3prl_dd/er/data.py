"""In-memory ER data: what ``train_er`` consumes, from a feature store or from a generator.

A split is either frames (a list of (T, D) arrays, for any model) or pooled time-means (an
(N, D) array, enough for the linear SUPERB model). Synthetic data from the GAN plugs in as either,
in the same (raw, unstandardised) space as the real store, so one set of statistics serves both."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..utils import UserError


@dataclass
class ERData:
    features: list | np.ndarray  # list of (T, D) arrays/tensors, or (N, D) pooled
    labels: np.ndarray
    ids: list[str] | None = None

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64).ravel()
        if len(self.features) != len(self.labels):
            raise UserError(f"{len(self.features)} feature items but {len(self.labels)} labels")
        if len(self.labels) == 0:
            raise UserError("an ER split is empty")
        if self.ids is not None and len(self.ids) != len(self.labels):
            raise UserError("ids and labels differ in length")

    @property
    def is_pooled(self) -> bool:
        return not isinstance(self.features, (list, tuple))

    @property
    def dim(self) -> int:
        return int(self.features.shape[1] if self.is_pooled else self.features[0].shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    def pooled(self) -> np.ndarray:
        if self.is_pooled:
            return np.asarray(self.features, dtype=np.float32)
        return np.stack([np.asarray(f, dtype=np.float32).mean(0, dtype=np.float64)
                         for f in self.features]).astype(np.float32)

    @classmethod
    def from_store(cls, store, indices: Sequence[int], pooled: bool) -> "ERData":
        feats = store.pooled(indices) if pooled else [store.features(i) for i in indices]
        return cls(feats, store.labels(indices), store.ids(indices))


def standardize(data: ERData, stats, pooled: bool) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
    """(features as tensors, labels) with ``(x - mean) / std`` applied when ``stats`` is given.
    Pooled output is one (N, D) tensor; frames stay a list of (T, D) tensors. Standardising
    time-means with frame statistics equals the time-mean of standardised frames (it is affine)."""
    if pooled:
        x = torch.from_numpy(data.pooled())
        if stats is not None:
            x = (x - torch.as_tensor(stats[0])) / torch.as_tensor(stats[1])
        return x.float(), torch.from_numpy(data.labels)
    if data.is_pooled:
        raise UserError("this ER model needs frame-level features, but the data is pooled")
    mean, std = (None, None) if stats is None else (torch.as_tensor(stats[0]), torch.as_tensor(stats[1]))
    out = []
    for f in data.features:
        t = torch.as_tensor(np.array(f, dtype=np.float32, copy=True)) if not torch.is_tensor(f) else f.float()
        out.append(t if mean is None else (t - mean) / std)
    return out, torch.from_numpy(data.labels)
