"""Real-data baselines: class-balanced subsets of the fold's TRAIN part (never dev or test).

- ``random``: per class, a permutation seeded by (seed, class) (``gan.realdata.step_generator``),
  first ``ppc`` taken, so the 5-ppc subset is inside the 10-ppc one for the same seed.
- ``herding``: per class, greedy herding on the store's standardised time-means towards the
  class mean (``objectives.herding_select``); deterministic, the seed is not used.
- ``kcenter``: per class, greedy k-center in the same space; deterministic.
``counts`` (class name -> n) replaces ``ppc`` for unbalanced budgets (the paper's Table 3); the
random rows of the pipeline, and DM's and latent distillation's starting subsets, all come from
``select_real``, so one seed means one subset everywhere. A class with fewer than its count of
train items contributes all of them; ``info["short_classes"]`` names it. The features are the
store's own (T, D) utterances, raw scale."""
from __future__ import annotations

import numpy as np
import torch

from ..gan.realdata import step_generator
from ..utils import UserError
from .common import TrainingSet, features_nbytes, fold_train
from .objectives import herding_select, kcenter_select

METHODS = ("random", "herding", "kcenter")


def per_class_counts(names: dict, ppc: int | None, counts: dict | None) -> dict:
    """class id -> how many points: ``ppc`` for every class, or ``counts`` by class name."""
    if (ppc is None) == (counts is None):
        raise UserError("give either ppc or counts")
    if counts is None:
        return {c: int(ppc) for c in names}
    unknown = set(counts) - set(names.values())
    if unknown:
        raise UserError(f"counts for unknown classes {sorted(unknown)} (classes: {sorted(names.values())})")
    return {c: int(counts.get(name, 0)) for c, name in names.items()}


def select_real(store, fold, ppc: int | None, seed: int = 0, method: str = "random",
                counts: dict | None = None) -> tuple[list[int], dict]:
    """Store positions of the subset, class by class in label-id order, and an info dict."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    ft = fold_train(store, fold)
    want = per_class_counts({c: ft.names[c] for c in ft.classes}, ppc, counts)
    chosen, short, per_class = [], {}, {}
    for c in ft.classes:
        rows, ppc = ft.of_class(c), want[c]
        if len(rows) < ppc:
            short[ft.names[c]] = len(rows)
        if method == "random":
            perm = torch.randperm(len(rows), generator=step_generator(int(seed), "real-subset", c)).tolist()
            pick = [rows[j] for j in perm[:ppc]]
        elif method == "herding":
            pick = [rows[j] for j in herding_select(ft.x[rows].numpy(), ppc)]
        else:
            pick = [rows[j] for j in kcenter_select(ft.x[rows].numpy(), ppc)]
        per_class[ft.names[c]] = len(pick)
        chosen += [ft.indices[r] for r in pick]
    info = {"method": method, "counts": per_class, "n_train": len(ft.indices)}
    if short:
        info["short_classes"] = short  # class -> how many train items it has (< ppc)
    return chosen, info


def real_subset(store, fold, ppc: int | None, seed: int = 0, method: str = "random",
                counts: dict | None = None) -> TrainingSet:
    idx, info = select_real(store, fold, ppc, seed, method, counts)
    feats = [np.array(store.features(i), dtype=np.float32) for i in idx]
    info["store_positions"] = idx
    return TrainingSet(method, feats, store.labels(idx), store.ids(idx), features_nbytes(feats), info)
