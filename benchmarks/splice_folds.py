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

A test-result JSON of ``config_choice.py`` (GANs trained by ``lambda_sweep.py`` on a run's store,
tested under that run's recipe) is spliced the same way; the pipeline runs it names (``"run"``)
are given by their committed ``results.json`` (``--run-results``, matched by the run's name), so
that the layers and the run settings can be read and checked without the run directories:

    python benchmarks/splice_folds.py --base benchmarks/results/gan_att_long4k_3seeds_test.json \
        --fold 2=benchmarks/results/fold2_layer1/gan_att_long4k_3seeds_test.json \
        --run-results results/emodb_deep_distilled/results.json,results/fold2_layer1/emodb_deep_distilled/results.json \
        --out results/layer_per_fold/gan_att_long4k_3seeds_test.json

There the replaced fold must also share the base's GAN recipes (each alternative's and
Baseline's ``lambda_sweep.py`` JSON: config, overrides, λ5, λ6, teacher pool), sets, budgets and
downstream seeds; its choice and GANs replace the base's for that fold, and the summary (means and
paired tests over folds) is recomputed from the spliced records.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare_sets import pipeline_set  # noqa: E402
from lambda_sweep_test import fold_means, summarize  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.metrics import mean_std  # noqa: E402
from s3prl_dd.pipeline.records import per_fold  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json  # noqa: E402

SHARED = ("upstream", "er", "deep_er", "pool", "seeds", "gan_seeds")
TEST_SHARED = ("gan", "downstream", "budgets", "seeds")  # of a config_choice.py JSON
SWEEP_SHARED = ("config", "override", "lambda_div", "lambda_sml", "pool_profile", "pool_overrides")
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


def load_run(path: Path, tests: bool = False) -> dict:
    """A pipeline run's results.json, or (``tests``) also a config_choice.py test-result JSON."""
    if not path.is_file():
        raise UserError(f"no {'JSON' if tests else 'results.json'} at {path}")
    result = json.loads(path.read_text())
    if isinstance(result, dict) and {"records", "config"} <= set(result):
        return result
    if tests and is_test_result(result):
        return result
    raise UserError(f"{path}: not a pipeline run's results.json" + (" or a config_choice.py JSON" if tests else ""))


def is_test_result(result) -> bool:
    return isinstance(result, dict) and {"records", "folds", "budgets", "run", "choice"} <= set(result)


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
                  if r["fold"] == fold and r.get("source") == "real" and "test_labels" in r)


def fold_cells(base_records: list[dict], records: list[dict], fold: int, folds: list[int], path: Path) -> list[dict]:
    """``records``' cells of ``fold``, once it is one of the base's folds with the same full-real cells."""
    if fold not in folds:
        raise UserError(f"--fold {fold}: the base has folds {folds}")
    mine = [r for r in records if r["fold"] == fold]
    if not mine:
        raise UserError(f"{path} has no cells of fold {fold}")
    theirs, ours = real_cells(base_records, fold), real_cells(mine, fold)
    if not ours or [c[1:] for c in theirs[:1]] != [c[1:] for c in ours[:1]]:
        raise UserError(f"fold {fold}: {path}'s full-real cells differ from the base's in train size or "
                        "test utterances (or are missing): not the same fold")
    return mine


def splice(base: dict, replacements: dict[int, tuple[Path, dict]]) -> dict:
    folds = sorted(base["config"]["folds"])
    records = [r for r in base["records"] if r["fold"] not in replacements]
    layers = {f: base["config"]["layer"] for f in folds}
    for fold, (path, run) in sorted(replacements.items()):
        mine = fold_cells(base["records"], run["records"], fold, folds, path)
        check_settings(base, run, str(path), {r["arch"] for r in mine if r.get("arch")})
        records += mine
        layers[fold] = run["config"]["layer"]
    kinds_per_fold = [{kind(r) for r in records if r["fold"] == f} for f in folds]
    common = set.intersection(*kinds_per_fold)
    dropped = sorted({k for ks in kinds_per_fold for k in ks} - common, key=str)
    records = sorted((r for r in records if kind(r) in common), key=lambda r: (r["fold"], str(kind(r))))
    config = {**base["config"], "layer": layers}
    return {"records": records, "config": config, "gans": spliced_gans(base, replacements),
            "spliced": {"base": base.get("_path"), "folds": {str(f): str(p) for f, (p, _) in sorted(replacements.items())},
                        "layer_per_fold": {str(f): layers[f] for f in folds},
                        "dropped_kinds": [dict(zip(KIND, k)) for k in dropped],
                        "fold_before_after": {str(f): fold_change(base["records"], records, f) for f in replacements},
                        "fold_before_after_dev": {str(f): fold_change(base["records"], records, f, "dev_uar")
                                                  for f in replacements},
                        "replaced_runs": {str(f): replaced_runs(records, f, base, run) for f, (_, run) in replacements.items()}},
            "n_cells": len(records)}


