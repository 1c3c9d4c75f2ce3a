"""s3prl's Featurizer (learned softmax-weighted sum of all hidden states) on a pretrained upstream.

    python benchmarks/featurizer_real.py --manifest /path/to/emodb/er4.csv --out benchmarks/results/featurizer_real.json

Per fold (nested: nothing of the fold's test session is seen before testing): s3prl's runner
trains ``-u UPSTREAM -d emotion_distilled`` on the fold with the Featurizer (no ``-l``), upstream
on the fly, ``--steps`` steps of batch 4 (lr 1e-3), dev-best checkpoint; its Featurizer weights
then define that fold's feature store (``extract --featurizer``), on which the same ER recipe as
benchmarks/pretrained_real.py runs for each seed. Comparable with pretrained_real.json's
per-layer rows (same folds, seeds, recipe); reports the learned layer weights per fold."""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrained_real import RUN_KEYS, layer_summary  # noqa: E402
from real_uar import default_work, import_corpus, parse_range  # noqa: E402

from s3prl_dd.er.train import er_config, train_er_on_store  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.features.extract import extract  # noqa: E402
from s3prl_dd.features.store import FeatureStore  # noqa: E402
from s3prl_dd.utils import atomic_write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "downstream_configs" / "emotion_distilled.yaml"


def train_featurizer(corpus_dir: Path, exp: Path, upstream: str, fold: int, steps: int, threads: int) -> Path:
    if not (exp / "dev-best.ckpt").is_file():
        over = (f"config.downstream_expert.datarc.corpus='{corpus_dir}',,config.downstream_expert.datarc.test_fold='fold{fold}',,"
                f"config.optimizer.lr=1.0e-3,,config.runner.total_steps={steps},,config.runner.eval_step=50,,"
                f"config.runner.save_step={steps},,config.runner.log_step=50,,config.runner.gradient_accumulate_steps=1,,"
                "config.runner.eval_dataloaders=['dev']")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, "-m", "s3prl_dd.run_downstream", "-m", "train", "-u", upstream, "-d", "emotion_distilled",
                        "-c", str(CONFIG), "-p", str(exp), "--seed", "0", "--device", "cpu", "-o", over],
                       check=True, capture_output=True, env=env)
    return exp / "dev-best.ckpt"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--upstreams", default="ge2e,wakehubert")
    p.add_argument("--folds", default="1-5")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=400, help="runner steps that learn the Featurizer")
    p.add_argument("--work", type=Path)
    p.add_argument("--profile", default="converge")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    work = a.work or default_work(a.manifest)
    corpus_dir = import_corpus(a.manifest.resolve(), work / "corpus")
    cfg = er_config(None, a.profile or None, None)
    folds, seeds = parse_range(a.folds), parse_range(a.seeds)
    entries = []
    for upstream in a.upstreams.split(","):
        t0 = time.perf_counter()
        runs, weights = [], {}
        for fold in folds:
            ckpt = train_featurizer(corpus_dir, work / "featurizer" / f"{upstream}-fold{fold}-{a.steps}", upstream, fold,
                                    a.steps, a.threads)
            store_dir = work / f"store-{upstream}-featurizer-fold{fold}-{a.steps}"
            extract(corpus_dir, store_dir, upstream, featurizer=ckpt, device="cpu", progress=False)
            store = FeatureStore.open(store_dir)
            weights[fold] = store.representation["weights"]
            print(f"{upstream} fold{fold}: Featurizer weights {[round(w, 3) for w in weights[fold]]}", flush=True)
            for seed in seeds:
                r = train_er_on_store(store, fold, cfg, seed=seed, device="cpu")
                runs.append({"fold": fold, "seed": seed, **{k: r.get(k) for k in RUN_KEYS}})
                print(f"  fold{fold} seed{seed}: test UAR {100 * r['test_uar']:.1f}, dev {100 * r['dev_uar']:.1f}", flush=True)
        entries.append({"upstream": upstream, "layer": "featurizer", "featurizer_steps": a.steps, "weights": weights,
                        "seconds": time.perf_counter() - t0, "runs": runs, "summary": layer_summary(runs)})
        s = entries[-1]["summary"]
        print(f"{upstream} Featurizer: dev UAR {s['dev_uar']['mean']:.1f} ± {s['dev_uar']['std']:.1f}, "
              f"test UAR {s['test_uar']['mean']:.1f} ± {s['test_uar']['std']:.1f}", flush=True)
        atomic_write_json({"manifest": str(a.manifest), "recipe": {"profile": a.profile, "folds": folds, "seeds": seeds},
                           "config": cfg, "layers": entries,
                           "env": {"torch": torch.__version__, "threads": a.threads, "python": platform.python_version()}},
                          a.out)
    return 0


if __name__ == "__main__":
    run_main(main)
