"""Real-data SUPERB ER through s3prl's own runner (``-d emotion_distilled``), per fold.

    python benchmarks/runner_uar.py --corpus builtin --folds 1-5
    python benchmarks/runner_uar.py --corpus /path/to/emodb/er4.csv --folds 1

Uses the paper's model and split with a CPU schedule (``CPU_SCHEDULE``: lr 1e-3 as in DESIGN's
reference numbers, 1000 optimiser steps of batch 4 x 2); test UAR/accuracy are read from the
dev-best checkpoint's evaluation (``-m evaluate``), never chosen on test."""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "downstream_configs" / "emotion_distilled.yaml"
CPU_SCHEDULE = ("config.optimizer.lr=1.0e-3,,config.runner.total_steps=1000,,config.runner.gradient_accumulate_steps=2,,"
                "config.runner.eval_step=100,,config.runner.save_step=1000,,config.runner.log_step=100,,"
                "config.runner.eval_dataloaders=['dev']")


def parse_folds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def build(corpus: str, work: Path) -> Path:
    from s3prl_dd.corpus import build_corpus

    spec = {"type": "builtin", "n_per_speaker": 40, "seed": 0} if corpus == "builtin" else {"type": "manifest", "csv": corpus}
    out = work / ("builtin" if corpus == "builtin" else Path(corpus).stem)
    build_corpus(spec, out)
    return out


def run_fold(corpus_dir: Path, fold: int, upstream: str, seed: int, work: Path) -> dict:
    exp = work / f"exp-{corpus_dir.name}-fold{fold}-seed{seed}"
    runner = [sys.executable, "-m", "s3prl_dd.run_downstream"]
    over = f"config.downstream_expert.datarc.corpus='{corpus_dir}',,config.downstream_expert.datarc.test_fold='fold{fold}',,{CPU_SCHEDULE}"
    # one thread per run: the runner's default (all cores) thrashes when anything else is running
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.time()
    subprocess.run([*runner, "-m", "train", "-u", upstream, "-d", "emotion_distilled", "-c", str(CONFIG),
                    "-p", str(exp), "--seed", str(seed), "-o", over], check=True, capture_output=True, env=env)
    seconds = time.time() - t0
    out = subprocess.run([*runner, "-m", "evaluate", "-e", str(exp / "dev-best.ckpt")], check=True,
                         capture_output=True, text=True, env=env).stdout
    acc, uar = map(float, re.search(r"test acc: ([\d.]+)\s+uar: ([\d.]+)", out).groups())
    return {"fold": fold, "seed": seed, "test_acc": 100 * acc, "test_uar": 100 * uar, "train_seconds": seconds}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="builtin", help="'builtin' or a manifest CSV")
    ap.add_argument("--folds", default="1-5")
    ap.add_argument("--seeds", default="1337")
    ap.add_argument("--upstream", default="fbank_no_cmvn")
    ap.add_argument("--work", default="runs/runner_uar")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/runner_uar_<corpus>.json)")
    args = ap.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus_dir = build(args.corpus, work)
    rows = []
    for fold in parse_folds(args.folds):
        for seed in [int(s) for s in args.seeds.split(",")]:
            rows.append(run_fold(corpus_dir, fold, args.upstream, seed, work))
            print(json.dumps(rows[-1]), flush=True)
    uars, accs = [r["test_uar"] for r in rows], [r["test_acc"] for r in rows]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    summary = {"corpus": args.corpus, "upstream": args.upstream, "n": len(rows), "schedule": CPU_SCHEDULE,
               "test_uar_mean": statistics.mean(uars), "test_uar_std": sd(uars),
               "test_acc_mean": statistics.mean(accs), "test_acc_std": sd(accs), "runs": rows}
    print(f"{args.corpus}: test UAR {summary['test_uar_mean']:.1f} ± {summary['test_uar_std']:.1f}, "
          f"acc {summary['test_acc_mean']:.1f} ± {summary['test_acc_std']:.1f} (n={len(rows)} fold x seed runs)")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"runner_uar_{corpus_dir.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    from s3prl_dd.errors import run_main

    run_main(main)