def spliced_gans(base: dict, replacements: dict[int, tuple[Path, dict]]) -> list[dict]:
    """The runs' GAN summaries (quick-eval dev UAR, exported step), each fold's from the run its cells
    come from, so that a spliced run can still be compared on dev (``benchmarks/choose_per_fold.py``)."""
    kept = [g for g in base.get("gans", []) if not any(f"-fold{f}-" in g["gan"] for f in replacements)]
    return kept + [g for fold, (_, run) in sorted(replacements.items()) for g in run.get("gans", [])
                   if f"-fold{fold}-" in g["gan"]]


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
    old = {g["gan"]: g for g in base.get("gans", [])}
    return {**er_convergence([r for r in records if r["fold"] == fold]),
            "gans": {g["gan"]: {"best_dev_uar": [old[g["gan"]]["best_dev_uar"] if g["gan"] in old else None, g["best_dev_uar"]],
                                "best_step": g["best_step"], "steps": g["steps"], "train_seconds": g["train_seconds"]}
                     for g in run.get("gans", []) if f"-fold{fold}-" in g["gan"]}}


def er_convergence(runs: list[dict]) -> dict:
    """How many ER runs stopped on their own (dev patience), and their latest best step."""
    return {"er_runs": len(runs), "stopped_by_patience": sum(r["stopped"] == "patience" for r in runs),
            "max_best_step_fraction": max(r["best_step"] / r["steps"] for r in runs)}


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


def sweep_recipes(result: dict, field: str, where: str) -> list[dict]:
    """The GAN recipe of each ``lambda_sweep.py`` JSON a config_choice.py JSON names in ``field``."""
    recipes = []
    for name in filter(None, (result.get(field) or "").split(",")):
        path = next((q for q in (Path(name), ROOT / name) if q.is_file()), None)
        if path is None:
            raise UserError(f"{where}: its {field} sweep {name} is missing: the GAN recipes cannot be compared")
        sweep = json.loads(path.read_text())
        recipes.append({k: sweep.get(k) for k in SWEEP_SHARED})
    return recipes


def run_config(result: dict, runs: dict[str, dict], where: str) -> dict:
    name = Path(result["run"]).name
    if name not in runs:
        raise UserError(f"{where} was tested under the pipeline run {result['run']}: give that run's results.json "
                        f"with --run-results (given: {', '.join(sorted(runs)) or 'none'})")
    return runs[name]["config"]


def set_cells(records: list[dict], fold: int) -> set:
    return {(r["set"], r["ppc"], r["seed"]) for r in records if r["fold"] == fold}


def splice_tests(base: dict, replacements: dict[int, tuple[Path, dict]], runs: dict[str, dict]) -> dict:
    """``splice`` for config_choice.py JSONs: the same checks, plus the GAN recipes of the sweeps."""
    if "draws" in base:
        raise UserError("a JSON with dev draws (--draws) holds per-fold selections this splice does not rebuild")
    folds, base_cfg = sorted(base["folds"]), run_config(base, runs, "--base")
    records = [r for r in base["records"] if r["fold"] not in replacements]
    layers = {f: base_cfg["layer"] for f in folds}
    out = {k: v for k, v in base.items() if k not in ("summary", "dev_means", "records", "_path")}
    gan_keys = [k for k in base if k.endswith("_gans")]
    for fold, (path, other) in sorted(replacements.items()):
        mine = fold_cells(base["records"], other["records"], fold, folds, path)
        differ = [k for k in TEST_SHARED if base.get(k) != other.get(k)]
        differ += [f"{f} sweeps" for f in ("alt", "baseline")
                   if sweep_recipes(base, f, "--base") != sweep_recipes(other, f, str(path))]
        differ += [] if set_cells(base["records"], fold) == set_cells(mine, fold) else ["sets"]
        differ += [] if set(gan_keys) == {k for k in other if k.endswith("_gans")} else ["GANs"]
        if differ:
            raise UserError(f"{path} differs from the base JSON in {', '.join(differ)}: its cells are another recipe")
        other_cfg = run_config(other, runs, str(path))
        check_settings({"config": base_cfg}, {"config": other_cfg}, f"{path}'s run {other['run']}",
                       {r["arch"] for r in mine if r.get("arch")})
        records += mine
        layers[fold] = other_cfg["layer"]
        out["choice"] = {**out["choice"], f"fold{fold}": other["choice"][f"fold{fold}"]}
        for k in gan_keys:
            out[k] = {**out[k], str(fold): other[k][str(fold)]}
    records.sort(key=lambda r: (r["fold"], str(r["ppc"]), r["set"], r["seed"]))
    return {**out, **summarised(out, records), "records": records,
            "spliced": {"base": base.get("_path"), "folds": {str(f): str(p) for f, (p, _) in sorted(replacements.items())},
                        "layer_per_fold": {str(f): layers[f] for f in folds},
                        "fold_before_after": {str(f): set_change(base["records"], records, f) for f in replacements},
                        "replaced_runs": {str(f): tested_runs(base, out, records, f) for f in replacements}}}


