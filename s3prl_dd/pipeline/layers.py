"""The upstream layer of each fold, and the feature store that holds it.

A pipeline config's ``layer`` is one of

- an integer hidden-state index, for every fold (one store: ``run/store``);
- a mapping ``{fold: layer}`` (``-o "layer={1: 2, 2: 1}"``): each fold's pools, GANs and cells use
  its own layer, from one store per distinct layer (``run/store-layerL``);
- ``dev``: each fold takes the candidate of ``layer_candidates`` whose full-real-data linear ER
  model (the run's ``er`` recipe, mean over the downstream ``seeds``) has the best UAR on that
  fold's OWN dev split; ties go to the earlier candidate. A pooled choice over every fold's dev
  split would let a fold's layer be picked on another fold's dev speakers, which are in its test
  split (issue 12's rule). The dev scores are in ``run/layer_choice.json``, and the run's saved
  ``config.yaml`` holds the resolved mapping, so everything read from a run directory later sees
  the layers its cells used.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from tqdm import tqdm

from ..utils import UserError, atomic_write_json

CHOICE_FILE = "layer_choice.json"


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_layer(cfg: dict) -> None:
    """Shape of ``layer`` / ``layer_candidates``, before any work starts."""
    layer, cands = cfg["layer"], cfg["layer_candidates"]
    if layer == "dev":
        if not isinstance(cands, list) or not cands or not all(_is_int(c) for c in cands):
            raise UserError(f"layer: dev needs layer_candidates, a non-empty list of hidden-state indices "
                            f"(e.g. layer_candidates=[0,1,2]), got {cands!r}")
        if len(set(cands)) != len(cands):
            raise UserError(f"layer_candidates: {cands!r} lists a layer twice")
    elif isinstance(layer, dict):
        bad = {k: v for k, v in layer.items() if not (_is_int(_fold(k)) and _is_int(v))}
        if bad:
            raise UserError(f"layer: a mapping fold -> hidden-state index, got {bad!r}")
        missing = sorted(set(cfg["folds"]) - {_fold(k) for k in layer})
        if missing:
            raise UserError(f"layer: no layer for fold(s) {missing} (a per-fold layer must name every fold of folds)")
    elif not _is_int(layer):
        raise UserError(f"layer: {layer!r} is neither a hidden-state index, a mapping {{fold: index}} nor 'dev'")


def _fold(key):
    if isinstance(key, str) and key.lstrip("-").isdigit():
        return int(key)
    return key


def per_fold(cfg: dict) -> bool:
    """True when folds may differ in layer (a mapping, or ``dev`` before it is resolved)."""
    return not _is_int(cfg["layer"])


def fold_layer(cfg: dict, fold) -> int:
    """The hidden-state index fold ``fold`` (an int or ``"foldK"``) is trained and tested on."""
    layer = cfg["layer"]
    if _is_int(layer):
        return layer
    if layer == "dev":
        raise UserError("layer: dev is not resolved yet (pipeline.layers.resolve_layers runs the choice first)")
    k = int(str(fold).removeprefix("fold"))
    by_fold = {_fold(f): v for f, v in layer.items()}
    if k not in by_fold:
        raise UserError(f"layer: no layer for fold {k}")
    return int(by_fold[k])


def layer_store(run, layer: int) -> Path:
    return Path(run) / f"store-layer{layer}"


def store_dir(run, cfg: dict, fold) -> Path:
    """The store of ``fold``: ``run/store`` when every fold has one layer, so single-layer runs
    keep the layout that benchmarks and older runs use."""
    return layer_store(run, fold_layer(cfg, fold)) if per_fold(cfg) else Path(run) / "store"


def fold_stores(run, cfg: dict) -> dict[int, Path]:
    return {int(f): store_dir(run, cfg, f) for f in cfg["folds"]}


def ensure_store(cfg: dict, store: Path, layer: int, device) -> None:
    """Extract ``layer`` of the upstream into ``store`` (beside the run's ``corpus/``), or check
    that the finished store there holds it: a changed upstream, layer or corpus would otherwise
    be reported under the new name."""
    from ..features.extract import check_existing, corpus_fingerprint, extract, read_corpus
    from ..features.upstream import representation_from

    corpus = store.parent / "corpus"
    if (store / "index.json").is_file():
        _, items, folds, _ = read_corpus(corpus)
        check_existing(store, cfg["upstream"], representation_from(layer), corpus_fingerprint(items, folds), corpus,
                       remedy=f"this run directory was made with another config: use a new --out, "
                              f"or delete {store} (and what was built on it)")
    else:
        extract(corpus, store, upstream=cfg["upstream"], layer=layer, device=device)


def _choice_settings(cfg: dict) -> dict:
    return {"upstream": cfg["upstream"], "corpus": cfg["corpus"], "candidates": list(cfg["layer_candidates"]),
            "folds": list(cfg["folds"]), "seeds": list(cfg["seeds"]), "er": cfg["er"]}


def choose(dev_uar: dict[int, float], candidates: list[int]) -> int:
    """The best mean dev UAR; a tie goes to the candidate listed first."""
    best = max(dev_uar.values())
    return next(c for c in candidates if dev_uar[c] == best)


def resolve_layers(cfg: dict, run, device) -> dict:
    """``cfg`` with ``layer: dev`` replaced by each fold's choice on its own dev split (read from
    ``run/layer_choice.json`` when it was made with the same settings; ``run/corpus`` must exist).
    The choice's ER runs are the full-real cell (``run_cell``) on each candidate's store; only
    their dev UAR and stopping are kept."""
    if cfg["layer"] != "dev":
        return cfg
    from .cells import run_cell

    run = Path(run)
    settings = _choice_settings(cfg)
    path = run / CHOICE_FILE
    done = json.loads(path.read_text()) if path.is_file() else {}
    if done.get("settings") != settings:
        done = {"settings": settings, "records": []}
    have = {(r["fold"], r["layer"], r["seed"]) for r in done["records"]}
    bar = tqdm(total=len(cfg["layer_candidates"]) * len(cfg["folds"]) * len(cfg["seeds"]), initial=len(have),
               desc="layer choice (dev)", dynamic_ncols=True)
    for layer in cfg["layer_candidates"]:
        store = layer_store(run, layer)
        ensure_store(cfg, store, layer, device)
        fixed = {**cfg, "layer": layer}
        ctx = {"cfg": fixed, "store": str(store), "pools": {}, "generators": {}, "device": device, "run": None}
        for fold in cfg["folds"]:
            for seed in cfg["seeds"]:
                if (fold, layer, seed) in have:
                    continue
                cell = {"fold": fold, "seed": seed, "downstream": "linear", "arch": None, "variant": None,
                        "losses": [], "gan_seed": None, "source": "real", "ppc": "full", "balance": "imbalanced"}
                r = run_cell(cell, ctx)
                done["records"].append({"fold": fold, "layer": layer, "seed": seed, "dev_uar": r["dev_uar"],
                                        "best_step": r["best_step"], "stopped": r["stopped"]})
                atomic_write_json(done, path)  # an interrupted choice resumes run by run
                bar.update()
    bar.close()
    chosen, table = {}, {}
    for fold in cfg["folds"]:
        table[fold] = {layer: statistics.fmean(r["dev_uar"] for r in done["records"]
                                               if r["fold"] == fold and r["layer"] == layer)
                       for layer in cfg["layer_candidates"]}
        chosen[fold] = choose(table[fold], cfg["layer_candidates"])
    done["dev_uar"] = {str(f): {str(k): v for k, v in row.items()} for f, row in table.items()}
    done["chosen"] = {str(f): layer for f, layer in chosen.items()}
    atomic_write_json(done, path)
    return {**cfg, "layer": chosen}
