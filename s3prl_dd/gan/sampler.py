"""Sample a synthetic dataset from a distilled generator into a feature store.

The store has the same format as one of real features (``features.store.write_store``) and
holds RAW upstream-scale features (the generator's standardisation undone), so every later
stage (ER training, s3prl's expert, the report) reads it as it reads real features.

Budgets: ``ppc`` per class (balanced), ``total`` split by the real train prior or evenly, or
explicit ``counts``. Noise for class c comes from its own generator seeded by (seed, c) and is
drawn in fixed chunks, so a smaller budget is a prefix of a larger one with the same seed
(the 5-ppc set is inside the 20-ppc set), and batching does not change any sample.

``truncation`` ψ draws the noise as ψ·ε, so a truncated set is the plain set's noise scaled,
sample for sample. ``standing_stats`` N first recomputes the generator's BatchNorm statistics for
its exported weights from N batches of its own samples (see ``standing_stats``).

``s3prl-dd sample --generator G.pt --out STORE [--ppc 20 | --total 400 --balance prior |
--counts neu=10,hap=5,...] --seed 0 [--length T] [--truncation 0.5] [--standing-stats 200]``
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..features.store import make_meta, write_store
from ..utils import UserError
from .checkpoint import DistilledGenerator, load_generator
from .data import crop_or_tile
from .realdata import step_generator

CHUNK = 64  # noise rows per draw; fixed so that budgets nest (see module docstring)


def check_truncation(psi) -> float:
    """ψ as a float in (0, 1]: 0 would give one sample per class, > 1 widens past training."""
    try:
        psi = float(psi)
    except (TypeError, ValueError):
        raise UserError(f"truncation must be a number in (0, 1], got {psi!r}") from None
    if not 0 < psi <= 1:
        raise UserError(f"truncation must be in (0, 1], got {psi}")
    return psi


def check_standing_stats(batches) -> int:
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 0:
        raise UserError(f"standing_stats must be a whole number of batches >= 0 (0 = off), got {batches!r}")
    return batches


@torch.no_grad()
def standing_stats(g: DistilledGenerator, batches: int, batch_size: int = 32, seed: int = 0) -> DistilledGenerator:
    """Recompute ``g``'s BatchNorm statistics for its own weights, in place (BigGAN's "standing
    statistics"). Why: the exported generator is the EMA of the weights, but its running
    statistics are the live generator's, gathered under other weights. Labels follow the real
    train prior, as in training batches; a fixed seed makes the result one generator, whatever
    the seed its samples are later drawn with. A generator without BatchNorm is unchanged."""
    norms = [m for m in g.generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or batches == 0:
        return g
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches below
    rng = torch.Generator().manual_seed(int(seed))
    g.generator.train()
    for _ in range(batches):
        y = torch.multinomial(torch.tensor(g.prior), batch_size, replacement=True, generator=rng)
        g.generator.generate(y.to(g.mean.device), torch.randn(batch_size, g.noise_dim, generator=rng).to(g.mean.device))
    g.generator.eval()
    return g


def parse_counts(text: str, labels: dict) -> dict[str, int]:
    """``"neu=10,hap=5"`` -> {"neu": 10, "hap": 5} (classes left out get 0)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in labels:
            raise UserError(f"--counts: '{part}' is not <label>=<n> with a label in {list(labels)}")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise UserError(f"--counts: '{value}' is not an integer") from None
    return out


