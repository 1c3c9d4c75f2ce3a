"""The experiment grid: one cell = one downstream ER training on one training set.

A cell is a plain dict (fold, seed, source, arch, losses, ppc, balance, downstream); its result is
written to ``cells/<key>.json`` atomically, so a cell is complete iff that file exists. Workers
get paths, never open objects, so cells run in any process."""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..er.data import ERData
from ..er.train import er_config, train_er
from ..features.store import FeatureStore
from ..gan.sampler import budget
from ..protocol import LABELS
from .config import DOWNSTREAMS, REAL_SOURCES, VARIANTS, for_downstream, gan_key, gan_seed_for, variants_for
from .layers import fold_layer

GAN_SOURCES = {"gan", "gan_latent", "gan_herding"}


def cell_key(c: dict) -> str:
    gan = f"{c['arch']}-{c['variant']}-g{c['gan_seed']}-" if c["source"] in GAN_SOURCES else ""
    return f"fold{c['fold']}-seed{c['seed']}-{c['downstream']}-{c['source']}-{gan}ppc{c['ppc']}-{c['balance']}"


def cell_recipe(cell: dict, cfg: dict) -> str:
    """Fingerprint of everything a cell's result depends on beyond its key: the upstream, the ER
    recipe of its downstream, its source's distillation options, its GAN's config. A rerun
    recomputes a cell whose recipe changed (a protocol change) and keeps every other one."""
    ds = cell["downstream"]
    parts = {"upstream": cfg["upstream"], "layer": fold_layer(cfg, cell["fold"]), "er": cfg["er" if ds == "linear" else "deep_er"],
             "distill": for_downstream(cfg, ds)["distill"].get(cell["source"])}
    if cell["arch"]:
        parts["gan"] = [cfg["gan"]["configs"][cell["arch"]], cfg["gan"]["overrides"].get(cell["arch"])]
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def is_done(cell: dict, cfg: dict, cell_dir: Path) -> bool:
    """The cell's record exists and was made with the current recipe."""
    path = Path(cell_dir) / f"{cell_key(cell)}.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("recipe") == cell_recipe(cell, cfg)
    except (OSError, ValueError):
        return False


def enumerate_cells(cfg: dict) -> list[dict]:
    """Every cell of the grid, in an order that finishes whole folds first."""
    cells = []
    for fold, ds in itertools.product(cfg["folds"], cfg["downstreams"]):
        sub = for_downstream(cfg, ds)
        if fold not in sub["folds"]:
            continue
        gans = [(a, v) for a in sub["gan"]["archs"] for v in variants_for(cfg, a)]
        budgets = [(p, b) for p in sub["budgets"] for b in sub["balance"]]
        if sub.get("table3"):
            budgets += [(p, b) for p in ("min", "full") for b in ("balanced", "imbalanced") if (p, b) not in budgets]
        for seed in sub["seeds"]:
            base = {"fold": fold, "seed": seed, "downstream": ds, "arch": None, "variant": None, "losses": [],
                    "gan_seed": gan_seed_for(cfg, seed, sub["seeds"])}
            for source in sub["sources"]:
                cells += _source_cells(base, source, budgets, gans, cfg)
    return cells


