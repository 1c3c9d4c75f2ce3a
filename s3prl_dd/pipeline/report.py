"""results.json and report.md (Tables 1-3 of the paper, baselines, timing, plots) for a run.

Statistics (``records``: the fold is the unit). A table cell is the mean ± sample std over
folds of each fold's mean over its seeds, n = folds. Comparisons are paired over folds: mean
difference, 95 % t-interval and the two-sided paired t-test p (``metrics.paired_test``; the
Wilcoxon signed-rank p is in results.json, but with 5 folds it cannot go below 0.0625);
† marks p < 0.05 against the same arch's Baseline GAN, ‡ against + L_SML. results.json keeps
every cell's test predictions and every test behind a mark, so each can be re-checked."""
from __future__ import annotations

import json
from pathlib import Path

from .. import metrics
from ..runlog import gan_curves
from ..utils import atomic_write_json, atomic_write_text
from .config import for_downstream, gan_key, variants_for
from .layers import CHOICE_FILE, store_dir
from .records import ROW_NAMES, collect, match, methods, paired_folds, per_fold

ALPHA = 0.05


def _fmt(values) -> str:
    return metrics.mean_std(values, digits=1) if values else "-"


def _folds_fmt(records, **sel) -> str:
    """mean ± std over folds of the fold means, with n = folds."""
    return _fmt(list(per_fold(records, **sel).values()))


class Tests:
    """Every paired fold-level test the report makes, kept for results.json."""

    def __init__(self):
        self.rows = []

    def __call__(self, records, what: str, a: dict, b: dict) -> dict | None:
        done = next((t for t in self.rows if t["a"] == a and t["b"] == b), None)
        if done is not None:  # Table 2's marks and the differences table ask the same question
            return done
        folds, va, vb = paired_folds(records, a, b)
        if len(folds) < 2:
            return None
        t = {"what": what, "a": a, "b": b, "folds": folds, "a_fold_uar": va, "b_fold_uar": vb,
             **metrics.paired_test(va, vb)}
        self.rows.append(t)
        return t


def _diff_fmt(t: dict | None) -> str:
    if t is None:
        return "-"
    p = t["t_p"]
    if p is None:  # fewer than 2 folds: a difference, no interval or test
        return f"{t['mean_diff']:+.1f} (n={t['n']}, no test)"
    star = " *" if p < ALPHA else ""
    shown = "p<0.001" if p < 0.001 else f"p={p:.3f}"  # not "p=0.000"
    return f"{t['mean_diff']:+.1f} [{t['ci_low']:+.1f}, {t['ci_high']:+.1f}] {shown}{star}"


def _storage(run: Path, cfg: dict) -> dict:
    corpus = json.loads((run / "corpus" / "corpus.json").read_text())
    root = Path(corpus["root"])
    audio = sum((root / m["path"]).stat().st_size for m in _all_meta(corpus))
    # one layer's store: a generator replaces the features of one fold, whatever its layer
    store = sum(p.stat().st_size for p in store_dir(run, cfg, cfg["folds"][0]).glob("shard-*.npy"))
    gens = {}
    wanted = {gan_key(a, v, f, gs) for a in cfg["gan"]["archs"] for v in variants_for(cfg, a) for f in cfg["folds"]
              for gs in cfg["gan_seeds"]}
    for g in sorted((run / "gans").glob("*/*/generator.pt")):
        if g.parent.parent.name in wanted:  # not a GAN a former config of this run trained
            gens[g.parent.parent.name] = g.stat().st_size
    red = lambda b, ref: round(100 * (1 - b / ref), 2) if ref else None
    return {"audio_bytes": audio, "store_bytes": store, "generators": {
        k: {"bytes": v, "reduction_vs_audio_pct": red(v, audio), "reduction_vs_store_pct": red(v, store)}
        for k, v in gens.items()}}


def _gans(run: Path, cfg: dict) -> list[dict]:
    """Each GAN of the grid: its exported step (best quick-evaluation dev UAR), training time, and
    its quick-evaluation dev curve (so whether it converged can be read from results.json)."""
    out = []
    for a in cfg["gan"]["archs"]:
        for v in variants_for(cfg, a):
            for f in cfg["folds"]:
                for gs in cfg["gan_seeds"]:
                    done = sorted((run / "gans" / gan_key(a, v, f, gs)).glob("*/result.json"))
                    if done:
                        r = json.loads(done[-1].read_text())
                        out.append({"gan": gan_key(a, v, f, gs), "steps": r["step"], "best_step": r["best_step"],
                                    "best_dev_uar": r["best_dev_uar"], "train_seconds": r["train_seconds"],
                                    "dev_curve": gan_curves(done[-1].parent)["dev_curve"]})
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


def _budgets(cfg) -> list:
    return [b for b in cfg["budgets"] if b != "full"]


