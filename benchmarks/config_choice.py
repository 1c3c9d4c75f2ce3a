"""Another GAN config against a pipeline run's, chosen per fold on that fold's dev split.

    python benchmarks/lambda_sweep.py --store runs/R/store --folds 1,2,3,4,5 --work runs/alt \
        --config downstream_configs/gan/gan_att_ssl_cpu.yaml --lambda-div 1 --lambda-sml 1 \
        -o "model.D=auto,,train.seed=0,,<the config change>" --pool-overrides "<the run's pool.overrides>" \
        --out runs/alt/sweep.json
    python benchmarks/config_choice.py --run runs/R --gan gan_att-div_sml-g0 --alt runs/alt/sweep.json \
        --work runs/alt_test --out benchmarks/results/<name>.json

The question "would a user do better with config B than with the grid's config A?" answered the
way a user could: per fold, the GAN with the better quick-eval dev UAR (the trainer's own
``best``: its fold's DEV split only) is kept, ties going to the grid's. Only then are test cells
run (``pipeline.cells.run_cell`` under the run's own config, so full real, random and grid-GAN
cells are the run's: ``benchmarks/same_cells.py`` can match them): full real data, a random real
subset, i.i.d. samples of the grid's GAN ("grid"), of the alternative ("alt", reported for every
fold whatever the choice) and of the fold's choice ("chosen"). The alternative must be the same
arch, variant and GAN seed, trained on the run's store with the run's teacher-pool recipe (one
GAN per fold, e.g. a one-pair ``lambda_sweep.py`` run). Comparisons are paired over folds (mean
Δ, 95 % t-interval, paired t p)."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lambda_sweep_test import print_summary, summarize  # noqa: E402
from truncation import add_test_args, cached, grid_config, keep_recipe, run_generators, test_job  # noqa: E402
from s3prl_dd.pipeline.cells import cell_key  # noqa: E402
from s3prl_dd.pipeline.config import gan_key  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json  # noqa: E402
from s3prl_dd.workers import init_worker  # noqa: E402

SETS = ("random", "grid", "alt", "chosen")
COMPARISONS = (("chosen", "grid"), ("chosen", "random"), ("alt", "grid"), ("grid", "random"), ("real", "chosen"))


def scored(generator: Path) -> dict:
    """A finished GAN run's exported generator and its dev score (the run's result.json)."""
    r = json.loads((generator.parent / "result.json").read_text())
    return {"generator": str(generator), "best_dev_uar": 100 * r["best_dev_uar"], "best_step": r["best_step"],
            "steps": r["step"], "train_seconds": r["train_seconds"]}


def alt_gans(sweep_json: Path) -> dict[int, dict]:
    sweep = json.loads(sweep_json.read_text())
    by_fold: dict[int, list] = {}
    for r in sweep["runs"]:
        by_fold.setdefault(r["fold"], []).append(r)
    if any(len(rs) > 1 for rs in by_fold.values()):
        raise UserError(f"{sweep_json} holds more than one GAN per fold: give a one-pair sweep")
    return {f: scored(Path(rs[0]["run_dir"]) / "generator.pt") for f, rs in by_fold.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a pipeline run directory")
    p.add_argument("--gan", required=True, help="ARCH-VARIANT-gSEED of --run's GANs, e.g. gan_att-div_sml-g0")
    p.add_argument("--alt", required=True, help="lambda_sweep.py JSON of the alternative: one GAN per fold")
    add_test_args(p)
    a = p.parse_args(argv)
    run = Path(a.run)
    found, arch, variant, gan_seed = run_generators(run, a.gan)
    grid, alt = {f: scored(g) for f, g in found.items()}, alt_gans(Path(a.alt))
    folds = sorted(set(grid) & set(alt))
    if not folds:
        raise UserError(f"no fold has both a finished {a.gan} GAN in {run} and a GAN in {a.alt}")
    choice = {f"fold{f}": "alt" if alt[f]["best_dev_uar"] > grid[f]["best_dev_uar"] else "grid" for f in folds}
    for f in folds:
        print(f"fold{f}: dev UAR grid {grid[f]['best_dev_uar']:.1f} (step {grid[f]['best_step']}), "
              f"alt {alt[f]['best_dev_uar']:.1f} (step {alt[f]['best_step']}) -> {choice[f'fold{f}']}", flush=True)
    dev_means = {n: statistics.fmean(g[f]["best_dev_uar"] for f in folds) for n, g in (("grid", grid), ("alt", alt))}
    print(f"mean dev UAR over folds: grid {dev_means['grid']:.1f}, alt {dev_means['alt']:.1f}", flush=True)
    budgets, seeds = [int(b) for b in a.budgets.split(",")], [int(s) for s in a.seeds.split(",")]
    store, work = str(run / "store"), Path(a.work)
    (work / "cells").mkdir(parents=True, exist_ok=True)
    keep_recipe(work, {"grid": {f"fold{f}": grid[f]["generator"] for f in folds},
                       "alt": {f"fold{f}": alt[f]["generator"] for f in folds}, "er_overrides": a.er_overrides})
    cfg = grid_config(store, a.er_overrides, run)
    base = {"downstream": "linear", "arch": None, "variant": None, "losses": [], "gan_seed": None, "balance": "balanced"}
    gan_cell = {**base, "source": "gan", "arch": arch, "variant": variant, "gan_seed": gan_seed}

    def job(name, cell, gens=None):
        return {"cfg": cfg, "store": store, "psi": None, "set": name, "cell": cell,
                "generators": {gan_key(arch, variant, cell["fold"], gan_seed): gens[cell["fold"]]["generator"]} if gens else {}}

    tests = []
    for f in folds:
        for s in seeds:
            tests.append(job("real", {**base, "fold": f, "seed": s, "source": "real", "ppc": "full", "balance": "imbalanced"}))
            for b in budgets:
                tests.append(job("random", {**base, "fold": f, "seed": s, "source": "random", "ppc": b}))
                cell = {**gan_cell, "fold": f, "seed": s, "ppc": b}
                tests += [job("grid", cell, grid), job("alt", cell, alt),
                          job("chosen", cell, alt if choice[f"fold{f}"] == "alt" else grid)]

    def path_of(t):  # the chosen cell is the grid's or the alternative's cell: it shares that one's file
        alt_cell = t["set"] == "alt" or (t["set"] == "chosen" and choice[f"fold{t['cell']['fold']}"] == "alt")
        return work / "cells" / f"{cell_key(t['cell'])}{'-alt' if alt_cell else ''}.json"

    with (ProcessPoolExecutor(a.workers, initializer=init_worker, initargs=(os.getpid(), 1)) if a.workers > 1
          else contextlib.nullcontext()) as pool:
        records = cached(pool, test_job, tests, path_of)
    records = [{**r, "set": t["set"]} for t, r in zip(tests, records)]
    summary = summarize(records, folds, budgets, SETS, COMPARISONS)
    atomic_write_json({"run": str(run), "gan": a.gan, "alt": a.alt, "folds": folds, "budgets": budgets, "seeds": seeds,
                       "grid_gans": grid, "alt_gans": alt, "dev_means": dev_means, "choice": choice,
                       "note": "choice: per fold, the GAN with the better quick-eval dev UAR (ties: grid); test never read for it",
                       "summary": summary, "records": records},
                      a.out)
    print(f"test runs stopped by dev patience: {sum(r['stopped'] == 'patience' for r in records)} of {len(records)}, "
          f"best dev step <= {max(r['best_step'] for r in records)}")
    print_summary(summary, SETS)


if __name__ == "__main__":
    main()
