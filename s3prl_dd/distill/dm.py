"""``dm``: Distribution Matching (Zhao & Bilen, WACV 2023) without a GAN: the synthetic features
themselves are learned.

As DM: initialise from real data (a class-balanced random subset of the fold's train part, the
``random`` source with the same seed; ``init: herding`` starts from the herding subset), then, for
many iterations, draw a fresh randomly initialised embedding network and move the synthetic set
by SGD (lr 1, momentum 0.5, DM's values) to minimise
``Σ_c ||mean φ(real_c) - mean φ(syn_c)||²`` (real batch of up to ``real_batch`` items per class).
DM's random ConvNets are replaced by ``embed.RandomEmbedder`` (Linear(D, 256) -> ReLU -> mean
over frames), the SUPERB ER model's first layer with a nonlinearity so that more than the class
mean is matched. Everything happens in the store's standardised space and is de-standardised at
the end.

Two forms:
- pooled (default): the set is ppc time-mean vectors (N, D) per class, which is all the linear
  SUPERB model sees;
- ``frames: true``: the set is ppc (frames_T, D) sequences per class, initialised from the real
  subset's utterances cropped/tiled to frames_T frames; each iteration embeds ``real_frames``
  randomly drawn frames of every real utterance (an unbiased estimate of its frame-embedding
  mean) and all synthetic frames. For downstream models that use time (DeepModel)."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..gan.data import crop_or_tile
from ..gan.realdata import step_generator
from ..utils import UserError, pick_device
from .common import TrainingSet, features_nbytes, fold_train, merge
from .embed import RandomEmbedder
from .latent import real_batches, random_dm_loss
from .objectives import distribution_matching_loss
from .selection import select_real

# == downstream_configs/distill/dm.yaml (a test keeps them equal)
DM_DEFAULTS = {
    "iterations": 1000, "lr": 1.0, "momentum": 0.5, "embed_width": 256, "embed_depth": 1,
    "embed_relu": True, "real_batch": 256, "init": "random", "frames": False, "frames_T": 100,
    "real_frames": 32, "eval_embedders": 16, "log_every": 100, "device": None,
}


class _RealFrames:
    """The fold's train utterances, standardised, concatenated, for fast per-step frame draws."""

    def __init__(self, store, ft, device):
        arrays = [np.asarray(store.features(i), np.float32) for i in ft.indices]
        self.lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths
        x = torch.from_numpy(np.concatenate(arrays))
        self.x = ((x - torch.from_numpy(ft.mean)) / torch.from_numpy(ft.std)).to(device)
        self.y = ft.y

    def draw(self, rows: list[int], k: int, gen: torch.Generator) -> torch.Tensor:
        """(len(rows), k, D): k frames of each utterance, uniform with replacement."""
        r = torch.tensor(rows, dtype=torch.long)
        u = torch.rand(len(rows), k, generator=gen)
        idx = self.offsets[r, None] + (u * self.lengths[r, None]).long()
        return self.x[idx.to(self.x.device)]


@torch.no_grad()
def _eval_objective(syn, y, ft, cfg, seed, real_frames=None) -> float:
    """DM objective over ``eval_embedders`` FIXED embedders and all real train items (for
    frames: 64 fixed frame draws per utterance)."""
    vals = []
    for k in range(int(cfg["eval_embedders"])):
        emb = RandomEmbedder(syn.shape[-1], step_generator(int(seed), "dm-eval", k), cfg["embed_width"],
                             cfg["embed_depth"], cfg["embed_relu"], syn.device)
        if real_frames is None:
            vals.append(float(random_dm_loss(emb, real_batches(ft, ft.classes, 0, None), syn, y)))
        else:
            zr = emb(real_frames.draw(list(range(len(ft.indices))), 64, step_generator(int(seed), "dm-eval-frames", k)))
            vals.append(float(distribution_matching_loss(zr, real_frames.y.to(zr.device), emb(syn), y, ft.classes)))
    return float(np.mean(vals))


def dm(store, fold, ppc: int, seed: int, cfg: dict | None = None, progress: bool = False) -> TrainingSet:
    cfg = merge(DM_DEFAULTS, cfg)
    dev = pick_device(cfg["device"])
    if cfg["init"] not in ("random", "herding"):
        raise UserError(f"dm init must be 'random' or 'herding', got {cfg['init']!r}")
    ft = fold_train(store, fold)
    idx, sel_info = select_real(store, fold, ppc, seed, cfg["init"])
    labels = store.labels(idx)
    y = torch.from_numpy(labels).to(dev)
    ft.x = ft.x.to(dev)
    frames = bool(cfg["frames"])
    real_frames = None
    if frames:
        T = int(cfg["frames_T"])
        fit = step_generator(int(seed), "dm-crop", 0)
        s0 = torch.stack([crop_or_tile(torch.from_numpy(np.array(store.features(i), np.float32)), T, fit)
                          for i in idx])
        s0 = (s0 - torch.from_numpy(ft.mean)) / torch.from_numpy(ft.std)
        real_frames = _RealFrames(store, ft, dev)
    else:
        s0 = ft.standardize(store.pooled(idx))
    syn = s0.clone().to(dev).requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=float(cfg["lr"]), momentum=float(cfg["momentum"]))
    before = _eval_objective(syn.detach(), y, ft, cfg, seed, real_frames)
    history, t0 = [], time.perf_counter()
    for it in range(int(cfg["iterations"])):
        emb = RandomEmbedder(store.dim, step_generator(int(seed), "dm-embed", it), cfg["embed_width"],
                             cfg["embed_depth"], cfg["embed_relu"], dev)
        gen = step_generator(int(seed), "dm-real", it)
        if frames:
            real = {}
            for c in ft.classes:
                rows = ft.of_class(c)
                if len(rows) > int(cfg["real_batch"]):
                    rows = [rows[j] for j in torch.randperm(len(rows), generator=gen)[: int(cfg["real_batch"])].tolist()]
                real[c] = emb(real_frames.draw(rows, int(cfg["real_frames"]), gen))
            zr = torch.cat(list(real.values()))
            yr = torch.cat([torch.full((len(v),), int(c), dtype=torch.long, device=dev) for c, v in real.items()])
            loss = distribution_matching_loss(zr, yr, emb(syn), y, ft.classes)
        else:
            loss = random_dm_loss(emb, real_batches(ft, ft.classes, int(cfg["real_batch"]), gen), syn, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % int(cfg["log_every"]) == 0 or it == int(cfg["iterations"]) - 1:
            history.append({"it": it, "loss": float(loss.detach())})
            if progress:
                print(f"[dm] it {it} loss {float(loss.detach()):.4f}", flush=True)
    after = _eval_objective(syn.detach(), y, ft, cfg, seed, real_frames)
    raw = ft.destandardize(syn.detach())
    feats = [a.numpy() for a in raw] if frames else raw.numpy()
    names = ft.names
    ids = [f"dm-{names[int(c)]}-{k:05d}" for k, c in enumerate(labels)]
    info = {"seed": int(seed), "config": cfg, "init": sel_info, "objective_before": before,
            "objective_after": after, "history": history, "seconds": time.perf_counter() - t0,
            "shift_from_init": float((syn.detach().cpu() - s0).flatten(1).norm(dim=1).mean())}
    return TrainingSet("dm", feats, labels, ids, features_nbytes(feats), info)