def _table2(records, cfg, ds, tests: Tests) -> list[str]:
    budgets = _budgets(cfg)
    lines = [f"| Model ({ds}) | " + " | ".join(f"{b} ppc UAR" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for arch in cfg["gan"]["archs"]:
        for v in variants_for(cfg, arch):
            row = []
            for b in budgets:
                sel = dict(source="gan", arch=arch, variant=v, ppc=b, balance="balanced", downstream=ds)
                mark = ""
                for ref, sym in (("baseline", "†"), ("sml", "‡")):
                    if v != ref and ref in variants_for(cfg, arch):
                        t = tests(records, f"{arch} {ROW_NAMES[v]} vs {ROW_NAMES[ref]}, {b} ppc, {ds}",
                                  sel, {**sel, "variant": ref})
                        mark += sym if t and t["t_p"] is not None and t["t_p"] < ALPHA else ""
                row.append(_folds_fmt(records, **sel) + mark)
            lines.append(f"| {arch} {ROW_NAMES[v]} | " + " | ".join(row) + " |")
    return lines


def _baselines(records, cfg, ds) -> list[str]:
    budgets = _budgets(cfg)
    lines = [f"Full real data ({ds}): **{_folds_fmt(records, source='real', downstream=ds)}** UAR.", "",
             "| Method | " + " | ".join(f"{b} ppc" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for name, sel in methods(cfg):
        row = [_folds_fmt(records, **sel, ppc=b, balance="balanced", downstream=ds) for b in budgets]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines


def _differences(records, cfg, ds, tests: Tests) -> list[str]:
    """Per-budget paired differences over folds: every method vs random, each GAN variant vs its
    Baseline, and full real data vs each method (the targets of the issues)."""
    budgets = _budgets(cfg)
    lines = ["| Paired Δ UAR over folds: mean [95 % CI] p | " + " | ".join(f"{b} ppc" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    real = {"source": "real", "ppc": "full", "balance": "imbalanced", "downstream": ds}
    for name, sel in methods(cfg):
        at = lambda b, **kw: {**sel, "ppc": b, "balance": "balanced", "downstream": ds, **kw}  # noqa: E731
        if sel["source"] != "random":
            lines.append(f"| {name} − random | " + " | ".join(
                _diff_fmt(tests(records, f"{name} vs random, {b} ppc, {ds}", at(b),
                                at(b, source="random", arch=None, variant=None))) for b in budgets) + " |")
        if sel["source"] == "gan" and sel["variant"] != "baseline" and "baseline" in variants_for(cfg, sel["arch"]):
            lines.append(f"| {name} − Baseline | " + " | ".join(
                _diff_fmt(tests(records, f"{name} vs Baseline, {b} ppc, {ds}", at(b), at(b, variant="baseline")))
                for b in budgets) + " |")
        lines.append(f"| full real − {name} | " + " | ".join(
            _diff_fmt(tests(records, f"full real vs {name}, {b} ppc, {ds}", real, at(b))) for b in budgets) + " |")
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
                vals.append(_folds_fmt(records, source="real", downstream=ds) if bal == "imbalanced" else "-")
            else:
                vals.append(_folds_fmt(records, **sel, ppc=ppc, balance=bal, downstream=ds))
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    return lines


def _timing(records, ds) -> list[str]:
    """Measured wall time from the first step to the end of the dev-selected evaluation."""
    lines = ["| Training set | n_train | seconds to the selected step (measured) |", "|---|---|---|"]
    sel = [r for r in records if match(r, source="real", downstream=ds)]
    if sel:
        lines.append(f"| real (full) | {_fmt([r['n_train'] for r in sel])} | {_fmt([r['train_seconds'] for r in sel])} |")
    budgets = {r["ppc"] for r in records if r["source"] == "gan"}
    for ppc in sorted(budgets, key=lambda p: (isinstance(p, str), p if isinstance(p, int) else 0, str(p))):
        sel = [r for r in records if match(r, source="gan", ppc=ppc, balance="balanced", downstream=ds)]
        if sel:
            lines.append(f"| GAN {ppc} ppc | {_fmt([r['n_train'] for r in sel])} | {_fmt([r['train_seconds'] for r in sel])} |")
    return lines


def _convergence(records, ds) -> list[str]:
    """Did every training run stop on its own (dev patience) well before the step cap?"""
    mine = [r for r in records if r["downstream"] == ds and "stopped" in r]
    if not mine:
        return []
    real = [r for r in mine if r["source"] == "real"]
    capped = [r for r in mine if r["stopped"] != "patience"]
    std = sum(bool(r.get("standardized")) for r in mine)
    lines = [f"{len(mine) - len(capped)} of {len(mine)} runs stopped by dev patience; "
             f"{len(capped)} reached the step cap; best dev step max {max(r['best_step'] for r in mine)}. "
             f"Input space chosen on each run's own dev split: standardised in {std}, raw in {len(mine) - std}."]
    if real:
        lines.append(f"Full real data: best dev step {_fmt([r['best_step'] for r in real])} of "
                     f"{_fmt([r['steps'] for r in real])} steps run (stopped: "
                     f"{', '.join(sorted({r['stopped'] for r in real}))}).")
    return lines


def _layer_table(choice: dict) -> list[str]:
    """Dev UAR of full real data per fold and candidate layer (layer: dev); test is not shown."""
    cands = choice["settings"]["candidates"]
    rows = ["| fold | " + " | ".join(f"layer {c} dev UAR" for c in cands) + " | chosen |",
            "|---" * (len(cands) + 2) + "|"]
    for fold, row in choice["dev_uar"].items():
        rows.append(f"| {fold} | " + " | ".join(f"{row[str(c)]:.1f}" for c in cands) + f" | {choice['chosen'][fold]} |")
    return rows


def write_report(run: Path, cfg: dict, cells: list[dict]) -> dict:
    records = collect(run, cells)
    storage = _storage(run, cfg) if (run / "corpus" / "corpus.json").is_file() else {}
    tests = Tests()
    results = {"records": records, "storage": storage, "gans": _gans(run, cfg), "config": cfg,
               "n_cells": len(cells), "n_done": len(records)}
    probe = run / "sid_probe.json"
    if probe.is_file():
        results["sid_probe"] = json.loads(probe.read_text())["sid_probe"]
    if (run / CHOICE_FILE).is_file() and cfg.get("layer_candidates"):
        results["layer_choice"] = json.loads((run / CHOICE_FILE).read_text())

    seeds = f"{len(cfg['seeds'])} downstream seed(s)"
    md = [f"# s3prl-dd report: {cfg['name']}", "",
          f"Corpus {cfg['corpus']}, upstream `{cfg['upstream']}` layer {cfg['layer']}, folds {cfg['folds']}, seeds {cfg['seeds']}, "
          f"GAN seeds {cfg['gan_seeds']} (downstream seed i uses GAN seed i). Every cell: test UAR %, mean ± std "
          f"over folds (n = folds) of each fold's mean over {seeds}; every model selected on its fold's dev split "
          f"only. Comparisons are paired over folds (the independent unit): mean Δ [95 % t-interval], paired "
          f"t-test p; * / † / ‡ = p < {ALPHA}. {len(records)}/{len(cells)} cells complete.", ""]
    if "layer_choice" in results:
        md += ["## The layer of each fold, chosen on its own dev split", "", *_layer_table(results["layer_choice"]), ""]
    if storage:
        md += ["## Table 1: storage", "", "| Artifact | bytes | reduction vs audio | reduction vs features |", "|---|---|---|---|",
               f"| audio | {storage['audio_bytes']} | - | - |", f"| feature store | {storage['store_bytes']} | - | - |"]
        md += [f"| generator {k} | {v['bytes']} | {v['reduction_vs_audio_pct']}% | {v['reduction_vs_store_pct']}% |"
               for k, v in storage["generators"].items()] + [""]
    if results["gans"]:
        md += ["## GAN training", "", *_gan_table(results["gans"]), ""]
    for ds in cfg["downstreams"]:
        sub = for_downstream(cfg, ds)
        md += [f"## Convergence of the ER runs, {ds} downstream", "", *_convergence(records, ds), ""]
        if "gan" in sub["sources"]:
            md += [f"## Table 2: GAN samples only, {ds} downstream (balanced)", "", *_table2(records, sub, ds, tests), ""]
        md += [f"## Baselines and distillation methods, {ds} downstream", "", *_baselines(records, sub, ds), ""]
        if any(sub["distill"].values()):  # what the sets of this table were built with, beyond the shipped defaults
            md += ["Distillation options (over `downstream_configs/distill/*.yaml`): "
                   + "; ".join(f"{src} {opts}" for src, opts in sub["distill"].items() if opts) + ".", ""]
        md += [f"## Paired differences over folds, {ds} downstream", "", *_differences(records, sub, ds, tests), ""]
        if sub.get("table3"):
            md += [f"## Table 3: real vs GAN, balanced vs imbalanced, {ds} downstream", "", *_table3(records, sub, ds), ""]
        md += [f"## Downstream training time, {ds}", "", *_timing(records, ds), ""]
    if "sid_probe" in results:
        md += ["## Table 4: speaker information in the SER models' first layer", "",
               results["sid_probe"]["markdown"], f"ER models: {results['sid_probe'].get('cells')}", ""]
    results["tests"] = tests.rows
    atomic_write_json(results, run / "results.json")
    try:
        from .plots import write_plots

        md += write_plots(run, cfg, records)
    except ImportError:
        md += ["(plots skipped: matplotlib is not installed; `pip install s3prl-dd[report]`)"]
    atomic_write_text("\n".join(md) + "\n", run / "report.md")
    return results
