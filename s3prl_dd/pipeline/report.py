"""results.json and report.md (Tables 1-3 of the paper, baselines, timing, plots) for a run.

Statistics: every table cell is mean ± sample std over fold x seed runs, with n. McNemar's
exact test pairs two methods' predictions on the same test utterances, pooled over every
(fold, seed) both have; † marks p < 0.05 against the Baseline GAN, ‡ against +L_SML."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import metrics
from ..utils import atomic_write_json, atomic_write_text
from .cells import GAN_SOURCES, cell_key
from .config import for_downstream, gan_key, variants_for

ROW_NAMES = {"baseline": "Baseline", "div": "+ L_DIV", "sml": "+ L_SML", "div_sml": "+ L_DIV + L_SML"}


def _fmt(values) -> str:
    return metrics.mean_std(values, digits=1) if values else "-"


def _match(r: dict, **kw) -> bool:
    return all(r.get(k) == v for k, v in kw.items())


def _paired_mcnemar(records, a: dict, b: dict) -> float | None:
    """McNemar p of method a vs b over every (fold, seed) where both ran."""
    ra = {(r["fold"], r["seed"]): r for r in records if _match(r, **a)}
    rb = {(r["fold"], r["seed"]): r for r in records if _match(r, **b)}
    keys = sorted(set(ra) & set(rb))
    if not keys:
        return None
    y = np.concatenate([ra[k]["test_labels"] for k in keys])
    pa = np.concatenate([ra[k]["predictions"] for k in keys])
    pb = np.concatenate([rb[k]["predictions"] for k in keys])
    return metrics.mcnemar(y, pa, pb)["p_value"]


def _storage(run: Path, cfg: dict) -> dict:
    corpus = json.loads((run / "corpus" / "corpus.json").read_text())
    root = Path(corpus["root"])
    audio = sum((root / m["path"]).stat().st_size for m in _all_meta(corpus))
    store = sum(p.stat().st_size for p in (run / "store").glob("shard-*.npy"))
    gens = {}
    wanted = {gan_key(a, v, f) for a in cfg["gan"]["archs"] for v in variants_for(cfg, a) for f in cfg["folds"]}
    for g in sorted((run / "gans").glob("*/*/generator.pt")):
        if g.parent.parent.name in wanted:  # not a GAN a former config of this run trained
            gens[g.parent.parent.name] = g.stat().st_size
    red = lambda b, ref: round(100 * (1 - b / ref), 2) if ref else None
    return {"audio_bytes": audio, "store_bytes": store, "generators": {
        k: {"bytes": v, "reduction_vs_audio_pct": red(v, audio), "reduction_vs_store_pct": red(v, store)}
        for k, v in gens.items()}}


def _gans(run: Path, cfg: dict) -> list[dict]:
    """Each GAN of the grid: its exported step (best quick-evaluation dev UAR) and training time."""
    out = []
    for a in cfg["gan"]["archs"]:
        for v in variants_for(cfg, a):
            for f in cfg["folds"]:
                done = sorted((run / "gans" / gan_key(a, v, f)).glob("*/result.json"))
                if done:
                    r = json.loads(done[-1].read_text())
                    out.append({"gan": gan_key(a, v, f), "steps": r["step"], "best_step": r["best_step"],
                                "best_dev_uar": r["best_dev_uar"], "train_seconds": r["train_seconds"]})
    return out


def _gan_table(gans: list[dict]) -> list[str]:
    fmt = lambda x: "-" if x is None else f"{100 * x:.1f}"  # noqa: E731
    return ["| GAN | steps | exported step | its dev UAR (quick eval) | training minutes |", "|---|---|---|---|---|"] + [
        f"| {g['gan']} | {g['steps']} | {g['best_step']} | {fmt(g['best_dev_uar'])} | {g['train_seconds'] / 60:.1f} |"
        for g in gans]


def _all_meta(corpus: dict) -> list[dict]:
    meta = Path(corpus["meta_data"]) / "Session1"
    seen = {}
    for part in ("train_meta_data.json", "test_meta_data.json"):
        for m in json.loads((meta / part).read_text())["meta_data"]:
            seen[m["path"]] = m
    return list(seen.values())


def collect(run: Path, cells: list[dict]) -> list[dict]:
    records = []
    for c in cells:
        p = run / "cells" / f"{cell_key(c)}.json"
        if p.is_file():
            records.append(json.loads(p.read_text()))
    for r in records:
        if r["source"] == "gan":
            same = {k: r[k] for k in ("fold", "seed", "downstream", "ppc", "balance", "arch")}
            for name, variant in (("baseline", "baseline"), ("sml", "sml")):
                if r["variant"] != variant:
                    other = [o for o in records if _match(o, source="gan", variant=variant, **same)]
                    r[f"mcnemar_p_vs_{name}"] = (metrics.mcnemar(r["test_labels"], r["predictions"], other[0]["predictions"])["p_value"]
                                                 if other else None)
    return records


def _table2(records, cfg, ds) -> list[str]:
    budgets = [b for b in cfg["budgets"] if b != "full"]
    lines = [f"| Model ({ds}) | " + " | ".join(f"{b} ppc UAR" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for arch in cfg["gan"]["archs"]:
        for v in variants_for(cfg, arch):
            row = []
            for b in budgets:
                sel = dict(source="gan", arch=arch, variant=v, ppc=b, balance="balanced", downstream=ds)
                vals = [r["test_uar"] for r in records if _match(r, **sel)]
                mark = ""
                for ref, sym in (("baseline", "†"), ("sml", "‡")):
                    if v != ref and ref in variants_for(cfg, arch):
                        p = _paired_mcnemar(records, sel, {**sel, "variant": ref})
                        mark += sym if p is not None and p < 0.05 else ""
                row.append(_fmt(vals) + mark)
            lines.append(f"| {arch} {ROW_NAMES[v]} | " + " | ".join(row) + " |")
    return lines


def _methods(cfg) -> list[tuple[str, dict]]:
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


def _baselines(records, cfg, ds) -> list[str]:
    budgets = [b for b in cfg["budgets"] if b != "full"]
    real = [r["test_uar"] for r in records if _match(r, source="real", downstream=ds)]
    lines = [f"Full real data ({ds}): **{_fmt(real)}** UAR.", "",
             "| Method | " + " | ".join(f"{b} ppc" for b in budgets) + " | Δ vs random (paired, mean over budgets) |",
             "|---|" + "---|" * (len(budgets) + 1)]
    for name, sel in _methods(cfg):
        row, deltas = [], []
        for b in budgets:
            mine = {(r["fold"], r["seed"]): r["test_uar"] for r in records
                    if _match(r, **sel, ppc=b, balance="balanced", downstream=ds)}
            rand = {(r["fold"], r["seed"]): r["test_uar"] for r in records
                    if _match(r, source="random", ppc=b, balance="balanced", downstream=ds)}
            row.append(_fmt(list(mine.values())))
            deltas += [mine[k] - rand[k] for k in set(mine) & set(rand)]
        lines.append(f"| {name} | " + " | ".join(row) + f" | {_fmt(deltas) if sel['source'] != 'random' else '-'} |")
    return lines


def _paired(records, a: dict, b: dict) -> list[float]:
    """a - b test UAR over the (fold, seed) pairs both have."""
    ua = {(r["fold"], r["seed"]): r["test_uar"] for r in records if _match(r, **a)}
    ub = {(r["fold"], r["seed"]): r["test_uar"] for r in records if _match(r, **b)}
    return [ua[k] - ub[k] for k in sorted(set(ua) & set(ub))]


def _differences(records, cfg, ds) -> list[str]:
    """Per-budget paired differences: every method vs random, each GAN's last variant vs its
    Baseline, and full real data vs each method (the targets of the issues)."""
    budgets = [b for b in cfg["budgets"] if b != "full"]
    lines = ["| Paired Δ UAR (points) | " + " | ".join(f"{b} ppc" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    real = {"source": "real", "ppc": "full", "balance": "imbalanced", "downstream": ds}
    for name, sel in _methods(cfg):
        at = lambda b, **kw: {**sel, "ppc": b, "balance": "balanced", "downstream": ds, **kw}  # noqa: E731
        if sel["source"] != "random":
            lines.append(f"| {name} − random | " + " | ".join(
                _fmt(_paired(records, at(b), at(b, source="random", arch=None, variant=None))) for b in budgets) + " |")
        if sel["source"] == "gan" and sel["variant"] != "baseline" and "baseline" in variants_for(cfg, sel["arch"]):
            lines.append(f"| {name} − Baseline | " + " | ".join(
                _fmt(_paired(records, at(b), at(b, variant="baseline"))) for b in budgets) + " |")
        lines.append(f"| full real − {name} | " + " | ".join(_fmt(_paired(records, real, at(b))) for b in budgets) + " |")
    return lines


def _table3(records, cfg, ds) -> list[str]:
    cols = [("min", "balanced"), ("min", "imbalanced"), ("full", "imbalanced"), ("full", "balanced")]
    lines = [f"| Method ({ds}) | C×minority balanced | C×minority imbalanced | full imbalanced | full balanced |",
             "|---|---|---|---|---|"]
    rows = [("Real", {"source": "random"})]
    rows += [(f"GAN {a} {ROW_NAMES[variants_for(cfg, a)[-1]]}", {"source": "gan", "arch": a, "variant": variants_for(cfg, a)[-1]})
             for a in cfg["gan"]["archs"] if "gan" in cfg["sources"]]
    for name, sel in rows:
        vals = []
        for ppc, bal in cols:
            if name == "Real" and ppc == "full":
                v = [r["test_uar"] for r in records if _match(r, source="real", downstream=ds)] if bal == "imbalanced" else []
            else:
                v = [r["test_uar"] for r in records if _match(r, **sel, ppc=ppc, balance=bal, downstream=ds)]
            vals.append(_fmt(v))
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    return lines


def _timing(records, ds) -> list[str]:
    real = [r["train_seconds"] for r in records if _match(r, source="real", downstream=ds)]
    lines = ["| Training set | n_train | seconds to the selected step |", "|---|---|---|",
             f"| real (full) | {_fmt([r['n_train'] for r in records if _match(r, source='real', downstream=ds)])} | {_fmt(real)} |"]
    budgets = {r["ppc"] for r in records if r["source"] == "gan"}
    for ppc in sorted(budgets, key=lambda p: (isinstance(p, str), p if isinstance(p, int) else 0, str(p))):
        sel = [r for r in records if _match(r, source="gan", ppc=ppc, balance="balanced", downstream=ds)]
        if sel:
            lines.append(f"| GAN {ppc} ppc | {_fmt([r['n_train'] for r in sel])} | {_fmt([r['train_seconds'] for r in sel])} |")
    return lines


def write_report(run: Path, cfg: dict, cells: list[dict]) -> dict:
    records = collect(run, cells)
    storage = _storage(run, cfg) if (run / "corpus" / "corpus.json").is_file() else {}
    results = {"records": [{k: v for k, v in r.items() if k not in ("predictions", "test_labels")} for r in records],
               "storage": storage, "gans": _gans(run, cfg), "config": cfg, "n_cells": len(cells),
               "n_done": len(records)}
    probe = run / "sid_probe.json"
    if probe.is_file():
        results["sid_probe"] = json.loads(probe.read_text())["sid_probe"]
    atomic_write_json(results, run / "results.json")

    n = f"{len(cfg['folds'])} fold(s) × {len(cfg['seeds'])} seed(s)"
    md = [f"# s3prl-dd report: {cfg['name']}", "",
          f"Corpus {cfg['corpus']}, upstream `{cfg['upstream']}`, folds {cfg['folds']}, seeds {cfg['seeds']}. "
          f"Every cell: test UAR % (mean ± std over {n}, n given), model selected on the dev split only. "
          f"{len(records)}/{len(cells)} cells complete.", ""]
    if storage:
        md += ["## Table 1: storage", "", "| Artifact | bytes | reduction vs audio | reduction vs features |", "|---|---|---|---|",
               f"| audio | {storage['audio_bytes']} | - | - |", f"| feature store | {storage['store_bytes']} | - | - |"]
        md += [f"| generator {k} | {v['bytes']} | {v['reduction_vs_audio_pct']}% | {v['reduction_vs_store_pct']}% |"
               for k, v in storage["generators"].items()] + [""]
    if results["gans"]:
        md += ["## GAN training", "", *_gan_table(results["gans"]), ""]
    for ds in cfg["downstreams"]:
        sub = for_downstream(cfg, ds)
        if "gan" in sub["sources"]:
            md += [f"## Table 2: GAN samples only, {ds} downstream (balanced)", "", *_table2(records, sub, ds), ""]
        md += [f"## Baselines and distillation methods, {ds} downstream", "", *_baselines(records, sub, ds), ""]
        if any(sub["distill"].values()):  # what the sets of this table were built with, beyond the shipped defaults
            md += ["Distillation options (over `downstream_configs/distill/*.yaml`): "
                   + "; ".join(f"{src} {opts}" for src, opts in sub["distill"].items() if opts) + ".", ""]
        md += [f"## Paired differences, {ds} downstream (mean ± std over fold × seed pairs)", "",
               *_differences(records, sub, ds), ""]
        if sub.get("table3"):
            md += [f"## Table 3: real vs GAN, balanced vs imbalanced, {ds} downstream", "", *_table3(records, sub, ds), ""]
        md += [f"## Downstream training time, {ds}", "", *_timing(records, ds), ""]
    if "sid_probe" in results:
        md += ["## Table 4: speaker information in the SER models' first layer", "",
               results["sid_probe"]["markdown"], f"ER models: {results['sid_probe'].get('cells')}", ""]
    try:
        from .plots import write_plots

        md += write_plots(run, cfg, records)
    except ImportError:
        md += ["(plots skipped: matplotlib is not installed; `pip install s3prl-dd[report]`)"]
    atomic_write_text("\n".join(md) + "\n", run / "report.md")
    return results
