"""Other GAN configs against a pipeline run's, chosen per fold on that fold's dev split.

    python benchmarks/lambda_sweep.py --store runs/R/store --folds 1,2,3,4,5 --work runs/alt \
        --config downstream_configs/gan/gan_att_ssl_cpu.yaml --lambda-div 1 --lambda-sml 1 \
        -o "model.D=auto,,train.seed=0,,<the config change>" --pool-overrides "<the run's pool.overrides>" \
        --out runs/alt/sweep.json
    python benchmarks/config_choice.py --run runs/R --gan gan_att-div_sml-g0 --alt runs/alt/sweep.json \
        --work runs/alt_test --out benchmarks/results/<name>.json

``--alt`` takes several sweeps, comma-separated (named alt, alt2, alt3, ... in the output): each
fold then keeps the best of the grid's GAN and all alternatives (ties: the grid's, then the
earlier alternative), and each alternative is also reported for every fold and against the one
before it (e.g. the same config trained longer).

``--draws N`` adds a second, less noisy selection ("chosen_dev"), the one ``truncation.py`` uses
for ψ: per fold AND budget, the linear ER model (``converge`` recipe) is trained on N fresh sample
sets of each GAN (sampling and ER seeds 100, 101, ...: never the test cells' seeds) and scored on
the fold's dev split only; the GAN with the best mean dev UAR is kept (ties as above). A
trainer's quick evaluation, by contrast, is 3 draws at one budget and its best over 8-16 steps.

``--average``: the alternatives are GAN seeds of one config; their mean test UAR per fold and
budget is reported too ("alt_mean"), so generator variance sits inside each fold's value and the
fold stays the unit of the paired tests.

``--baseline``: one sweep per alternative, in the same order, of its Baseline (the same config and
GAN seed with λ5 = λ6 = 0: the paper's Table 2 comparison). Baselines are tested ("baseline",
"baseline2", ...; with ``--average`` also "baseline_mean") and paired with their alternative, but
are never candidates of a choice.

``--reuse JSON``: an earlier config_choice.py JSON of the same run and downstream (e.g. the one that
tested the alternatives before their GAN runs were deleted). A GAN whose run is gone is read from it
(its generator path and fold), and every test record it holds is taken instead of rerun: full real
data and random subsets by cell, a GAN's cells only where the GAN is the same (generator, dev
score, exported step; a GAN retrained at the same path is tested anew). So Baselines trained later
can be tested and paired with alternatives whose checkpoints are no longer on the machine.

``--downstream deep`` tests every set with s3prl's DeepModel (the run's ``deep_er`` recipe) instead
of the linear model; choices are still made on the quick evaluation (``--draws`` trains linear
models, so it is linear only). Cells the run itself already holds under the same recipe (full
real, random, the grid's GAN: ``pipeline.cells.is_done``) are copied into ``--work``, not rerun: on
one machine a rerun gives the same record (``benchmarks/same_cells.py``).

The question "would a user do better with config B than with the grid's config A?" answered the
way a user could: per fold, the GAN with the best quick-eval dev UAR (the trainer's own
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
import shutil
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lambda_sweep_test import print_summary, summarize  # noqa: E402
from truncation import (SELECTION_SEED, add_test_args, cached, dev_score, grid_config, keep_recipe,  # noqa: E402
                        print_stopping, run_generators, test_job)
from s3prl_dd.pipeline.cells import cell_key, cell_recipe, is_done  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.pipeline.config import gan_key  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json  # noqa: E402
from s3prl_dd.workers import init_worker  # noqa: E402


def numbered(stem: str, n: int) -> list[str]:
    """alt, alt2, alt3, ... (or baseline, baseline2, ...): the output names of n sweeps."""
    return [stem] + [f"{stem}{k}" for k in range(2, n + 1)]


def sets_and_comparisons(names: list[str], on_draws: bool = False, average: bool = False,
                         baselines: list[str] = ()) -> tuple[tuple, tuple]:
    steps = [(b, a) for a, b in zip(names, names[1:])]  # each alternative against the one before it
    dev = ((("chosen_dev", "random"), ("chosen_dev", "grid"), ("chosen_dev", "chosen"), ("real", "chosen_dev"))
           if on_draws else ())
    mean = (("alt_mean", "random"), ("alt_mean", "grid"), ("real", "alt_mean")) if average else ()
    base = (*zip(names, baselines), *((b, "random") for b in baselines))
    base_mean = (("alt_mean", "baseline_mean"), ("baseline_mean", "random")) if average and baselines else ()
    return (("random", "grid", *names, "chosen") + (("chosen_dev",) if on_draws else ())
            + (("alt_mean",) if average else ()) + tuple(baselines) + (("baseline_mean",) if base_mean else ()),
            (("chosen", "grid"), ("chosen", "random"), *((n, "grid") for n in names),
             *((n, "random") for n in names), *steps, *dev,
             ("grid", "random"), ("real", "chosen"), *(("real", n) for n in names), *mean, *base, *base_mean))


def mean_over_alternatives(records: list[dict], names: list[str], as_set: str = "alt_mean") -> list[dict]:
    """One ``as_set`` record per (fold, budget, downstream seed): the named sets' mean test UAR."""
    groups: dict = {}
    for r in records:
        if r["set"] in names:
            groups.setdefault((r["fold"], r["ppc"], r["seed"]), []).append(r["test_uar"])
    return [{"set": as_set, "fold": f, "ppc": b, "seed": s, "test_uar": statistics.fmean(v), "n_gans": len(v)}
            for (f, b, s), v in groups.items()]


