"""Test UAR of the nested λ sweep's choices (benchmarks/lambda_sweep.py), read only after every
fold's (λ5, λ6) is fixed by its own dev split.

    python benchmarks/lambda_sweep_test.py [--sweep benchmarks/results/lambda_sweep.json] \
        [--budgets 1,2,5,10,20] [--seeds 0] [--work runs/lambda_sweep_test] \
        [--out benchmarks/results/lambda_sweep_test.json]

Per fold of the sweep and per budget (balanced points per class) and downstream seed, the
pipeline's own cells (``s3prl_dd.pipeline.cells.run_cell``: linear SUPERB ER, the ``converge``
recipe, dev-selected, tested on real data) on: all real train data, a random real subset, i.i.d.
samples of the fold's Baseline GAN (λ5 = λ6 = 0) and of the GAN whose pair the fold chose on
dev ("tuned"; it is the Baseline itself where the fold chose (0, 0)). Comparisons are paired
over folds (the unit whose GANs, teachers and choice are independent): mean Δ, 95 % t-interval,
paired t-test p. The sweep's own dev scores never enter this file's numbers."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s3prl_dd import metrics  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.pipeline.cells import cell_key, run_cell  # noqa: E402
from s3prl_dd.pipeline.config import DEFAULTS, gan_key  # noqa: E402
from s3prl_dd.utils import atomic_write_json, merge_config  # noqa: E402

SETS = ("random", "baseline", "tuned")
COMPARISONS = (("tuned", "baseline"), ("tuned", "random"), ("baseline", "random"), ("real", "tuned"))
VARIANT = {"baseline": "baseline", "tuned": "div_sml"}  # the pipeline's names for the two generators


def generators(sweep: dict, fold: int) -> dict[str, Path]:
    base = next(r for r in sweep["runs"] if r["fold"] == fold and r["lambda_div"] == 0 and r["lambda_sml"] == 0)
    chosen = sweep["choice"][f"fold{fold}"]
    return {"baseline": Path(base["run_dir"]) / "generator.pt", "tuned": Path(chosen["run_dir"]) / "generator.pt"}


def sweep_config(sweep: dict) -> dict:
    """The resolved GAN config saved beside the sweep's first run (all its runs share it but λ)."""
    return yaml.safe_load((Path(sweep["runs"][0]["run_dir"]) / "config.yaml").read_text())


def sweep_arch(sweep: dict) -> str:
    return sweep_config(sweep)["model"]["arch"]


def cells_for(fold: int, budgets, seeds, arch: str = "gan_mlp") -> list[dict]:
    base = {"fold": fold, "downstream": "linear", "arch": None, "variant": None, "losses": [], "gan_seed": None}
    out = [{**base, "seed": s, "source": "real", "ppc": "full", "balance": "imbalanced"} for s in seeds]
    for s in seeds:
        for b in budgets:
            out.append({**base, "seed": s, "source": "random", "ppc": b, "balance": "balanced"})
            out += [{**base, "seed": s, "source": "gan", "arch": arch, "variant": VARIANT[name], "gan_seed": 0,
                     "ppc": b, "balance": "balanced", "set": name} for name in ("baseline", "tuned")]
    return out


def set_name(cell: dict) -> str:
    return cell.get("set") or cell["source"]


def fold_means(records: list[dict], name: str, ppc) -> dict[int, float]:
    """A set's test UAR per fold at one budget, a fold's value being the mean over its downstream
    seeds; ``real`` (full data) stands at every budget."""
    by_fold: dict[int, list[float]] = {}
    for r in records:
        if set_name(r) == name and (name == "real" or r["ppc"] == ppc):
            by_fold.setdefault(r["fold"], []).append(r["test_uar"])
    return {f: sum(v) / len(v) for f, v in by_fold.items()}


def summarize(records: list[dict], folds, budgets, sets=SETS, comparisons=COMPARISONS) -> dict:
    """Per budget: each set's mean ± std over folds (a fold = the mean over its seeds) and the
    paired tests over folds; ``real`` is the full-data row."""
    def values(name, ppc):
        by_fold = fold_means(records, name, ppc)
        return [by_fold[f] for f in folds]

    out = {"real": metrics.summarize(values("real", None)), "by_budget": {}}
    for b in budgets:
        vals = {n: values(n, b) for n in ("real",) + tuple(sets)}
        out["by_budget"][str(b)] = {"sets": {n: metrics.summarize(vals[n]) for n in sets},
                                    "paired": {f"{x} - {y}": metrics.paired_test(vals[x], vals[y])
                                               for x, y in comparisons}}
    return out


def print_summary(summary: dict, sets=SETS) -> None:
    print(f"\nfull real data: {summary['real']['mean']:.1f} ± {summary['real']['std']:.1f} (n={summary['real']['n']} folds)")
    for b, s in summary["by_budget"].items():
        means = ", ".join(f"{n} {s['sets'][n]['mean']:.1f} ± {s['sets'][n]['std']:.1f}" for n in sets)
        tests = "; ".join(f"{k} {t['mean_diff']:+.1f} p=" + (f"{t['t_p']:.2g}" if t["t_p"] is not None else "–")
                          for k, t in s["paired"].items())
        print(f"{b:>3} ppc: {means}\n         {tests}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", default=str(ROOT / "benchmarks" / "results" / "lambda_sweep.json"))
    p.add_argument("--budgets", default="1,2,5,10,20")
    p.add_argument("--seeds", default="0")
    p.add_argument("--work", default="runs/lambda_sweep_test")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lambda_sweep_test.json"))
    a = p.parse_args(argv)
    sweep = json.loads(Path(a.sweep).read_text())
    folds = sorted(int(k[4:]) for k in sweep["choice"])
    arch = sweep_arch(sweep)
    budgets, seeds = [int(b) for b in a.budgets.split(",")], [int(s) for s in a.seeds.split(",")]
    cfg = merge_config(DEFAULTS, {"name": "lambda_sweep_test", "upstream": "from the sweep's store"})
    work = Path(a.work)
    (work / "cells").mkdir(parents=True, exist_ok=True)
    records = []
    for fold in folds:
        gens = generators(sweep, fold)
        ctx = {"cfg": cfg, "store": sweep["store"], "pools": {}, "device": "cpu", "run": str(work),
               "generators": {gan_key(arch, VARIANT[n], fold, 0): str(g) for n, g in gens.items()}}
        for cell in cells_for(fold, budgets, seeds, arch):
            key = f"{cell_key(cell)}{'-' + cell['set'] if 'set' in cell else ''}"
            done = work / "cells" / f"{key}.json"
            gen = str(gens[cell["set"]]) if "set" in cell else None
            if done.is_file() and json.loads(done.read_text()).get("generator") == gen:
                records.append(json.loads(done.read_text()))  # same set from the same generator
                continue
            rec = {**run_cell(cell, ctx), "set": set_name(cell), "generator": gen}
            atomic_write_json(rec, done)
            records.append(rec)
            print(f"  fold{fold} seed{cell['seed']} {set_name(cell)} {cell['ppc']} ppc: test UAR {rec['test_uar']:.1f} "
                  f"(best step {rec['best_step']} of {rec['steps']})", flush=True)
    summary = summarize(records, folds, budgets)
    atomic_write_json({"sweep": a.sweep, "arch": arch, "choice": sweep["choice"], "folds": folds, "budgets": budgets, "seeds": seeds,
                       "summary": summary, "records": [{k: v for k, v in r.items() if k not in ("predictions",)}
                                                       for r in records]}, a.out)
    print_summary(summary)


if __name__ == "__main__":
    run_main(main)
