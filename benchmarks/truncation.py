"""The truncation trick for distilled generators, chosen per fold and budget on that fold's dev.

    python benchmarks/truncation.py --sweep benchmarks/results/lambda_sweep_att.json \
        --work runs/truncation_att --out benchmarks/results/truncation_att.json
    python benchmarks/truncation.py --run runs/emodb_seed2 --gan gan_mlp-div_sml-g2 --seeds 2 \
        --work runs/truncation_mlp --out benchmarks/results/truncation_mlp.json

I.i.d. samples drawn from noise ψ·ε instead of ε (``distill.herding.gan_iid``'s ``truncation``;
BigGAN's trick in its simplest form) trade spread for typicality. Which ψ a budget wants is an
empirical question, so it is answered inside each fold: for every (budget, ψ) the linear SUPERB
ER model (``converge`` recipe) is trained on ``--draws`` fresh sample sets (sampling and ER seeds
100, 101, ...: never the test cells' seeds) and scored on the fold's **dev** split only; the ψ
with the best mean dev UAR is kept (ties: the larger ψ, i.e. the plainer sampling). Only then
are the pipeline's own test cells run (``pipeline.cells.run_cell``, test seed(s) ``--seeds``):
full real data, a random real subset, plain samples (ψ = 1) and samples at the chosen ψ.

Generators: ``--sweep`` takes each fold's GAN chosen by a λ sweep (``benchmarks/lambda_sweep.py``;
a one-pair sweep: its only GAN per fold); ``--run R --gan ARCH-VARIANT-gSEED`` takes a pipeline
run's GANs. ``--sweep S --run R`` tests S's GANs under R's own cell recipe, so the real and random
cells are R's (and ``compare_sets.py`` can pair this JSON with R's other test JSONs). Comparisons
are paired over folds (mean Δ, 95 % t-interval, paired t p)."""
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

from lambda_sweep_test import print_summary, summarize, sweep_config  # noqa: E402  (same tables)
from s3prl_dd.pipeline.cells import _open_store, cell_key, run_cell, training_set  # noqa: E402
from s3prl_dd.pipeline.config import DEFAULTS, gan_key  # noqa: E402
from s3prl_dd.pipeline.run import finished_generator  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json, load_yaml, merge_config  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.workers import init_worker  # noqa: E402

SELECTION_SEED = 100  # sampling + ER seed of the first dev draw; test cells use --seeds (0, ...)
SETS = ("random", "plain", "truncated")
COMPARISONS = (("truncated", "plain"), ("truncated", "random"), ("plain", "random"), ("real", "truncated"))


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def generators(a) -> tuple[dict[int, Path], str, str, int, str]:
    """fold -> generator.pt, and the GANs' (arch, variant, gan seed, store)."""
    if a.sweep:
        sweep = json.loads(Path(a.sweep).read_text())
        gens = {int(k[4:]): Path(c["run_dir"]) / "generator.pt" for k, c in sweep["choice"].items()}
        store = a.store or sweep["store"]
        if a.run and Path(store).resolve() != (Path(a.run) / "store").resolve():
            raise UserError(f"{a.sweep}'s GANs were trained on {store}, not on {a.run}/store: "
                            "its cells would test another store")
        cfg = sweep_config(sweep)
        return gens, cfg["model"]["arch"], "div_sml", int(cfg["train"]["seed"]), store
    gens, arch, variant, gan_seed = run_generators(Path(a.run), a.gan)
    return gens, arch, variant, gan_seed, a.store or str(Path(a.run) / "store")


def run_generators(run: Path, gan: str) -> tuple[dict[int, Path], str, str, int]:
    """fold -> the finished generator of a pipeline run's GAN ``ARCH-VARIANT-gSEED``, and its
    (arch, variant, gan seed); folds whose GAN has not finished are left out."""
    arch, variant, seed = gan.rsplit("-", 2)
    gan_seed = int(seed.lstrip("g"))
    found = {f: finished_generator(run / "gans" / gan_key(arch, variant, f, gan_seed))
             for f in load_yaml(run / "config.yaml")["folds"]}
    gens = {f: g for f, g in found.items() if g is not None}
    if not gens:
        raise UserError(f"{run}/gans holds no finished {gan} generator")
    return gens, arch, variant, gan_seed


def keep_recipe(work: Path, recipe: dict) -> None:
    """``work`` caches the results of one recipe (generators, store, ER overrides): another
    recipe needs another directory. Recipes that agree on every entry they share, down to a
    fold's generator, share it: one adds or leaves out a set of generators, or folds (so folds
    can be run as their GANs finish); no cached result's inputs changed."""
    path = work / "recipe.json"
    new = json.loads(json.dumps(recipe))
    if path.is_file():
        old = json.loads(path.read_text())
        if not agrees(old, new):
            raise UserError(f"{work} holds results of another recipe ({path}); use a new --work")
        new = merged(old, new)
    atomic_write_json(new, path)