def _source_cells(base: dict, source: str, budgets: list, gans: list, cfg: dict) -> list[dict]:
    if source == "real":
        return [{**base, "source": "real", "ppc": "full", "balance": "imbalanced", "gan_seed": None}]
    out = []
    for ppc, bal in budgets:
        if ppc == "full" and source in REAL_SOURCES:
            continue  # all real data is the `real` cell; there is nothing to pick
        if (bal == "imbalanced" or ppc in ("min", "full")) and source not in ("random", "gan"):
            continue  # the distillation methods are defined per class (balanced)
        if source not in GAN_SOURCES:
            out.append({**base, "source": source, "ppc": ppc, "balance": bal, "gan_seed": None})
            continue
        for arch, variant in gans:
            if source != "gan" and (variant != variants_for(cfg, arch)[-1]
                                    or arch not in (cfg["gan"]["distill_archs"] or [arch])):
                continue  # latent/herding selection on the most complete GAN of each arch only
            out.append({**base, "source": source, "arch": arch, "variant": variant, "gan_seed": base["gan_seed"],
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


def as_sequences(data: ERData, length: int) -> ERData:
    """Frame-level items for a model that uses time (DeepModel): an item that is one vector (a
    time mean: GAN-MLP, DM and latent sets) is repeated ``length`` frames, the real median, so
    its time mean is unchanged and the model meets an utterance of typical length, as at test
    time, rather than a single frame."""
    items = [row[None] for row in data.features] if data.is_pooled else list(data.features)
    return ERData([np.repeat(f, length, 0) if len(f) == 1 else f for f in items], data.labels)


def training_set(cell: dict, ctx: dict, store: FeatureStore, pooled: bool) -> ERData:
    """The cell's training set, built by ``s3prl_dd.distill`` (the pipeline only orchestrates):
    random/herding subsets, DM and latent starts from ``select_real`` with the cell's seed, GAN
    sets from the cell's GAN seed's generator, per-class counts for prior-following budgets."""
    from ..distill import make_training_set

    fold, seed, source = f"fold{cell['fold']}", cell["seed"], cell["source"]
    train_idx = store.split(fold, "train")
    if source == "real":
        return ERData.from_store(store, train_idx, pooled)
    gen_path = (ctx["generators"].get(gan_key(cell["arch"], cell["variant"], cell["fold"], cell["gan_seed"]))
                if cell["arch"] else None)
    if isinstance(cell["ppc"], str) or cell["balance"] != "balanced":
        real_counts = np.bincount(store.labels(train_idx), minlength=len(LABELS)).tolist()
        size = {"counts": class_counts(cell["ppc"], cell["balance"], real_counts), "ppc": None}
    else:
        size = {"ppc": int(cell["ppc"])}
    ts = make_training_set(source, store, fold, seed=seed, generator=gen_path, pool=ctx["pools"].get(fold),
                           cfg=for_downstream(ctx["cfg"], cell["downstream"])["distill"].get(source), **size)
    data = ts.to_erdata()
    if pooled:
        return data if data.is_pooled else ERData(data.pooled(), data.labels)
    return as_sequences(data, int(np.median(store.lengths(train_idx))))


# A worker runs many cells on one store: open it (and pool its time-means) once per process.
_open_store = functools.lru_cache(maxsize=2)(FeatureStore.open)


def store_of(ctx: dict, fold) -> str:
    """The store path of ``fold`` in a context: per fold in the pipeline's, one for all in the
    contexts benchmarks build (``{"store": ...}``)."""
    return ctx["stores"][int(fold)] if ctx.get("stores") else ctx["store"]


def run_cell(cell: dict, ctx: dict) -> dict:
    """Train the downstream on the cell's set; dev selects, test scores (real data)."""
    torch.set_num_threads(1)
    store = _open_store(store_of(ctx, cell["fold"]))
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
    return {**cell, "recipe": cell_recipe(cell, ctx["cfg"]), "n_train": len(train),
            "test_uar": 100 * r["test_uar"], "test_acc": 100 * r["test_acc"],
            "dev_uar": 100 * r["dev_uar"] if r["dev_uar"] is not None else None,
            # measured wall time to the end of the dev-selected evaluation (the paper's "time to
            # train"), and the whole training (both input spaces under standardize: auto)
            "train_seconds": r["seconds_to_best"], "train_seconds_total": r["train_seconds"],
            "best_step": r["best_step"], "steps": r["steps"], "stopped": r["stopped"],
            "standardized": r["standardized"], "set_seconds": build_seconds,
            # compact, so results.json can carry every cell's predictions for re-checking a test
            "predictions": "".join(map(str, np.asarray(r["predictions"]).tolist())),
            "test_labels": "".join(map(str, np.asarray(r["test_labels"]).tolist()))}