def best(scores: dict[str, float]) -> str:
    """The name with the best score; ties go to the earlier name (the grid's first)."""
    names = list(scores)
    return max(names, key=lambda n: (round(scores[n], 6), -names.index(n)))


def choose(candidates: dict[str, dict], fold: int) -> str:
    """The GAN whose trainer's quick evaluation scored best on the fold's dev split."""
    return best({n: g[fold]["best_dev_uar"] for n, g in candidates.items()})


def choose_on_draws(scores: list[dict], names: list[str], fold: int, ppc: int) -> str:
    """The GAN with the best mean dev UAR over the selection draws of (fold, budget)."""
    return best({n: statistics.fmean(s["dev_uar"] for s in scores if s["set"] == n and s["fold"] == fold
                                      and s["ppc"] == ppc) for n in names})


def copy_run_cells(tests: list[dict], path_of, run_cells: Path) -> int:
    """Copy the run's own records of the unsuffixed cells (real, random, its GAN's) whose recipe is
    this job's; returns how many."""
    n = 0
    for t in tests:
        dst = path_of(t)
        if not dst.is_file() and dst.stem == cell_key(t["cell"]) and is_done(t["cell"], t["cfg"], run_cells):
            shutil.copyfile(run_cells / dst.name, dst)
            n += 1
    return n


def scored(generator: Path, fold: int | None = None, reuse: dict | None = None) -> dict:
    """A finished GAN run's exported generator and its dev score (the run's result.json); where the
    run is gone, the entry a ``--reuse`` JSON holds for that generator and fold."""
    result = generator.parent / "result.json"
    if not result.is_file():
        hit = reuse["gans"].get((str(generator), fold)) if reuse else None
        if hit is None:
            raise UserError(f"{generator}: its GAN run is gone (no {result}); rerun its sweep, or give --reuse "
                            "with the config_choice.py JSON that tested it")
        return {**hit[1], "reused_from": reuse["path"]}
    r = json.loads(result.read_text())
    return {"generator": str(generator), "best_dev_uar": 100 * r["best_dev_uar"], "best_step": r["best_step"],
            "steps": r["step"], "train_seconds": r["train_seconds"]}


def alt_gans(sweep_json: Path, reuse: dict | None = None) -> dict[int, dict]:
    sweep = json.loads(sweep_json.read_text())
    by_fold: dict[int, list] = {}
    for r in sweep["runs"]:
        by_fold.setdefault(r["fold"], []).append(r)
    if any(len(rs) > 1 for rs in by_fold.values()):
        raise UserError(f"{sweep_json} holds more than one GAN per fold: give a one-pair sweep")
    return {f: scored(Path(rs[0]["run_dir"]) / "generator.pt", f, reuse) for f, rs in by_fold.items()}


SAME_GAN = ("best_dev_uar", "best_step", "steps")


def load_reuse(path: str, run: Path, downstream: str) -> dict:
    """An earlier config_choice.py JSON of the same pipeline run and downstream: its GANs, by
    (generator, fold), and its test records, by (set, fold, budget, seed)."""
    if not Path(path).is_file():
        raise UserError(f"--reuse: no JSON at {path}")
    old = json.loads(Path(path).read_text())
    if not isinstance(old, dict) or not {"run", "records", "downstream"} <= set(old):
        raise UserError(f"--reuse: {path} is not a config_choice.py JSON")
    if Path(old["run"]).name != run.name or old["downstream"] != downstream:
        raise UserError(f"--reuse: {path} tested under {old['run']} with {old['downstream']}, not {run} with {downstream}")
    gans = {(g["generator"], int(f)): (k[:-5], g) for k in old if k.endswith("_gans") for f, g in old[k].items()}
    records = {(r["set"], r["fold"], str(r["ppc"]), r["seed"]): r for r in old["records"] if "stopped" in r}
    return {"path": path, "gans": gans, "records": records}


