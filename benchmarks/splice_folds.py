"""A pipeline ``results.json`` whose folds come from different runs, so that a setting chosen per
fold (on the fold's own dev split) can be tested when the pipeline takes one value for all folds.
E.g. the GE2E layer: folds 1, 3, 4 and 5 pick layer 2 on their own dev split, fold 2 picks layer 1
(``benchmarks/layer_per_fold.py``); a run of fold 2 alone at layer 1 replaces the grid's fold 2:

    python benchmarks/splice_folds.py --base results/emodb/results.json \\
        --fold 2=results/fold2_layer1/emodb/results.json --out results/layer_per_fold/emodb.json

Nothing is rerun and no number is typed in. The output reads like a pipeline run's results.json
(``compare_sets.py``, ``gan_targets.py``); its paired tests are left to those scripts. A cell kind
(downstream, source, arch, variant, budget, balance, seed) is kept only where every fold has it
after splicing; the dropped kinds are listed. Refused unless every run shares the settings that
make a cell, the layer aside (upstream, ER recipes, teacher pool, GAN configs and overrides,
downstream and GAN seeds), and each replaced fold has the same train size and test utterances in
both runs (its full-real cells), so the folds are the same folds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare_sets import pipeline_set  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.metrics import mean_std  # noqa: E402
from s3prl_dd.pipeline.records import per_fold  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json  # noqa: E402

SHARED = ("upstream", "er", "deep_er", "pool", "seeds", "gan_seeds")
SHARED_GAN = ("configs", "overrides")
KIND = ("downstream", "source", "arch", "variant", "ppc", "balance", "seed")


def kind(record: dict) -> tuple:
    return tuple(record.get(k) for k in KIND)


def parse_fold(text: str) -> tuple[int, Path]:
    fold, sep, path = text.partition("=")
    try:
        fold = int(fold)
    except ValueError:
        fold = None
    if not sep or fold is None or not path:
        raise UserError(f"--fold {text!r}: give FOLD=PATH, e.g. 2=results/fold2_layer1/emodb/results.json")
    return fold, Path(path)


def load_run(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"no results.json at {path}")
    result = json.loads(path.read_text())
    if not isinstance(result, dict) or not {"records", "config"} <= set(result):
        raise UserError(f"{path}: not a pipeline run's results.json")
    return result


def check_settings(base: dict, other: dict, where: str, archs: set) -> None:
    """The settings that make ``other``'s cells, its GANs' (``archs``) included, are the base run's."""
    a, b = base["config"], other["config"]
    differ = [k for k in SHARED if a.get(k) != b.get(k)]
    differ += [f"gan.{k}.{arch}" for k in SHARED_GAN for arch in sorted(archs)
               if a["gan"].get(k, {}).get(arch) != b["gan"].get(k, {}).get(arch)]
    if differ:
        raise UserError(f"{where} differs from the base run in {', '.join(differ)}: its cells are another recipe")


def real_cells(records: list[dict], fold: int) -> list[tuple]:
    return sorted((r["seed"], r["n_train"], r["test_labels"]) for r in records
                  if r["fold"] == fold and r["source"] == "real" and "test_labels" in r)


def splice(base: dict, replacements: dict[int, tuple[Path, dict]]) -> dict:
    folds = sorted(base["config"]["folds"])
    records = [r for r in base["records"] if r["fold"] not in replacements]
    layers = {f: base["config"]["layer"] for f in folds}
    for fold, (path, run) in sorted(replacements.items()):
        if fold not in folds:
            raise UserError(f"--fold {fold}: the base run has folds {folds}")
        mine = [r for r in run["records"] if r["fold"] == fold]
        if not mine:
            raise UserError(f"{path} has no cells of fold {fold}")
        check_settings(base, run, str(path), {r["arch"] for r in mine if r.get("arch")})
        theirs, ours = real_cells(base["records"], fold), real_cells(mine, fold)
        if not ours or [c[1:] for c in theirs[:1]] != [c[1:] for c in ours[:1]]:
            raise UserError(f"fold {fold}: {path}'s full-real cells differ from the base run's in train size or "
                            "test utterances (or are missing): not the same fold")
        records += mine
        layers[fold] = run["config"]["layer"]
    kinds_per_fold = [{kind(r) for r in records if r["fold"] == f} for f in folds]
    common = set.intersection(*kinds_per_fold)
    dropped = sorted({k for ks in kinds_per_fold for k in ks} - common, key=str)
    records = sorted((r for r in records if kind(r) in common), key=lambda r: (r["fold"], str(kind(r))))
    config = {**base["config"], "layer": layers}
    return {"records": records, "config": config,
            "spliced": {"base": base.get("_path"), "folds": {str(f): str(p) for f, (p, _) in sorted(replacements.items())},
                        "layer_per_fold": {str(f): layers[f] for f in folds},
                        "dropped_kinds": [dict(zip(KIND, k)) for k in dropped],
                        "fold_before_after": {str(f): fold_change(base["records"], records, f) for f in replacements},
                        "fold_before_after_dev": {str(f): fold_change(base["records"], records, f, "dev_uar")
                                                  for f in replacements},
                        "replaced_runs": {str(f): replaced_runs(records, f, base, run) for f, (_, run) in replacements.items()}},
            "n_cells": len(records)}


