"""What the GAN trainer feeds on: real batches of one fold's TRAIN part, a counter-based random
stream (so a resumed run replays exactly), and the bridge from GAN space to the teachers' space.

Spaces. The GAN sees features standardised with the fold's train statistics (the store's
``stats(fold)``), so every dimension has unit scale whatever the upstream (GAN-MLP with
``train.standardize=means``: its utterance means' own train statistics). Everything that leaves
the GAN (teachers, quick evaluation, exported samples) is de-standardised back to raw upstream
features, because that is what a ``Teacher`` and a feature store hold.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from ..features.store import normalize_fold
from ..utils import UserError
from .data import fit_real

STANDARDIZE = ("frames", "means")  # train.standardize: whose train statistics give the GAN space its scale


def step_generator(seed: int, purpose: str, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator seeded by (seed, purpose, step, rank).

    Every random draw of a training step comes from such a generator instead of from a
    long-running RNG: a run resumed at step s then draws exactly what the uninterrupted run drew,
    with no RNG state to save, and the draws do not depend on the device (CPU generators are
    used on GPU too; noise is moved, not drawn, there)."""
    key = f"{seed}/{purpose}/{step}/{rank}".encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little"))


class ShardedStream:
    """Endless stream of train positions for one rank, addressable by element number.

    Epoch e is a permutation seeded by (seed, e), the same on every rank; rank r takes its
    every ``world``-th element, the permutation wrapped to a multiple of ``world`` as
    DistributedSampler pads it. Batches run across epoch boundaries, so every batch is full
    (BatchNorm in the generator and the GP's batch means want a constant batch size)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        if n < 1:
            raise UserError("the fold's train part is empty")
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.per_epoch = math.ceil(n / world)
        self._epoch, self._mine = None, None

    def _epoch_items(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            perm = torch.randperm(self.n, generator=step_generator(self.seed, "epoch", epoch))
            padded = perm.repeat(math.ceil(self.per_epoch * self.world / self.n))[: self.per_epoch * self.world]
            self._epoch, self._mine = epoch, padded[self.rank:: self.world]
        return self._mine

    def take(self, start: int, count: int) -> torch.Tensor:
        """Elements ``start .. start+count-1`` of this rank's stream."""
        out, k = [], start
        while k < start + count:
            epoch, offset = divmod(k, self.per_epoch)
            chunk = self._epoch_items(epoch)[offset: offset + (start + count - k)]
            out.append(chunk)
            k += len(chunk)
        return torch.cat(out)


class RealData:
    """One fold's TRAIN utterances (never dev or test) as standardised GAN inputs.

    Raw features are loaded once onto ``device``; a batch is fitted per utterance with
    ``gan.data.fit_real`` (random T-crop / tiling for the conv archs, redrawn every time; the
    time mean for GAN-MLP, computed once) and then standardised: standardising is per-dimension
    affine, so it commutes with cropping, tiling and time-averaging."""

    def __init__(self, store, fold, model_cfg: dict, device, mode: str = "tile", standardize: str = "frames"):
        self.fold = normalize_fold(fold) if store.folds else fold
        self.indices = list(store.split(fold, "train"))
        self.model_cfg, self.mode = dict(model_cfg), mode
        self.pooled = model_cfg["arch"] == "gan_mlp"
        if standardize not in STANDARDIZE or (standardize == "means" and not self.pooled):
            raise UserError(f"train.standardize={standardize!r}: frames, or means for gan_mlp (whose items are "
                            "utterance means)")
        mean, std = store.stats(fold)
        self.mean = torch.from_numpy(mean).to(device)
        self.std = torch.from_numpy(std).to(device)
        self.labels = torch.from_numpy(store.labels(self.indices)).to(device)
        raw = [torch.from_numpy(np.array(store.features(i), dtype=np.float32)) for i in self.indices]
        if self.pooled:
            fitted = torch.stack([fit_real(x, self.model_cfg) for x in raw]).to(device)
            if standardize == "means":
                # frame statistics give the means a spread set by how much of a layer's variance
                # lies between utterances (8 % at GE2E layer 1, 41 % at layer 2: benchmarks/
                # layer_stats.py); their own statistics give them unit scale, as frames have
                flat = fitted.reshape(len(fitted), -1)
                self.mean, self.std = flat.mean(0), flat.std(0).clamp_min(1e-5)
            self.items = self.standardize(fitted)
        else:
            self.items = [x.to(device) for x in raw]

    def __len__(self) -> int:
        return len(self.indices)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels.cpu(), minlength=num_classes).tolist()

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def destandardize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)

    def crop_time_means(self, crops: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(time means, labels) of ``crops`` random standardised fits per train utterance (GAN-MLP:
        its one mean), for L_MM's train-split targets (``loss.mm_targets: train``). Seeded apart
        from the training stream, so a resumed run gets the same."""
        if self.pooled:
            return self.items.reshape(len(self), -1), self.labels
        gen = step_generator(seed, "mm_targets", 0)
        means = torch.stack([self.standardize(fit_real(x, self.model_cfg, gen, self.mode)).mean(0)
                             for x in self.items for _ in range(crops)])
        return means, self.labels.repeat_interleave(crops)

    def batch(self, positions: torch.Tensor, generator: torch.Generator | None = None):
        """(x (B, T, D) standardised, y (B,)) for positions into this fold's train list."""
        if self.pooled:
            idx = positions.to(self.items.device)
            return self.items[idx], self.labels[idx]
        x = torch.stack([fit_real(self.items[p], self.model_cfg, generator, self.mode) for p in positions.tolist()])
        return self.standardize(x), self.labels[positions.to(self.labels.device)]


def teacher_logits(teacher, x: torch.Tensor, data: RealData) -> torch.Tensor:
    """Logits of a pool ``Teacher`` for a GAN-space batch (B, T, D).

    A Teacher takes RAW store features and standardises them with the statistics its ER model
    was trained with (those of its pool, which need not be the GAN's), so GAN-space inputs are
    de-standardised first. The linear SUPERB model only sees the time mean, so it gets that;
    other teachers get the frames, all of full length T (crops/tiles have no padding)."""
    raw = data.destandardize(x)
    if teacher.model.supports_pooled:
        return teacher.forward_pooled(raw.mean(1))
    if raw.shape[1] < 2:
        raise UserError("a frame-level teacher (e.g. DeepModel) cannot score GAN-MLP's single "
                        "mean vectors; build the pool with the linear UtteranceLevel model")
    lengths = torch.full((raw.shape[0],), raw.shape[1], dtype=torch.long, device=raw.device)
    return teacher(raw, lengths)
