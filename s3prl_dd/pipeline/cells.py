"""The experiment grid: one cell = one downstream ER training on one training set.

A cell is a plain dict (fold, seed, source, arch, losses, ppc, balance, downstream); its result is
written to ``cells/<key>.json`` atomically, so a cell is complete iff that file exists. Workers
get paths, never open objects, so cells run in any process."""
from __future__ import annotations

import functools
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from ..er.data import ERData
from ..er.train import er_config, train_er
from ..features.store import FeatureStore
from ..gan.checkpoint import load_generator
from ..gan.sampler import budget, generate_class
from ..protocol import LABELS
from .config import DOWNSTREAMS, REAL_SOURCES, VARIANTS, for_downstream, gan_key, variants_for

GAN_SOURCES = {"gan", "gan_latent", "gan_herding"}


def cell_key(c: dict) -> str:
    gan = f"{c['arch']}-{c['variant']}-" if c["source"] in GAN_SOURCES else ""
    return f"fold{c['fold']}-seed{c['seed']}-{c['downstream']}-{c['source']}-{gan}ppc{c['ppc']}-{c['balance']}"


def enumerate_cells(cfg: dict) -> list[dict]:
    """Every cell of the grid, in an order that finishes whole folds first."""
    cells = []
    gans = [(a, v) for a in cfg["gan"]["archs"] for v in variants_for(cfg, a)]
    for fold, ds in itertools.product(cfg["folds"], cfg["downstreams"]):
        sub = for_downstream(cfg, ds)
        if fold not in sub["folds"]:
            continue
        budgets = [(p, b) for p in sub["budgets"] for b in sub["balance"]]
        if sub.get("table3"):
            budgets += [(p, b) for p in ("min", "full") for b in ("balanced", "imbalanced") if (p, b) not in budgets]
        for seed in sub["seeds"]:
            base = {"fold": fold, "seed": seed, "downstream": ds, "arch": None, "variant": None, "losses": []}
            for source in sub["sources"]:
                cells += _source_cells(base, source, budgets, gans, cfg)
    return cells


def _source_cells(base: dict, source: str, budgets: list, gans: list, cfg: dict) -> list[dict]:
    if source == "real":
        return [{**base, "source": "real", "ppc": "full", "balance": "imbalanced"}]
    out = []
    for ppc, bal in budgets:
        if ppc == "full" and source in REAL_SOURCES:
            continue  # all real data is the `real` cell; there is nothing to pick
        if (bal == "imbalanced" or ppc in ("min", "full")) and source not in ("random", "gan"):
            continue  # the distillation methods are defined per class (balanced)
        if source not in GAN_SOURCES:
            out.append({**base, "source": source, "ppc": ppc, "balance": bal})
            continue
        for arch, variant in gans:
            if source != "gan" and (variant != variants_for(cfg, arch)[-1]
                                    or arch not in (cfg["gan"]["distill_archs"] or [arch])):
                continue  # latent/herding selection on the most complete GAN of each arch only
            out.append({**base, "source": source, "arch": arch, "variant": variant,
                        "losses": VARIANTS[variant], "ppc": ppc, "balance": bal})
    return out