def reuse_cells(tests: list[dict], tested: dict, path_of, reuse: dict) -> int:
    """Write the --reuse JSON's record of every test it holds into this job's cell file: full real
    data and random subsets by cell, a GAN's cells only where it is the same GAN (generator, fold,
    dev score, exported step), so a retrained GAN at the same path is tested anew; each only under
    this job's cell recipe (upstream, layer, ER recipe, GAN config). Returns how many."""
    n, gone = 0, []
    for t in tests:
        name, c, dst = t["set"], t["cell"], path_of(t)
        if dst.is_file() or name in ("chosen", "chosen_dev"):   # a chosen cell is its GAN's file
            continue
        g = tested.get(name, {}).get(c["fold"], {})
        if name not in ("real", "random"):
            hit = reuse["gans"].get((g["generator"], c["fold"]))
            if hit is None or any(hit[1].get(k) != g.get(k) for k in SAME_GAN):
                continue
            name = hit[0]
        old = reuse["records"].get((name, c["fold"], str(c["ppc"]), c["seed"]))
        if old is not None and old.get("recipe") == cell_recipe(c, t["cfg"]):   # the same ER recipe
            atomic_write_json({**old, "reused_from": reuse["path"]}, dst)
            n += 1
        elif "reused_from" in g:
            gone.append(dst.stem)
    if gone:
        raise UserError(f"{len(gone)} cell(s) of GANs whose runs are gone are not in {reuse['path']} under this "
                        f"recipe (e.g. {gone[0]}): they cannot be tested")
    return n


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a pipeline run directory")
    p.add_argument("--gan", required=True, help="ARCH-VARIANT-gSEED of --run's GANs, e.g. gan_att-div_sml-g0")
    p.add_argument("--alt", required=True,
                   help="lambda_sweep.py JSON(s) of the alternative(s), comma-separated: one GAN per fold each")
    p.add_argument("--draws", type=int, default=0, help="dev draws per (fold, budget, GAN) for chosen_dev (0: none)")
    p.add_argument("--average", action="store_true", help="the alternatives are GAN seeds: report their mean too")
    p.add_argument("--baseline", help="lambda_sweep.py JSON(s) of each alternative's Baseline (λ5 = λ6 = 0), "
                                      "comma-separated, in --alt's order: tested and paired, never chosen")
    p.add_argument("--downstream", choices=("linear", "deep"), default="linear",
                   help="the ER model of the test cells (deep: s3prl's DeepModel, the run's deep_er recipe)")
    p.add_argument("--reuse", help="an earlier config_choice.py JSON of the same run and downstream: GANs whose "
                                   "runs are gone are read from it, and every test record it holds is taken, not rerun")
    add_test_args(p)
    a = p.parse_args(argv)
    if a.draws and a.downstream != "linear":
        p.error("--draws selects with linear models: use it with --downstream linear")
    run = Path(a.run)
    found, arch, variant, gan_seed = run_generators(run, a.gan)
    sweeps = a.alt.split(",")
    names = numbered("alt", len(sweeps))
    base_sweeps = a.baseline.split(",") if a.baseline else []
    if base_sweeps and len(base_sweeps) != len(sweeps):
        raise UserError(f"--baseline gives {len(base_sweeps)} sweep(s) for {len(sweeps)} --alt: one per alternative")
    bases = numbered("baseline", len(base_sweeps)) if base_sweeps else []
    sets, comparisons = sets_and_comparisons(names, a.draws > 0, a.average, bases)
    reuse = load_reuse(a.reuse, run, a.downstream) if a.reuse else None
    gans = {"grid": {f: scored(g) for f, g in found.items()}, **{n: alt_gans(Path(s), reuse) for n, s in zip(names, sweeps)}}
    tested = {**gans, **{n: alt_gans(Path(s), reuse) for n, s in zip(bases, base_sweeps)}}  # gans: the candidates
    folds = sorted(set.intersection(*(set(g) for g in tested.values())))
    if not folds:
        raise UserError(f"no fold has both a finished {a.gan} GAN in {run} and a GAN in each of {a.alt}")
    choice = {f"fold{f}": choose(gans, f) for f in folds}
    for f in folds:
        line = ", ".join(f"{n} {g[f]['best_dev_uar']:.1f} (step {g[f]['best_step']})" for n, g in gans.items())
        print(f"fold{f}: quick-eval dev UAR {line} -> {choice[f'fold{f}']}", flush=True)
    dev_means = {n: statistics.fmean(g[f]["best_dev_uar"] for f in folds) for n, g in gans.items()}
    print("mean dev UAR over folds: " + ", ".join(f"{n} {m:.1f}" for n, m in dev_means.items()), flush=True)
    budgets, seeds = [int(b) for b in a.budgets.split(",")], [int(s) for s in a.seeds.split(",")]
    store, work = str(run / "store"), Path(a.work)
    for d in ("dev", "cells"):
        (work / d).mkdir(parents=True, exist_ok=True)
    keep_recipe(work, {**{n: {f"fold{f}": g[f]["generator"] for f in folds} for n, g in tested.items()},
                       "er_overrides": a.er_overrides})
    cfg = grid_config(store, a.er_overrides, run)
    base = {"downstream": a.downstream, "arch": None, "variant": None, "losses": [], "gan_seed": None, "balance": "balanced"}
    gan_cell = {**base, "source": "gan", "arch": arch, "variant": variant, "gan_seed": gan_seed}

    def job(name, cell, gens=None):
        return {"cfg": cfg, "store": store, "psi": None, "set": name, "cell": cell,
                "generators": {gan_key(arch, variant, cell["fold"], gan_seed): gens[cell["fold"]]["generator"]} if gens else {}}

    def picked(t) -> str:  # the GAN a chosen cell is: it shares that GAN's cell file
        f = f"fold{t['cell']['fold']}"
        if t["set"] == "chosen":
            return choice[f]
        return dev_choice[f][str(t["cell"]["ppc"])] if t["set"] == "chosen_dev" else t["set"]

    def path_of(t):
        name = picked(t)
        return work / "cells" / f"{cell_key(t['cell'])}{'-' + name if name in names + bases else ''}.json"

    with (ProcessPoolExecutor(a.workers, initializer=init_worker, initargs=(os.getpid(), 1)) if a.workers > 1
          else contextlib.nullcontext()) as pool:
        dev_choice, scores = {}, []
        if a.draws:
            draws = [{**job(n, {**gan_cell, "fold": f, "ppc": b, "seed": SELECTION_SEED + d}, g), "draw": d}
                     for f in folds for b in budgets for n, g in gans.items() for d in range(a.draws)]
            scores = cached(pool, dev_score, draws, lambda j: work / "dev" / (
                f"fold{j['cell']['fold']}-ppc{j['cell']['ppc']}-{j['set']}-d{j['draw']}.json"))
            scores = [{**s, "set": j["set"]} for j, s in zip(draws, scores)]
            dev_choice = {f"fold{f}": {str(b): choose_on_draws(scores, list(gans), f, b) for b in budgets} for f in folds}
            print("chosen on dev draws (fold: per budget):", json.dumps(dev_choice), flush=True)
            print("mean dev UAR over folds and draws (GAN: per budget):", json.dumps(
                {n: {b: round(statistics.fmean(s["dev_uar"] for s in scores if s["set"] == n and s["ppc"] == b), 1)
                     for b in budgets} for n in gans}), flush=True)
        tests = []
        for f in folds:
            for s in seeds:
                tests.append(job("real", {**base, "fold": f, "seed": s, "source": "real", "ppc": "full",
                                          "balance": "imbalanced"}))
                for b in budgets:
                    tests.append(job("random", {**base, "fold": f, "seed": s, "source": "random", "ppc": b}))
                    cell = {**gan_cell, "fold": f, "seed": s, "ppc": b}
                    tests += [job(n, cell, g) for n, g in tested.items()]
                    tests += [job(c, cell, gans[picked({"set": c, "cell": cell})])
                              for c in ("chosen", "chosen_dev") if c in sets]
        if reuse:
            print(f"{reuse_cells(tests, tested, path_of, reuse)} cell(s) taken from {reuse['path']}", flush=True)
        print(f"{copy_run_cells(tests, path_of, run / 'cells')} cell(s) copied from {run / 'cells'}", flush=True)
        records = cached(pool, test_job, tests, path_of)
    records = [{**r, "set": t["set"]} for t, r in zip(tests, records)]
    if a.average:
        records += mean_over_alternatives(records, names)
        if bases:
            records += mean_over_alternatives(records, bases, "baseline_mean")
    summary = summarize(records, folds, budgets, sets, comparisons)
    atomic_write_json({"run": str(run), "gan": a.gan, "alt": a.alt, **({"baseline": a.baseline} if a.baseline else {}),
                       **({"reuse": a.reuse} if a.reuse else {}),
                       "downstream": a.downstream, "folds": folds, "budgets": budgets, "seeds": seeds,
                       **{f"{n}_gans": g for n, g in tested.items()},
                       "dev_means": dev_means, "choice": choice,
                       "note": "choice: per fold, the GAN with the best quick-eval dev UAR (ties: grid, then the earlier alt); "
                               "test never read for it",
                       **({"draws": a.draws, "selection_seed": SELECTION_SEED, "dev_choice": dev_choice,
                           "dev_scores": scores} if a.draws else {}),
                       "summary": summary, "records": records},
                      a.out)
    if scores:
        print_stopping("dev", scores)
    print_stopping("test", [r for r in records if "stopped" in r])  # alt_mean rows are averages, not runs
    print_summary(summary, sets)


if __name__ == "__main__":
    run_main(main)
