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
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s3prl_dd.errors import run_main  # noqa: E402
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
    changed = {str(f): fold_change(base["records"], records, f) for f in sorted(replacements)}
    return {"records": records, "config": config,
            "spliced": {"base": base.get("_path"), "folds": {str(f): str(p) for f, (p, _) in sorted(replacements.items())},
                        "layer_per_fold": {str(f): layers[f] for f in folds},
                        "dropped_kinds": [dict(zip(KIND, k)) for k in dropped], "fold_before_after": changed},
            "n_cells": len(records)}


def fold_change(before: list[dict], after: list[dict], fold: int) -> dict:
    """A replaced fold's test UAR per (downstream, set, budget), mean over its seeds: [base run, spliced]."""
    def means(records):
        vals: dict[str, list] = {}
        for r in records:
            if r["fold"] == fold and (r["balance"] == "balanced" or r["source"] == "real"):
                vals.setdefault(f"{r['downstream']} {set_name(r)} {r['ppc']}", []).append(r["test_uar"])
        return {k: statistics.fmean(v) for k, v in vals.items()}
    old, new = means(before), means(after)
    return {k: [old[k], new[k]] for k in new if k in old}


def set_name(r: dict) -> str:
    if r.get("arch") is None:
        return r["source"]
    gan = f"{r['arch']}-{r['variant']}"
    return gan if r["source"] == "gan" else f"{r['source']}-{gan}"


def uar_table(records: list[dict], downstream: str = "linear") -> str:
    """Test UAR, mean ± std over folds of each fold's mean over its seeds (balanced budgets)."""
    cells: dict[tuple, dict[int, list]] = {}
    for r in records:
        if r["downstream"] != downstream or (r["balance"] != "balanced" and r["source"] != "real"):
            continue
        cells.setdefault((set_name(r), r["ppc"]), {}).setdefault(r["fold"], []).append(r["test_uar"])
    budgets = sorted({b for _, b in cells if isinstance(b, int)})
    names = list(dict.fromkeys(n for n, _ in cells))
    lines = ["| test UAR % | " + " | ".join(f"{b} ppc" for b in budgets) + " | full |", "|---" * (len(budgets) + 2) + "|"]
    for name in names:
        row = []
        for b in [*budgets, "full"]:
            per_fold = [statistics.fmean(v) for v in cells.get((name, b), {}).values()]
            row.append(f"{statistics.fmean(per_fold):.1f} ± {statistics.stdev(per_fold):.1f}" if len(per_fold) > 1 else "–")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
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
        print(f"\nfold {fold}, base run -> spliced (mean over seeds): "
              + "; ".join(f"{k} {old:.1f} -> {new:.1f}" for k, (old, new) in change.items()))
    return 0


if __name__ == "__main__":
    run_main(main)