def agrees(old, new) -> bool:
    if isinstance(old, dict) and isinstance(new, dict):
        return all(agrees(v, new[k]) for k, v in old.items() if k in new)
    return old == new


def merged(old, new):
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{k: merged(old[k], v) if k in old else v for k, v in new.items()}}
    return new


def add_test_args(p: argparse.ArgumentParser) -> None:
    """The test cells' options (shared with config_choice.py)."""
    p.add_argument("--budgets", default="1,2,5,10,20")
    p.add_argument("--seeds", default="0", help="test cells' downstream seeds")
    p.add_argument("--er-overrides", help="over the converge ER recipe (for dev runs too, where there are any)")
    p.add_argument("--workers", type=int, default=2, help="processes (1: run in this one)")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)


def grid_config(store: str, er_overrides, run: Path | None = None) -> dict:
    """The pipeline config these cells belong to: ``run``'s own (so its GAN cells keep their
    recipe fingerprints, and same_cells.py can match them), else the store's upstream and layer;
    always the converge ER recipe (+ ``er_overrides``)."""
    meta = _open_store(store).meta
    base = load_yaml(run / "config.yaml") if run else {
        "name": "truncation", "upstream": meta["upstream"], "layer": meta["representation"].get("layer")}
    return merge_config(DEFAULTS, {**base, "er": {"profile": "converge", "overrides": er_overrides}})


def context(job: dict) -> dict:
    """The pipeline's cell context for a job; plain sampling (ψ = 1) keeps the grid's recipe."""
    cfg = job["cfg"] if job["psi"] in (None, 1.0) else merge_config(
        job["cfg"], {"distill": {"gan": {"truncation": job["psi"]}}})
    return {"cfg": cfg, "store": job["store"], "pools": {}, "device": "cpu", "run": None,
            "generators": job["generators"]}


def dev_score(job: dict) -> dict:
    """Best dev UAR of the linear ER model on one selection draw (no test split is loaded):
    the training set of the test cells' own path (``cells.training_set``) at a selection seed."""
    from s3prl_dd.er.data import ERData
    from s3prl_dd.er.train import er_config, train_er

    ctx, store, fold = context(job), _open_store(job["store"]), f"fold{job['cell']['fold']}"
    train = training_set(job["cell"], ctx, store, pooled=True)
    dev = ERData.from_store(store, store.split(fold, "dev"), pooled=True)
    er = ctx["cfg"]["er"]
    r = train_er(train, dev, None, er_config(profile=er["profile"], overrides=er["overrides"]),
                 stats=store.stats(fold), seed=job["cell"]["seed"], n_classes=4)
    return {"fold": job["cell"]["fold"], "ppc": job["cell"]["ppc"], "psi": job["psi"], "draw": job["draw"],
            "dev_uar": 100 * r["dev_uar"], "best_step": r["best_step"], "steps": r["steps"], "stopped": r["stopped"]}


def dev_means(scores: list[dict], psis, budgets) -> dict:
    """Mean dev UAR over folds and draws per (ψ, budget): reported only, never chosen on."""
    return {str(p): {str(b): statistics.fmean(s["dev_uar"] for s in scores if s["psi"] == p and s["ppc"] == b)
                     for b in budgets} for p in psis}


def choose(scores: list[dict]) -> float:
    """The ψ of the best mean dev UAR over draws; ties go to the larger ψ."""
    by_psi: dict = {}
    for s in scores:
        by_psi.setdefault(s["psi"], []).append(s["dev_uar"])
    return max(by_psi, key=lambda p: (round(sum(by_psi[p]) / len(by_psi[p]), 6), p))


def cached(pool, fn, jobs: list[dict], path_of) -> list[dict]:
    """Run the jobs whose result file is missing (in ``pool``, or here when it is None), once per
    file (jobs that share a file are the same cell), return every job's result."""
    todo: dict = {}
    for j in jobs:
        if not path_of(j).is_file():
            todo.setdefault(path_of(j), j)
    todo = list(todo.values())
    for job, res in zip(todo, (pool.map if pool else map)(fn, todo)):
        atomic_write_json(res, path_of(job))
        print(f"  {path_of(job).stem}: " + (f"test UAR {res['test_uar']:.1f}" if "test_uar" in res
                                               else f"dev UAR {res['dev_uar']:.1f}"), flush=True)
    return [json.loads(path_of(j).read_text()) for j in jobs]


def print_stopping(name: str, runs: list[dict]) -> None:
    """Did every ER run converge? (stopped by dev patience, not by the step cap)"""
    print(f"{name} runs stopped by dev patience: {sum(r['stopped'] == 'patience' for r in runs)} of {len(runs)}, "
          f"best dev step <= {max(r['best_step'] for r in runs)}")


