"""s3prl's runner on a pretrained upstream: time to the best dev step on the fly vs from the store.

    python benchmarks/runner_speed.py --manifest /path/to/emodb/er4.csv --out benchmarks/results/runner_speed.json

Per ``upstream:layer`` of ``--plan`` (EmoDB fold ``--fold``, runner seed ``--seed``), the same
SUPERB ER schedule (lr 1e-3, batch 4 x accumulation 8, ``--steps`` optimiser steps, dev and test
evaluated every ``--eval-step``; model chosen on dev UAR) three ways:

  on_the_fly  python -m s3prl_dd.run_downstream -m train -u UPSTREAM -l LAYER -d emotion_distilled
              (real audio through the upstream at every step, as users run it)
  cached      the same runner with -u cached -k STORE (the layer's feature store)
  store       train_er_on_store(..., schedule="s3prl") on that store, in-process (what the grid runs)

Time to the best dev step is measured, not extrapolated: the runner's stdout is read line by line
and every dev evaluation is time-stamped from process start (imports, audio loading, Featurizer
probe included). ms per step = (wall time at the last dev evaluation - at the first) / steps
between them. With ``--gan-steps`` (default 1500): a Baseline GAN-MLP (no L_DIV / L_SML, hence no teacher
pool) is distilled from the store's fold train part, and the runner trains on its samples
(``-u synthetic -k generator.pt``, ``train_source: synthetic``, ``--ppc`` points per class; dev
and test stay real audio through the upstream on the fly), same schedule: time to the best dev
step against on the fly (the GAN's own training time is reported beside it, paid once).

The three ways are also a parity check: the same best dev step and test scores
are expected (the runner paths up to float rounding of the upstream's batched forward)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_uar import default_work, import_corpus  # noqa: E402

from s3prl_dd.er.train import er_config, train_er_on_store  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.features.extract import extract  # noqa: E402
from s3prl_dd.features.store import FeatureStore  # noqa: E402
from s3prl_dd.utils import atomic_write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "downstream_configs" / "emotion_distilled.yaml"
LR, BATCH, ACCUM = 1e-3, 4, 8


def runner(corpus_dir: Path, exp: Path, upstream_args: list[str], fold: int, seed: int, steps: int,
           eval_step: int, threads: int, extra: str = "") -> dict:
    over = (f"config.downstream_expert.datarc.corpus='{corpus_dir}',,config.downstream_expert.datarc.test_fold='fold{fold}',,"
            f"config.optimizer.lr={LR},,config.runner.total_steps={steps},,config.runner.eval_step={eval_step},,"
            f"config.runner.save_step={steps},,config.runner.log_step={eval_step},,"
            f"config.runner.gradient_accumulate_steps={ACCUM},,config.downstream_expert.datarc.train_batch_size={BATCH}{extra}")
    cmd = [sys.executable, "-m", "s3prl_dd.run_downstream", "-m", "train", *upstream_args, "-d", "emotion_distilled",
           "-c", str(CONFIG), "-p", str(exp), "--seed", str(seed), "--device", "cpu", "-o", over]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    dev_times = []
    t0 = time.perf_counter()
    with open(exp.parent / f"{exp.name}.stderr", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        for line in proc.stdout:
            if line.startswith("dev acc:"):
                dev_times.append(time.perf_counter() - t0)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"runner failed ({' '.join(upstream_args)}): see {exp.parent / (exp.name + '.stderr')}")
    log = (exp / "log.log").read_text().splitlines()
    best = [int(x.split("step ")[1].split(":")[0]) for x in log if x.startswith("New best on dev")][-1]

    def scores(mode):
        line = next(x for x in log if x.startswith(f"{mode} at step {best}:")).split()
        return float(line[-3]), float(line[-1])  # acc, uar

    dev_steps = [int(x.split("step ")[1].split(":")[0]) for x in log if x.startswith("dev at step")]
    at = dict(zip(dev_steps, dev_times))
    ms = 1e3 * (dev_times[-1] - dev_times[0]) / (dev_steps[-1] - dev_steps[0])
    (dev_acc, dev_uar), (test_acc, test_uar) = scores("dev"), scores("test")
    return {"best_step": best, "seconds_to_best": at[best], "wall_seconds": wall, "ms_per_step": ms,
            "dev_uar": 100 * dev_uar, "dev_acc": 100 * dev_acc, "test_uar": 100 * test_uar, "test_acc": 100 * test_acc}


def store_run(store: FeatureStore, fold: int, seed: int, steps: int, eval_step: int) -> dict:
    cfg = er_config(overrides=[f"runner.total_steps={steps}", f"runner.eval_step={eval_step}", f"runner.log_step={eval_step}",
                               f"optimizer.lr={LR}", "datarc.standardize=False", f"datarc.train_batch_size={BATCH}",
                               f"runner.gradient_accumulate_steps={ACCUM}", "selection.metric='uar'"])
    r = train_er_on_store(store, fold, cfg, seed=seed, device="cpu", schedule="s3prl")
    return {"best_step": r["best_step"], "seconds_to_best": r["seconds_to_best"], "wall_seconds": r["train_seconds"],
            "ms_per_step": 1e3 * r["train_seconds"] / r["steps"], "dev_uar": 100 * r["dev_uar"],
            "dev_acc": 100 * r["dev_acc"], "test_uar": 100 * r["test_uar"], "test_acc": 100 * r["test_acc"]}


def train_gan(store_dir: Path, out: Path, fold: int, dim: int, steps: int, threads: int) -> dict:
    """The Baseline GAN-MLP (no L_DIV / L_SML, so no teacher pool) on the fold's train part."""
    if not (out / "result.json").is_file():
        over = f"model.D={dim},,loss.lambda_sml=0,,loss.lambda_div=0,,train.steps={steps}"
        cmd = [sys.executable, "-m", "s3prl_dd.cli", "distill", "-c", str(ROOT / "downstream_configs" / "gan" / "gan_mlp_cpu.yaml"),
               "--store", str(store_dir), "--fold", f"fold{fold}", "-o", over, "--out", str(out / "runs"), "--device", "cpu"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        result = sorted((out / "runs").glob("*/result.json"))[-1]
        out.joinpath("result.json").write_text(result.read_text())
    r = json.loads((out / "result.json").read_text())
    return {"generator": r["generator"], "gan_steps": steps, "gan_train_seconds": r["train_seconds"],
            "gan_best_dev_uar": 100 * r["best_dev_uar"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--plan", default="ge2e:2;wakehubert:7", help="upstream:layer;...")
    p.add_argument("--work", type=Path)
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--eval-step", type=int, default=25)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gan-steps", type=int, default=1500, help="0: no -u synthetic rows")
    p.add_argument("--ppc", default="5,20", help="GAN samples per class for the -u synthetic rows")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    work = a.work or default_work(a.manifest)
    corpus_dir = import_corpus(a.manifest.resolve(), work / "corpus")
    rows = []
    for part in filter(None, a.plan.split(";")):
        name, layer = part.split(":")[0], int(part.split(":")[1])
        store_dir = work / f"store-{name}-L{layer}"
        extract(corpus_dir, store_dir, name, layer=layer, device="cpu", progress=False)
        store = FeatureStore.open(store_dir)
        tag = f"{name}-L{layer}-fold{a.fold}-seed{a.seed}-{a.steps}"
        row = {"upstream": name, "layer": layer}
        for way, args in (("on_the_fly", ["-u", name, "-l", str(layer)]), ("cached", ["-u", "cached", "-k", str(store_dir)])):
            exp = work / "runner_speed" / f"{way}-{tag}"
            exp.parent.mkdir(parents=True, exist_ok=True)
            row[way] = runner(corpus_dir, exp, args, a.fold, a.seed, a.steps, a.eval_step, a.threads)
            print(f"{name} L{layer} {way}: best dev step {row[way]['best_step']} at {row[way]['seconds_to_best']:.1f} s, "
                  f"{row[way]['ms_per_step']:.1f} ms/step, test UAR {row[way]['test_uar']:.1f}", flush=True)
        row["store"] = store_run(store, a.fold, a.seed, a.steps, a.eval_step)
        print(f"{name} L{layer} store: best dev step {row['store']['best_step']} at {row['store']['seconds_to_best']:.1f} s, "
              f"{row['store']['ms_per_step']:.1f} ms/step, test UAR {row['store']['test_uar']:.1f}", flush=True)
        fly = row["on_the_fly"]
        row["speedup_ms_per_step"] = {k: fly["ms_per_step"] / row[k]["ms_per_step"] for k in ("cached", "store")}
        row["speedup_time_to_best"] = {k: fly["seconds_to_best"] / row[k]["seconds_to_best"] for k in ("cached", "store")}
        row["parity"] = {k: {"same_best_step": row[k]["best_step"] == fly["best_step"],
                             "test_uar_gap": row[k]["test_uar"] - fly["test_uar"]} for k in ("cached", "store")}
        if a.gan_steps:
            gan = train_gan(store_dir, work / "runner_speed" / f"gan-{name}-L{layer}-fold{a.fold}-{a.gan_steps}",
                            a.fold, store.dim, a.gan_steps, a.threads)
            row["synthetic"] = {"gan": gan}
            for ppc in (int(x) for x in a.ppc.split(",")):
                extra = (",,config.downstream_expert.datarc.train_source='synthetic',,"
                         f"config.downstream_expert.datarc.synthetic.ppc={ppc}")
                exp = work / "runner_speed" / f"synthetic-ppc{ppc}-{tag}"
                r = runner(corpus_dir, exp, ["-u", "synthetic", "-k", gan["generator"]], a.fold, a.seed, a.steps,
                           a.eval_step, a.threads, extra)
                r["speedup_time_to_best"] = fly["seconds_to_best"] / r["seconds_to_best"]
                row["synthetic"][f"ppc{ppc}"] = r
                print(f"{name} L{layer} synthetic {ppc} ppc: best dev step {r['best_step']} at {r['seconds_to_best']:.1f} s, "
                      f"{r['ms_per_step']:.1f} ms/step, test UAR {r['test_uar']:.1f}", flush=True)
        rows.append(row)
        atomic_write_json({"manifest": str(a.manifest), "fold": a.fold, "seed": a.seed, "steps": a.steps,
                           "eval_step": a.eval_step, "lr": LR, "batch": [BATCH, ACCUM], "rows": rows,
                           "env": {"torch": torch.__version__, "threads": a.threads, "python": platform.python_version(),
                                   "cpu_count": os.cpu_count()}}, a.out)
    return 0


if __name__ == "__main__":
    run_main(main)