def budget(labels: dict, prior, ppc: int | None = None, total: int | None = None,
           balance: str = "prior", counts: dict | None = None) -> dict[str, int]:
    """Samples per class name, in label-id order. Exactly one of ppc, total, counts."""
    names = sorted(labels, key=labels.get)
    if sum(x is not None for x in (ppc, total, counts)) != 1:
        raise UserError("give exactly one of --ppc, --total or --counts")
    if counts is not None:
        out = {n: int(counts.get(n, 0)) for n in names}
    elif ppc is not None:
        out = {n: int(ppc) for n in names}
    else:
        if balance == "balanced":
            weights = np.ones(len(names))
        elif balance == "prior":
            weights = np.asarray(prior, dtype=np.float64)
            if len(weights) != len(names) or weights.sum() <= 0:
                raise UserError("the generator stores no usable class prior; use --balance balanced")
        else:
            raise UserError(f"--balance must be 'prior' or 'balanced', got {balance!r}")
        # Largest remainder: the counts sum to `total` exactly and each is within 1 of its share.
        share = weights / weights.sum() * int(total)
        base = np.floor(share).astype(int)
        for i in np.argsort(-(share - base), kind="stable")[: int(total) - base.sum()]:
            base[i] += 1
        out = dict(zip(names, base.tolist()))
    if any(v < 0 for v in out.values()) or sum(out.values()) == 0:
        raise UserError(f"the sampling budget {out} is empty or negative")
    return out


def class_noise(noise_dim: int, label_id: int, n: int, seed: int, purpose: str = "sample",
                truncation: float = 1.0) -> torch.Tensor:
    """(n, noise_dim) noise of class ``label_id``: a stream seeded by (seed, purpose, class), drawn
    in fixed CHUNK rows, so the first n rows of a larger draw are the n-row draw; times ψ."""
    gen = step_generator(int(seed), purpose, int(label_id))
    rows = [torch.randn(CHUNK, noise_dim, generator=gen) for _ in range(math.ceil(n / CHUNK))]
    return truncation * torch.cat(rows)[:n] if rows else torch.empty(0, noise_dim)


@torch.no_grad()
def generate_class(g: DistilledGenerator, label_id: int, n: int, seed: int, batch_size: int = 256,
                   truncation: float = 1.0) -> torch.Tensor:
    """``n`` raw-scale samples (n, T, D) of one class, on CPU."""
    noise = class_noise(g.noise_dim, label_id, n, seed, truncation=truncation)
    out = []
    for s in range(0, n, batch_size):
        e = noise[s: s + batch_size].to(g.mean.device)
        y = torch.full((len(e),), label_id, dtype=torch.long, device=e.device)
        out.append(g(y, e).float().cpu())
    return torch.cat(out) if out else torch.empty(0, g.T, g.D)


def sample_items(g: DistilledGenerator, counts: dict[str, int], seed: int, length: int | None = None,
                 truncation: float = 1.0):
    """Store items {"id", "label", "features"} for ``counts``; ``length`` crops (seeded) or tiles
    the generator's T frames to that many (e.g. GAN-MLP's single mean vector to a sequence)."""
    for name, n in counts.items():
        if n == 0:
            continue
        x = generate_class(g, g.labels[name], n, seed, truncation=truncation)
        fit = step_generator(seed, "length", g.labels[name])
        for k in range(n):
            f = x[k] if length in (None, x.shape[1]) else crop_or_tile(x[k], int(length), fit)
            yield {"id": f"gan-{name}-{k:06d}", "label": name, "features": f.numpy()}


def sample_to_store(generator_path, out, ppc=None, total=None, balance="prior", counts=None,
                    seed: int = 0, length: int | None = None, device="cpu", truncation: float = 1.0,
                    standing: int = 0):
    """Write a synthetic feature store at ``out``; returns the opened FeatureStore."""
    truncation, standing = check_truncation(truncation), check_standing_stats(standing)
    g = standing_stats(load_generator(generator_path, device), standing)
    if isinstance(counts, str):
        counts = parse_counts(counts, g.labels)
    plan = budget(g.labels, g.prior, ppc, total, balance, counts)
    if length is not None and int(length) < 1:
        raise UserError(f"--length must be >= 1, got {length}")
    info = g.info
    meta = make_meta(info.get("upstream") or "unknown", info["representation"], g.D,
                     downsample_rate=info.get("downsample_rate"), labels=g.labels,
                     source="gan", generator=str(Path(generator_path).resolve()), seed=int(seed),
                     counts=plan, fold=info.get("fold"), length=length or g.T, truncation=truncation,
                     standing_stats=standing)
    return write_store(out, sample_items(g, plan, int(seed), length, truncation), meta)
