"""GAN sources that choose noise, with the generator frozen: ``gan`` and ``gan_herding``.

- ``gan``: i.i.d. samples, ppc per class, with the sampler's seed convention (noise of class c
  from the stream seeded by (seed, "sample", c)): the same points as ``s3prl-dd sample --ppc``.
  ``truncation`` ψ scales that noise (e = ψ·ε; BigGAN's truncation trick in its simplest form):
  ψ < 1 trades the samples' spread for typicality, ψ = 1 is plain i.i.d. sampling.
  ``standing_stats`` N > 0 samples from the generator with BatchNorm statistics recomputed for its
  exported weights (``gan.sampler.standing_stats``), once per generator file and process.
- ``gan_herding``: draw ``candidates_per_point * ppc`` samples of each class from that same
  stream (so the ``gan`` set is the candidates' first ppc rows), embed their time-means, and keep
  the ppc whose running mean tracks the REAL class mean of the fold's train part best (greedy
  herding towards an external target). Embedding spaces (``space``):
  ``standardized`` = the store's standardised time-means; ``pool`` = the teacher pool's
  projector embeddings averaged over the pool (``embed.PoolEmbedder``; needs ``pool``).
The artifact is the generator (+ the chosen latents for gan_herding)."""
from __future__ import annotations

import copy
import functools
import os

import numpy as np
import torch

from ..gan.checkpoint import load_generator
from ..gan.sampler import check_standing_stats, check_truncation, class_noise, standing_stats
from ..utils import UserError, pick_device
from .common import (TrainingSet, check_generator, fold_train, generate_from_latents,
                     generator_bytes, merge, resolve_generator, resolve_pool)
from .embed import PoolEmbedder
from .objectives import herding_select
from .selection import per_class_counts

# downstream_configs/distill/herding.yaml, sections gan and gan_herding (a test keeps them equal)
GAN_IID_DEFAULTS = {"truncation": 1.0, "standing_stats": 0}
GAN_HERDING_DEFAULTS = {"candidates_per_point": 50, "space": "standardized", "batch_size": 256,
                        "device": None}


def _ids(source, names, labels):
    count: dict = {}
    out = []
    for y in labels:
        k = count.get(int(y), 0)
        count[int(y)] = k + 1
        out.append(f"{source}-{names[int(y)]}-{k:05d}")
    return out


@functools.lru_cache(maxsize=4)
def _standing_generator(path: str, stamp: tuple, batches: int, device: str):
    # every cell of a grid samples the same few generators: recompute their statistics once
    return standing_stats(load_generator(path, device), batches)


def _iid_generator(generator, device, batches: int):
    """(generator, path) as ``resolve_generator``, with standing statistics when batches > 0."""
    if batches == 0:
        return resolve_generator(generator, device)
    if isinstance(generator, (str, os.PathLike)):
        st = os.stat(generator)
        return _standing_generator(str(generator), (st.st_mtime_ns, st.st_size), batches, str(device)), str(generator)
    g, _ = resolve_generator(generator, device)
    return standing_stats(copy.deepcopy(g), batches), None   # the caller's generator is left as it was


def gan_iid(store, fold, ppc: int | None, seed: int, generator, device=None, counts: dict | None = None,
            cfg: dict | None = None) -> TrainingSet:
    """``ppc`` samples of every class, or ``counts`` (class name -> n)."""
    cfg = merge(GAN_IID_DEFAULTS, cfg)
    psi, standing = check_truncation(cfg["truncation"]), check_standing_stats(cfg["standing_stats"])
    g, gpath = _iid_generator(generator, pick_device(device), standing)
    check_generator(g, store, fold)
    ft = fold_train(store, fold)
    want = per_class_counts({c: ft.names[c] for c in ft.classes}, ppc, counts)
    labels = np.concatenate([np.full(want[c], c, np.int64) for c in ft.classes])
    lat = torch.cat([class_noise(g.noise_dim, c, want[c], seed, truncation=psi) for c in ft.classes])
    feats = generate_from_latents(g, labels, lat)
    return TrainingSet("gan", feats, labels, _ids("gan", ft.names, labels), generator_bytes(g, gpath),
                       {"seed": int(seed), "T": int(g.T), "truncation": psi,
                        **({"standing_stats": standing} if standing else {})}, lat.numpy(), gpath)


@torch.no_grad()
def _candidate_means(g, c: int, e: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Raw time-means (m, D) of the generator's samples for noise rows e, batch by batch."""
    out, dev = [], g.mean.device
    for s in range(0, len(e), batch_size):
        b = e[s: s + batch_size].to(dev)
        y = torch.full((len(b),), int(c), dtype=torch.long, device=dev)
        out.append(g(y, b).float().mean(1).cpu())
    return torch.cat(out)


def gan_herding(store, fold, ppc: int, seed: int, generator, pool=None, cfg: dict | None = None) -> TrainingSet:
    cfg = merge(GAN_HERDING_DEFAULTS, cfg)
    dev = pick_device(cfg["device"])
    g, gpath = resolve_generator(generator, dev)
    check_generator(g, store, fold)
    ft = fold_train(store, fold)
    if cfg["space"] == "pool":
        pool = resolve_pool(pool, store, fold, dev)
        if pool is None:
            raise UserError("gan_herding with space=pool needs a teacher pool (--pool)")
        emb = PoolEmbedder(pool, torch.from_numpy(ft.mean), torch.from_numpy(ft.std)).cpu()
    elif cfg["space"] == "standardized":
        emb = None
    else:
        raise UserError(f"gan_herding space must be 'standardized' or 'pool', got {cfg['space']!r}")
    m = int(cfg["candidates_per_point"]) * int(ppc)
    labels, lats, dist = [], [], {}
    for c in ft.classes:
        e = class_noise(g.noise_dim, c, m, seed)
        xs = ft.standardize(_candidate_means(g, c, e, int(cfg["batch_size"])).numpy())
        real = ft.x[ft.of_class(c)]
        with torch.no_grad():
            zs, zr = (xs, real) if emb is None else (emb(xs), emb(real))
        target = zr.mean(0).numpy()
        pick = herding_select(zs.numpy(), ppc, target)
        gap = lambda rows: float(np.square(zs.numpy()[rows].mean(0) - target).sum())
        dist[ft.names[c]] = {"herded": gap(pick), "iid": gap(list(range(ppc)))}
        labels += [c] * len(pick)
        lats.append(e[pick])
    labels = np.asarray(labels, np.int64)
    lat = torch.cat(lats)
    feats = generate_from_latents(g, labels, lat)
    return TrainingSet("gan_herding", feats, labels, _ids("gan_herding", ft.names, labels),
                       generator_bytes(g, gpath) + 4 * lat.numel(),
                       {"seed": int(seed), "config": cfg, "candidates": m, "sq_dist_to_real_mean": dist},
                       lat.numpy(), gpath)
