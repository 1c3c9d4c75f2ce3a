"""Nested sweep of λ5 (loss.lambda_div, L_DIV) x λ6 (loss.lambda_sml, L_SML): one GAN per
(fold, λ5, λ6), each fold choosing its own pair by the GANs' quick-eval dev UAR.

    python benchmarks/lambda_sweep.py --store STORE --folds 1,2,3,4,5 --work DIR
        [--config downstream_configs/gan/gan_mlp_cpu.yaml] [--lambda-div 0,1,10] [--lambda-sml 0,1,10]
        [-o train.steps=1500,,model.D=auto] [--pool-profile converge]
        [--pool-overrides runner.total_steps=5000,,datarc.standardize=False,,pool.seeds=[0],,pool.checkpoints_per_seed=5]
        [--device cpu] [--threads 1] [--out benchmarks/results/lambda_sweep.json]

Per fold: the teacher pool is built once as the pipeline builds it (s3prl_dd/pipeline/run.py
``_stage_pools``: ER profile, then the pool overrides) when some λ6 > 0; then one GAN per
(λ5, λ6) is trained with ``train_gan`` (the config, then ``-o``, then the pair). A GAN's score is
the trainer's own ``best``: its best quick-eval UAR on the fold's DEV split (train/dev cut of the
fold's train sessions); its dev-UAR curve comes from the run's metrics.jsonl. Test is never read.

Why nested: each fold chooses its (λ5, λ6) from its own GANs' dev scores, which depend only on that
fold's train part (GAN, teachers) and dev part (quick evaluation). Under leave-one-session-out
folds, every other fold's train/dev holds this fold's test session, so a single pair chosen from
all folds' scores would have seen each fold's test speakers; chosen per fold, the test score of
the chosen GAN estimates the whole procedure, tuning included. Ties go to the smaller λ5, then the
smaller λ6 (the weaker regulariser). The per-pair means over folds are reported, not chosen from.

Reruns reuse ``--work``: finished GAN runs are read, interrupted ones resumed from their last
checkpoint, pools continue seed by seed. ``--work`` is tied to its recipe (store, resolved GAN
config, pool config): another recipe needs another ``--work``; folds and λ values may be added.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s3prl_dd.er.pool import build_pool  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.er.train import er_config  # noqa: E402
from s3prl_dd.features.store import FeatureStore  # noqa: E402
from s3prl_dd.gan import checkpoint as ck  # noqa: E402
from s3prl_dd.gan.config import resolve_config  # noqa: E402
from s3prl_dd.gan.trainer import train_gan  # noqa: E402
from s3prl_dd.runlog import gan_curves  # noqa: E402
from s3prl_dd.utils import UserError, apply_overrides, atomic_write_json  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "lambda_sweep.json"


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def pair_overrides(lam_div: float, lam_sml: float) -> str:
    return f"loss.lambda_div={lam_div!r},,loss.lambda_sml={lam_sml!r}"


def gan_run(cfg_file, store, fold: str, pool, out: Path, overrides: str, device) -> dict:
    """The GAN of one (fold, λ5, λ6) under ``out``: read if finished, resumed if interrupted, else trained."""
    runs = sorted(p for p in out.glob("*") if (p / "config.yaml").is_file()) if out.is_dir() else []
    reused = bool(runs) and (runs[-1] / "result.json").is_file()
    if reused:
        r = json.loads((runs[-1] / "result.json").read_text())
    elif runs and ck.latest_checkpoint(runs[-1]) is not None:
        r = train_gan(None, None, None, resume=runs[-1], device=device)
    else:
        r = train_gan(str(cfg_file), store, fold, pool_dir=pool, out_dir=out, device=device,
                      overrides=overrides, name=out.name)
    run_dir = Path(r["run_dir"])
    return {"run_dir": str(run_dir), "best_dev_uar": r["best_dev_uar"], "best_step": r["best_step"],
            "steps": r["step"], "train_seconds": r["train_seconds"], **gan_curves(run_dir), "reused": reused}


def choose(runs: list[dict]) -> dict:
    """The run with the best dev UAR; ties: smaller λ5, then smaller λ6."""
    return min(runs, key=lambda r: (-r["best_dev_uar"], r["lambda_div"], r["lambda_sml"]))


def summarize(runs: list[dict], folds: list[int]) -> tuple[dict, list[dict]]:
    choice = {}
    for f in folds:
        mine = [r for r in runs if r["fold"] == f]
        if mine:
            c = choose(mine)
            choice[f"fold{f}"] = {k: c[k] for k in ("lambda_div", "lambda_sml", "best_dev_uar", "best_step", "run_dir")}
    grid = {}
    for r in runs:
        grid.setdefault((r["lambda_div"], r["lambda_sml"]), []).append(r)
    means = [{"lambda_div": a, "lambda_sml": b, "dev_uar_mean": statistics.fmean(r["best_dev_uar"] for r in rs),
              "n_folds": len(rs), "chosen_in": [k for k, c in choice.items()
                                                if (c["lambda_div"], c["lambda_sml"]) == (a, b)]}
             for (a, b), rs in sorted(grid.items())]
    return choice, means


def print_table(runs: list[dict], folds: list[int], choice: dict, means: list[dict]) -> None:
    head = "".join(f"{'fold' + str(f):>10}" for f in folds)
    print(f"\n{'λ5':>6} {'λ6':>6}{head}{'mean':>9}   (best dev UAR %, * = the fold's choice)")
    for m in means:
        cells = ""
        for f in folds:
            r = next((r for r in runs if r["fold"] == f and (r["lambda_div"], r["lambda_sml"]) ==
                      (m["lambda_div"], m["lambda_sml"])), None)
            star = "*" if f"fold{f}" in m["chosen_in"] else " "
            cells += f"{100 * r['best_dev_uar']:9.1f}{star}" if r else f"{'-':>10}"
        print(f"{m['lambda_div']:6g} {m['lambda_sml']:6g}{cells}{100 * m['dev_uar_mean']:9.1f}")


def check_recipe(work: Path, recipe: dict) -> None:
    """``work`` serves one recipe: its runs are reused by (fold, λ5, λ6) alone."""
    path = work / "recipe.json"
    recipe = json.loads(json.dumps(recipe))  # as it reads back (tuples -> lists)
    if path.is_file():
        if json.loads(path.read_text()) != recipe:
            raise UserError(f"{work} holds GANs of another recipe ({path}: store, GAN config or pool config "
                            "differ); use another --work")
        return
    atomic_write_json(recipe, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, required=True, help="a feature store directory")
    p.add_argument("--folds", default="1", help="comma-separated fold numbers")
    p.add_argument("--config", default=str(ROOT / "downstream_configs" / "gan" / "gan_mlp_cpu.yaml"))
    p.add_argument("--lambda-div", default="0,1,10", help="λ5 values")
    p.add_argument("--lambda-sml", default="0,1,10", help="λ6 values")
    p.add_argument("-o", "--override", help="GAN config overrides a.b=v,,c=w (before the λ pair)")
    p.add_argument("--pool-profile", default="converge", help="ER profile of the teachers (the pipeline's er.profile)")
    p.add_argument("--pool-overrides", help="ER/pool overrides of the teachers (the pipeline's pool.overrides)")
    p.add_argument("--work", type=Path, required=True, help="pools and GAN runs (reused by reruns)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    folds, divs, smls = [int(f) for f in a.folds.split(",")], floats(a.lambda_div), floats(a.lambda_sml)
    try:
        store = FeatureStore.open(a.store)
        gan_cfg = resolve_config(a.config, a.override)
        if not gan_cfg["train"]["eval_every"]:
            raise UserError("train.eval_every=0: the sweep scores GANs by their quick-eval dev UAR")
        pool_cfg = apply_overrides(er_config(profile=a.pool_profile), a.pool_overrides)
        check_recipe(a.work, {"store": str(Path(store.path).resolve()), "gan_config": gan_cfg, "pool_config": pool_cfg})
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    runs = []

    def write():
        choice, means = summarize(runs, folds)
        atomic_write_json({"store": str(a.store), "config": a.config, "override": a.override, "folds": folds,
                           "lambda_div": divs, "lambda_sml": smls, "pool_profile": a.pool_profile,
                           "pool_overrides": a.pool_overrides, "work": str(a.work),
                           "note": "best_dev_uar: the GAN's best quick-eval UAR on its fold's dev split (the "
                                   "trainer's best); choice: per fold, the best pair (ties: smaller λ5, then λ6); "
                                   "test is never read",
                           "runs": runs, "choice": choice, "grid": means,
                           "env": {"torch": torch.__version__, "threads": a.threads, "device": a.device,
                                   "python": platform.python_version(), "machine": platform.machine()}}, a.out)
        return choice, means

    try:
        for f in folds:
            fold = f"fold{f}"
            pool = (build_pool(store, fold, pool_cfg, a.work / "pool" / fold, device=a.device, progress=True)
                    if any(smls) else None)
            for lam_div in divs:
                for lam_sml in smls:
                    name = f"div{lam_div:g}-sml{lam_sml:g}"
                    over = ",,".join(filter(None, [a.override, pair_overrides(lam_div, lam_sml)]))
                    r = gan_run(a.config, store, fold, pool if lam_sml else None, a.work / "gans" / fold / name,
                                over, a.device)
                    runs.append({"fold": f, "lambda_div": lam_div, "lambda_sml": lam_sml, **r})
                    print(f"[sweep] {fold} λ5={lam_div:g} λ6={lam_sml:g}: best dev UAR {100 * r['best_dev_uar']:.1f} "
                          f"at step {r['best_step']}{' (reused)' if r['reused'] else ''}", flush=True)
                    write()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    choice, means = write()
    print_table(runs, folds, choice, means)
    for k, c in choice.items():
        print(f"{k}: λ5={c['lambda_div']:g} λ6={c['lambda_sml']:g} (dev UAR {100 * c['best_dev_uar']:.1f})")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
