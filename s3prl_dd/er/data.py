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
            return _np(self.features)
        return np.stack([_np(f).mean(0, dtype=np.float64) for f in self.features]).astype(np.float32)

    @classmethod
    def coerce(cls, x) -> "ERData | None":
        """Accept an ERData, a (features, labels) pair, or None."""
        if x is None or isinstance(x, ERData):
            return x
        if isinstance(x, (tuple, list)) and len(x) == 2:
            return cls(x[0], _np(x[1]).astype(np.int64) if torch.is_tensor(x[1]) else x[1])
        raise UserError("ER data must be an ERData or a (features, labels) pair")

    @classmethod
    def from_store(cls, store, indices: Sequence[int], pooled: bool) -> "ERData":
        feats = store.pooled(indices) if pooled else [store.features(i) for i in indices]
        return cls(feats, store.labels(indices), store.ids(indices))


def _np(x) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


class Frames:
    """Lazily standardised frames: item i is a fresh (T, D) float32 tensor. Nothing is copied up
    front, so a memory-mapped store is read batch by batch instead of duplicated in RAM."""

    def __init__(self, feats: list, stats=None):
        self.feats = feats
        self.mean, self.std = (None, None) if stats is None else (
            torch.as_tensor(np.asarray(stats[0], np.float32)), torch.as_tensor(np.asarray(stats[1], np.float32)))

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> torch.Tensor:
        t = torch.tensor(_np(self.feats[i]))
        return t if self.mean is None else (t - self.mean) / self.std


def standardize(data: ERData, stats, pooled: bool):
    """(features, labels tensor) with ``(x - mean) / std`` applied when ``stats`` is given.
    Pooled features are one (N, D) tensor; frames a :class:`Frames` sequence of (T, D) tensors.
    Standardising time-means with frame statistics equals the time-mean of standardised frames
    (the map is affine), which keeps the pooled and frame paths the same model."""
    y = torch.from_numpy(data.labels)
    if pooled:
        x = torch.from_numpy(data.pooled())
        if stats is not None:
            x = (x - torch.as_tensor(np.asarray(stats[0], np.float32))) / torch.as_tensor(np.asarray(stats[1], np.float32))
        return x.float(), y
    if data.is_pooled:
        raise UserError("this ER model needs frame-level features, but the data is pooled")
    return Frames(data.features, stats), y