def test_job(job: dict) -> dict:
    return {**run_cell(job["cell"], context(job)), "set": job["set"], "psi": job["psi"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", help="a lambda_sweep.py JSON: each fold's chosen GAN")
    p.add_argument("--run", help="a pipeline run directory: its GANs (with --gan), else its cell recipe (with --sweep)")
    p.add_argument("--gan", help="ARCH-VARIANT-gSEED of --run's GANs, e.g. gan_mlp-div_sml-g2")
    p.add_argument("--store", help="the feature store (default: the sweep's / the run's)")
    p.add_argument("--psi", default="1,0.75,0.5,0.25", help="truncation values to choose from")
    p.add_argument("--draws", type=int, default=5, help="dev draws per (fold, budget, psi)")
    add_test_args(p)
    a = p.parse_args(argv)
    if not a.sweep and not (a.run and a.gan):
        p.error("give --sweep (and optionally --run), or --run with --gan")
    if a.sweep and a.gan:
        p.error("--gan picks a run's GANs; --sweep brings its own")
    gens, arch, variant, gan_seed, store = generators(a)
    psis, budgets = floats(a.psi), [int(b) for b in a.budgets.split(",")]
    if 1.0 not in psis:
        p.error("--psi must include 1 (plain sampling is the comparison)")
    seeds, folds, work = [int(s) for s in a.seeds.split(",")], sorted(gens), Path(a.work)
    for d in ("dev", "cells"):
        (work / d).mkdir(parents=True, exist_ok=True)
    recipe = {"generators": {f"fold{f}": str(g) for f, g in gens.items()}, "store": str(store),
              "er_overrides": a.er_overrides}
    keep_recipe(work, recipe)
    common = {"store": store, "cfg": grid_config(store, a.er_overrides, Path(a.run) if a.run else None),
              "generators": {gan_key(arch, variant, f, gan_seed): str(g) for f, g in gens.items()}}
    base = {"downstream": "linear", "arch": None, "variant": None, "losses": [], "gan_seed": None, "balance": "balanced"}
    gan = {**base, "source": "gan", "arch": arch, "variant": variant, "gan_seed": gan_seed}
    parallel = a.workers > 1
    with (ProcessPoolExecutor(a.workers, initializer=init_worker, initargs=(os.getpid(), 1)) if parallel
          else contextlib.nullcontext()) as pool:
        jobs = [{**common, "psi": psi, "draw": d, "cell": {**gan, "fold": f, "ppc": b, "seed": SELECTION_SEED + d}}
                for f in folds for b in budgets for psi in psis for d in range(a.draws)]
        scores = cached(pool, dev_score, jobs, lambda j: work / "dev" / (
            f"fold{j['cell']['fold']}-ppc{j['cell']['ppc']}-psi{j['psi']}-d{j['draw']}.json"))
        choice = {f"fold{f}": {str(b): choose([s for s in scores if s["fold"] == f and s["ppc"] == b]) for b in budgets}
                  for f in folds}
        print("chosen psi (fold: per budget):", json.dumps(choice), flush=True)
        tests = []
        for f in folds:
            for s in seeds:
                tests.append({**common, "set": "real", "psi": None,
                              "cell": {**base, "fold": f, "seed": s, "source": "real", "ppc": "full", "balance": "imbalanced"}})
                for b in budgets:
                    tests.append({**common, "set": "random", "psi": None,
                                  "cell": {**base, "fold": f, "seed": s, "source": "random", "ppc": b}})
                    tests += [{**common, "set": name, "psi": psi, "cell": {**gan, "fold": f, "seed": s, "ppc": b}}
                              for name, psi in (("plain", 1.0), ("truncated", choice[f"fold{f}"][str(b)]))]
        # a truncated cell at the chosen psi = 1 is the plain cell: the same file serves both
        records = cached(pool, test_job, tests, lambda t: work / "cells" / (
            cell_key(t["cell"]) + (f"-psi{t['psi']}" if t["psi"] else "") + ".json"))
    for t, r in zip(tests, records):
        r["set"] = t["set"]
    summary = summarize(records, folds, budgets, SETS, COMPARISONS)
    atomic_write_json({"generators": {f"fold{f}": str(g) for f, g in gens.items()}, "arch": arch, "variant": variant,
                       "gan_seed": gan_seed, "store": store, "psi": psis, "draws": a.draws, "selection_seed": SELECTION_SEED,
                       "folds": folds, "budgets": budgets, "seeds": seeds, "choice": choice,
                       "dev_means": dev_means(scores, psis, budgets), "dev_scores": scores, "summary": summary,
                       "records": records}, a.out)
    for name, rs in (("dev", scores), ("test", records)):
        print_stopping(name, rs)
    print("mean dev UAR over folds and draws (psi: per budget):", json.dumps(
        {p: {b: round(v, 1) for b, v in row.items()} for p, row in dev_means(scores, psis, budgets).items()}))
    print_summary(summary, SETS)


if __name__ == "__main__":
    run_main(main)