def summarised(result: dict, records: list[dict]) -> dict:
    """config_choice.py's dev means and summary, recomputed over the spliced folds."""
    from config_choice import sets_and_comparisons  # torch and the trainers: only for this kind of JSON

    names = [k[:-5] for k in result if k.startswith("alt") and k.endswith("_gans")]
    bases = [k[:-5] for k in result if k.startswith("baseline") and k.endswith("_gans")]
    sets, comparisons = sets_and_comparisons(names, False, any(r["set"] == "alt_mean" for r in records), bases)
    folds = sorted(result["folds"])
    dev_means = {n: statistics.fmean(result[f"{n}_gans"][str(f)]["best_dev_uar"] for f in folds) for n in ["grid", *names]}
    return {"dev_means": dev_means, "summary": summarize(records, folds, result["budgets"], sets, comparisons)}


def set_change(before: list[dict], after: list[dict], fold: int) -> dict:
    """A replaced fold's test UAR per "set budget", mean over its downstream seeds: [base, spliced]."""
    kinds = dict.fromkeys((r["set"], r["ppc"]) for r in after if r["fold"] == fold)
    pairs = {f"{n} {b}": [fold_means(before, n, b).get(fold), fold_means(after, n, b)[fold]] for n, b in kinds}
    return {k: v for k, v in pairs.items() if v[0] is not None}


def tested_runs(base: dict, spliced: dict, records: list[dict], fold: int) -> dict:
    """The replaced fold's ER convergence and its GANs' exports (dev UAR: base, spliced)."""
    runs = [r for r in records if r["fold"] == fold and "stopped" in r]  # alt_mean rows are averages, not runs
    return {**er_convergence(runs),
            "gans": {k[:-5]: {"best_dev_uar": [base[k][str(fold)]["best_dev_uar"], g["best_dev_uar"]],
                              **{x: g[x] for x in ("best_step", "steps", "train_seconds")}}
                     for k in base if k.endswith("_gans") for g in [spliced[k][str(fold)]]}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the pipeline results.json (or config_choice.py JSON) whose other folds are kept")
    p.add_argument("--fold", action="append", required=True, help="FOLD=PATH: this fold's cells from that JSON")
    p.add_argument("--run-results", default="",
                   help="config_choice.py JSONs only: the committed results.json of each pipeline run they name, comma-separated")
    p.add_argument("--out", required=True, help="the spliced JSON")
    a = p.parse_args(argv)
    base = {**load_run(Path(a.base), tests=True), "_path": a.base}
    tests = is_test_result(base)
    replacements = {}
    for text in a.fold:
        fold, path = parse_fold(text)
        if fold in replacements:
            raise UserError(f"--fold {fold} given twice")
        other = load_run(path, tests=tests)
        if is_test_result(other) != tests:
            raise UserError(f"{path} and --base {a.base} are not the same kind of JSON")
        replacements[fold] = (path, other)
    if tests:
        runs = {r["config"]["name"]: r for r in (load_run(Path(q)) for q in filter(None, a.run_results.split(",")))}
        out = splice_tests(base, replacements, runs)
    elif a.run_results:
        raise UserError("--run-results is for config_choice.py JSONs; a pipeline results.json holds its own config")
    else:
        out = splice(base, replacements)
    atomic_write_json(out, Path(a.out))
    print_spliced(out, tests)
    return 0


def print_spliced(out: dict, tests: bool) -> None:
    print(f"layer per fold: {out['spliced']['layer_per_fold']}; {len(out['records'])} records"
          + ("" if tests else f", {len(out['spliced']['dropped_kinds'])} cell kinds dropped (not in every fold)"))
    if tests:
        for b, s in out["summary"]["by_budget"].items():
            print(f"{b:>3} ppc, test UAR over the spliced folds: "
                  + ", ".join(f"{n} {v['mean']:.1f} ± {v['std']:.1f}" for n, v in s["sets"].items()))
    else:
        for ds in sorted({r["downstream"] for r in out["records"]}):
            print(f"\n{ds}, test UAR over the spliced folds\n" + uar_table(out["records"], ds))
    scale = 1 if tests else 100  # config_choice.py keeps dev UAR in %, the pipeline as a fraction
    for fold, change in out["spliced"]["fold_before_after"].items():
        print(f"\nfold {fold}, base -> spliced (test UAR, mean over seeds): "
              + "; ".join(f"{k} {old:.1f} -> {new:.1f}" for k, (old, new) in change.items()))
        done = out["spliced"]["replaced_runs"][fold]
        print(f"fold {fold}'s ER runs: {done['stopped_by_patience']} of {done['er_runs']} stopped by dev patience, "
              f"best step at most {100 * done['max_best_step_fraction']:.0f} % of the run; GANs (quick-eval dev UAR, "
              "base -> spliced, exported step): " + "; ".join(
                  f"{name} {'-' if old is None else f'{scale * old:.1f}'} -> {scale * new:.1f} at {g['best_step']}/{g['steps']}"
                  for name, g in done["gans"].items() for old, new in [g["best_dev_uar"]]))


if __name__ == "__main__":
    run_main(main)