def class_counts(ppc, balance: str, real_counts: list[int]) -> dict[str, int]:
    """Per-class sizes of a cell's training set. ``min`` = C x the smallest real class (the
    paper's balanced real subset), ``full`` = the real train size; imbalanced follows the prior."""
    names = sorted(LABELS, key=LABELS.get)
    n_real = int(sum(real_counts))
    prior = [c / n_real for c in real_counts]
    if ppc == "full":
        total = n_real
    elif ppc == "min":
        total = len(names) * min(real_counts)
    else:
        total = len(names) * int(ppc)
    if balance == "balanced":
        return budget(LABELS, prior, ppc=total // len(names))
    return budget(LABELS, prior, total=total, balance="prior")


def _real_subset(store, train_idx, counts: dict, seed: int) -> list[int]:
    labels = store.labels(train_idx)
    rng = np.random.default_rng(seed)
    picked = []
    for name, n in counts.items():
        members = np.asarray(train_idx)[labels == LABELS[name]]
        picked += rng.choice(members, size=min(n, len(members)), replace=False).tolist()
    return sorted(picked)


def as_sequences(data: ERData, length: int) -> ERData:
    """Frame-level items for a model that uses time (DeepModel): an item that is one vector (a
    time mean: GAN-MLP, DM and latent sets) is repeated ``length`` frames, the real median, so
    its time mean is unchanged and the model meets an utterance of typical length, as at test
    time, rather than a single frame."""
    items = [row[None] for row in data.features] if data.is_pooled else list(data.features)
    return ERData([np.repeat(f, length, 0) if len(f) == 1 else f for f in items], data.labels)


def _gan_set(generator_path, counts: dict, seed: int, pooled: bool, length: int) -> ERData:
    g = load_generator(generator_path)
    feats, labels = [], []
    for name, n in counts.items():
        if n:
            x = generate_class(g, LABELS[name], n, seed)  # (n, T, D), raw scale
            feats.append(x.mean(1) if pooled else x)
            labels += [LABELS[name]] * n
    x, labels = torch.cat(feats).numpy(), np.asarray(labels)
    return ERData(x, labels) if pooled else as_sequences(ERData(list(x), labels), length)


def training_set(cell: dict, ctx: dict, store: FeatureStore, pooled: bool):
    fold, seed, source = f"fold{cell['fold']}", cell["seed"], cell["source"]
    train_idx = store.split(fold, "train")
    real_counts = np.bincount(store.labels(train_idx), minlength=len(LABELS)).tolist()
    if source == "real":
        return ERData.from_store(store, train_idx, pooled)
    if source == "random":
        idx = _real_subset(store, train_idx, class_counts(cell["ppc"], cell["balance"], real_counts), seed)
        return ERData.from_store(store, idx, pooled)
    gen_path = ctx["generators"].get(gan_key(cell["arch"], cell["variant"], cell["fold"])) if cell["arch"] else None
    length = int(np.median(store.lengths(train_idx)))
    if source == "gan":
        return _gan_set(gen_path, class_counts(cell["ppc"], cell["balance"], real_counts), seed, pooled, length)
    from ..distill import make_training_set  # herding, dm, gan_latent, gan_herding

    ts = make_training_set(source, store, fold, int(cell["ppc"]), seed, generator=gen_path,
                           pool=ctx["pools"].get(fold),
                           cfg=for_downstream(ctx["cfg"], cell["downstream"])["distill"].get(source))
    data = ts.to_erdata()
    return ERData(data.pooled(), data.labels) if pooled else as_sequences(data, length)


# A worker runs many cells on one store: open it (and pool its time-means) once per process.
_open_store = functools.lru_cache(maxsize=2)(FeatureStore.open)


def run_cell(cell: dict, ctx: dict) -> dict:
    """Train the downstream on the cell's set; dev selects, test scores (real data)."""
    torch.set_num_threads(1)
    store = _open_store(ctx["store"])
    fold = f"fold{cell['fold']}"
    er = ctx["cfg"]["er" if cell["downstream"] == "linear" else "deep_er"]
    cfg = er_config(profile=er.get("profile"), overrides=er.get("overrides"))
    cfg["modelrc"]["select"] = DOWNSTREAMS[cell["downstream"]]
    pooled = cell["downstream"] == "linear"
    t0 = time.perf_counter()
    train = training_set(cell, ctx, store, pooled)
    build_seconds = time.perf_counter() - t0
    dev = ERData.from_store(store, store.split(fold, "dev"), pooled)
    test = ERData.from_store(store, store.split(fold, "test"), pooled)
    # each cell is a run of its own: tensorboard, metrics.jsonl, config.yaml, best er-<step>.pt
    out_dir = Path(ctx["run"]) / "cells" / cell_key(cell) if ctx.get("run") else None
    r = train_er(train, dev, test, cfg, stats=store.stats(fold), seed=int(cell["seed"]), device=ctx["device"],
                 n_classes=len(LABELS), out_dir=out_dir)
    return {**cell, "n_train": len(train), "test_uar": 100 * r["test_uar"], "test_acc": 100 * r["test_acc"],
            "dev_uar": 100 * r["dev_uar"] if r["dev_uar"] is not None else None,
            # wall time up to the dev-selected step (the paper's "time to train"), and in total
            "train_seconds": r["train_seconds"] * r["best_step"] / r["steps"], "train_seconds_total": r["train_seconds"],
            "best_step": r["best_step"], "set_seconds": build_seconds,
            "predictions": np.asarray(r["predictions"]).tolist(), "test_labels": np.asarray(r["test_labels"]).tolist()}
