"""The grid's results as records, and the fold-level view the statistics use.

A record is one cell's JSON (``cells/<key>.json``). The independent unit of every comparison
is the fold (leave-one-session-out: disjoint test speakers); a fold's value for a method is
the mean of its cells over downstream seeds (and, for GAN rows, over the GAN seeds those seeds
use). Folds are never pooled with seeds as if they were independent."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .cells import GAN_SOURCES, cell_key
from .config import variants_for

ROW_NAMES = {"baseline": "Baseline", "div": "+ L_DIV", "sml": "+ L_SML", "div_sml": "+ L_DIV + L_SML"}


def match(r: dict, **kw) -> bool:
    return all(r.get(k) == v for k, v in kw.items())


def collect(run: Path, cells: list[dict]) -> list[dict]:
    """The records of ``cells`` that are complete, in grid order."""
    out = []
    for c in cells:
        p = Path(run) / "cells" / f"{cell_key(c)}.json"
        if p.is_file():
            out.append(json.loads(p.read_text()))
    return out


def methods(cfg: dict) -> list[tuple[str, dict]]:
    """(row name, record selector) of every training-set method but full real data."""
    out = []
    for s in cfg["sources"]:
        if s == "real":
            continue
        if s in GAN_SOURCES:
            for a in cfg["gan"]["archs"] if s == "gan" else (cfg["gan"]["distill_archs"] or cfg["gan"]["archs"]):
                vs = variants_for(cfg, a) if s == "gan" else variants_for(cfg, a)[-1:]
                out += [(f"{s} {a} {ROW_NAMES[v]}", {"source": s, "arch": a, "variant": v}) for v in vs]
        else:
            out.append((s, {"source": s}))
    return out


def per_fold(records: list[dict], key: str = "test_uar", **sel) -> dict[int, float]:
    """fold -> mean of ``key`` over the fold's matching cells (its seeds)."""
    vals: dict[int, list] = {}
    for r in records:
        if match(r, **sel) and r.get(key) is not None:
            vals.setdefault(r["fold"], []).append(r[key])
    return {f: float(np.mean(v)) for f, v in sorted(vals.items())}


def shared_seeds(records: list[dict], a: dict, b: dict) -> list:
    """The downstream seeds on which both selections have cells."""
    def seeds(sel):
        return {r.get("seed") for r in records if match(r, **sel)}
    return sorted(seeds(a) & seeds(b), key=str)


def paired_folds(records: list[dict], a: dict, b: dict) -> tuple[list[int], list[float], list[float]]:
    """(folds, a's fold values, b's fold values) over the folds and downstream seeds both have: a
    row run at fewer seeds (a Baseline left for later) is compared on its own seeds, not against a
    mean over more."""
    on = set(shared_seeds(records, a, b))
    records = [r for r in records if r.get("seed") in on]
    fa, fb = per_fold(records, **a), per_fold(records, **b)
    folds = sorted(set(fa) & set(fb))
    return folds, [fa[f] for f in folds], [fb[f] for f in folds]
