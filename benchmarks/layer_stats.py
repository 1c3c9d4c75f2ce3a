"""What differs between two upstream layers as data for a generator: descriptive statistics of
one fold's TRAIN split in each store (dev and test are not read).

    python benchmarks/layer_stats.py runs/R/store-layer1 runs/R/store-layer2 --folds 1,2,3,4,5 \\
        --out benchmarks/results/layer_stats.json

Every figure is on features standardised with the fold's train statistics, as the GANs see them:
- ``between_share``: the share of frame variance that lies between utterance means. The linear
  SUPERB model reads the time mean only, so this is the part of what a frame-level generator
  must get right that the linear model scores; the rest is within-utterance motion it must
  also model (or the critic tells it apart).
- ``lag1_autocorr``: mean over dimensions of the frame-to-frame correlation of the frames'
  deviations from their utterance's mean: how smooth the within-utterance motion is that the
  1-D GAN-ATT generates.
- ``class_ratio``: between-class over within-class scatter (traces) of the utterance means: how
  far apart the classes are that the class head and L_SML must reproduce.
- ``participation_ratio``: (sum λ)² / sum λ² of the frame covariance's eigenvalues: how many
  dimensions the frames effectively spread over; ``means_participation_ratio``: the same for the
  utterance means (the linear model's input, fitted from a few points per class at small budgets).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.features.store import FeatureStore  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json  # noqa: E402


def scatter_ratio(x: np.ndarray, y: np.ndarray) -> float:
    centre = x.mean(0)
    between = sum((y == c).sum() * np.sum((x[y == c].mean(0) - centre) ** 2) for c in np.unique(y))
    within = sum(np.sum((x[y == c] - x[y == c].mean(0)) ** 2) for c in np.unique(y))
    return float(between / within)


def participation_ratio(x: np.ndarray) -> float:
    eig = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0, None)
    return float(eig.sum() ** 2 / np.sum(eig ** 2))


def layer_stats(store: FeatureStore, fold: str) -> dict:
    idx = store.split(fold, "train")
    mean, std = store.stats(fold)
    utts = [(store.features(i) - mean) / std for i in idx]
    frames = np.concatenate(utts)
    means = np.stack([u.mean(0) for u in utts])
    total = frames.var(0).sum()
    # on deviations from each utterance's mean: the between-utterance part would read as smoothness
    motion = [u - u.mean(0) for u in utts if len(u) > 1]
    a = np.concatenate([m[:-1] for m in motion])
    b = np.concatenate([m[1:] for m in motion])
    lag1 = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return {"store": str(store.path), "representation": store.representation, "dim": store.dim,
            "utterances": len(idx), "mean_frames": float(np.mean([len(u) for u in utts])),
            "between_share": float(means.var(0).sum() / total),
            "lag1_autocorr": float(np.nanmean(lag1)),
            "class_ratio": scatter_ratio(means, store.labels(idx)),
            "participation_ratio": participation_ratio(frames),
            "means_participation_ratio": participation_ratio(means)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stores", nargs="+", type=Path, help="feature stores of one corpus (e.g. one per layer)")
    p.add_argument("--folds", default="1", help="comma-separated fold numbers")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    stores = [FeatureStore.open(path) for path in a.stores]
    out = {}
    for fold in (f"fold{int(f)}" for f in a.folds.split(",")):
        rows = []
        for store in stores:
            if fold not in store.fold_names():
                raise UserError(f"{store.path}: no {fold} (folds: {', '.join(store.fold_names())})")
            rows.append(layer_stats(store, fold))
        if len({r["utterances"] for r in rows}) > 1:
            raise UserError(f"the stores hold different {fold} train splits: not one corpus")
        for r in rows:
            print(f"{fold} {r['representation']}: between-utterance share {r['between_share']:.3f}, lag-1 autocorr "
                  f"{r['lag1_autocorr']:.3f}, class scatter ratio {r['class_ratio']:.3f}, participation ratio "
                  f"{r['participation_ratio']:.1f} (frames) / {r['means_participation_ratio']:.1f} (means) "
                  f"(dim {r['dim']}, {r['utterances']} train utterances)")
        out[fold] = rows
    if a.out:
        atomic_write_json({"split": "train", "folds": out}, a.out)
    return 0


if __name__ == "__main__":
    run_main(main)