def set_means(records: list[dict], key: str = "test_uar") -> dict[tuple, dict[int, float]]:
    """(downstream, set, budget) -> fold -> mean of ``key`` over the fold's seeds: full real data and
    the balanced sets (Table 3's imbalanced sets are another question, as in compare_sets.py)."""
    sels = {(r["downstream"], pipeline_set(r), r["ppc"]): dict(downstream=r["downstream"], source=r["source"], arch=r["arch"],
                                                               variant=r["variant"], ppc=r["ppc"], balance=r["balance"])
            for r in records if r["balance"] == "balanced" or r["source"] == "real"}
    return {k: per_fold(records, key, **sel) for k, sel in sels.items()}


def fold_change(before: list[dict], after: list[dict], fold: int, key: str = "test_uar") -> dict:
    """A replaced fold's ``key`` per "downstream set budget", mean over its seeds: [base run, spliced]."""
    old, new = set_means(before, key), set_means(after, key)
    return {" ".join(map(str, k)): [old[k][fold], new[k][fold]] for k in new if fold in new[k] and fold in old.get(k, {})}


def replaced_runs(records: list[dict], fold: int, base: dict, run: dict) -> dict:
    """Did the replaced fold's ER runs stop on their own, and where did its GANs export (quick-eval
    dev UAR at the exported step, the base run's GAN of the same name beside it)?"""
    mine = [r for r in records if r["fold"] == fold]
    old = {g["gan"]: g for g in base.get("gans", [])}
    return {"er_runs": len(mine), "stopped_by_patience": sum(r["stopped"] == "patience" for r in mine),
            "max_best_step_fraction": max(r["best_step"] / r["steps"] for r in mine),
            "gans": {g["gan"]: {"best_dev_uar": [old[g["gan"]]["best_dev_uar"] if g["gan"] in old else None, g["best_dev_uar"]],
                                "best_step": g["best_step"], "steps": g["steps"], "train_seconds": g["train_seconds"]}
                     for g in run.get("gans", []) if f"-fold{fold}-" in g["gan"]}}


def uar_table(records: list[dict], downstream: str = "linear") -> str:
    """Test UAR, mean ± std over folds of each fold's mean over its seeds (balanced budgets)."""
    means = {(name, ppc): v for (ds, name, ppc), v in set_means(records).items() if ds == downstream}
    budgets = sorted({b for _, b in means if isinstance(b, int)})
    names = list(dict.fromkeys(n for n, _ in means))
    lines = ["| test UAR % | " + " | ".join(f"{b} ppc" for b in budgets) + " | full |", "|---" * (len(budgets) + 2) + "|"]
    for name in names:
        cells = [mean_std(list(means[(name, b)].values()), show_n=False) if len(means.get((name, b), {})) > 1 else "–"
                 for b in [*budgets, "full"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the pipeline results.json whose other folds are kept")
    p.add_argument("--fold", action="append", required=True, help="FOLD=PATH: this fold's cells from that results.json")
    p.add_argument("--out", required=True, help="the spliced results.json")
    a = p.parse_args(argv)
    base = {**load_run(Path(a.base)), "_path": a.base}
    replacements = {}
    for text in a.fold:
        fold, path = parse_fold(text)
        if fold in replacements:
            raise UserError(f"--fold {fold} given twice")
        replacements[fold] = (path, load_run(path))
    out = splice(base, replacements)
    atomic_write_json(out, Path(a.out))
    print(f"layer per fold: {out['spliced']['layer_per_fold']}; {out['n_cells']} cells, "
          f"{len(out['spliced']['dropped_kinds'])} cell kinds dropped (not in every fold)")
    for ds in sorted({r["downstream"] for r in out["records"]}):
        print(f"\n{ds}, test UAR over the spliced folds\n" + uar_table(out["records"], ds))
    for fold, change in out["spliced"]["fold_before_after"].items():
        print(f"\nfold {fold}, base run -> spliced (test UAR, mean over seeds): "
              + "; ".join(f"{k} {old:.1f} -> {new:.1f}" for k, (old, new) in change.items()))
        done = out["spliced"]["replaced_runs"][fold]
        print(f"fold {fold}'s ER runs: {done['stopped_by_patience']} of {done['er_runs']} stopped by dev patience, "
              f"best step at most {100 * done['max_best_step_fraction']:.0f} % of the run; GANs (quick-eval dev UAR, "
              "base run -> spliced, exported step): " + "; ".join(
                  f"{name} {'-' if old is None else f'{100 * old:.1f}'} -> {100 * new:.1f} at {g['best_step']}/{g['steps']}"
                  for name, g in done["gans"].items() for old, new in [g["best_dev_uar"]]))
    return 0


if __name__ == "__main__":
    run_main(main)
