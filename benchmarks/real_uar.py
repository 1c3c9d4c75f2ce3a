"""Real-data SUPERB ER on a corpus: import -> extract -> ER per fold x seed, with convergence.

    python benchmarks/real_uar.py --manifest /path/to/emodb/er4.csv --out benchmarks/results/emodb_real.json
    python benchmarks/real_uar.py --manifest builtin --out benchmarks/results/builtin_real.json

Default training = the ``converge`` profile of downstream_configs/er_cached.yaml (lr 1e-3, dev
patience 1500 steps, cap 20k, raw vs standardised chosen on each run's own dev split). Each run
records its best dev step, where it stopped (patience or cap) and the measured seconds to the
best step, so the JSON shows whether the real baseline converged."""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from s3prl_dd import metrics
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.er.train import er_config, train_er_on_store
from s3prl_dd.features.extract import extract
from s3prl_dd.features.store import FeatureStore
from s3prl_dd.utils import UserError, atomic_write_json

REFERENCE = {"emodb": "72.8 ± 6.8 UAR (fbank_no_cmvn, linear ER, lr 1e-3, 5 folds x 3 seeds)"}


def default_work(manifest: Path) -> Path:
    """Outside the repository: the corpus's features must never end up committed with it."""
    base = Path(os.environ.get("S3PRL_DD_CACHE", Path.home() / ".cache" / "s3prl_dd"))
    return base / "benchmarks" / manifest.resolve().parent.name


def parse_range(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def import_corpus(manifest: Path, out: Path) -> Path:
    """The corpus package's importer (kept: a corpus already imported at ``out``);
    ``builtin`` = the built-in synthetic corpus of the README's demo."""
    if not (out / "corpus.json").is_file():
        from s3prl_dd.corpus import build_corpus

        spec = ({"type": "builtin", "n_per_speaker": 40, "seed": 0} if str(manifest) == "builtin"
                else {"type": "manifest", "csv": str(manifest)})
        build_corpus(spec, out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, required=True, help="a manifest CSV, or 'builtin'")
    p.add_argument("--folds", default="1-5")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, help="corpus + feature store cache (default: ~/.cache/s3prl_dd/...)")
    p.add_argument("--upstream", default="fbank_no_cmvn")
    p.add_argument("--config", help="ER config yaml (default: built-in = er_cached.yaml)")
    p.add_argument("--profile", default="converge", help="config profile ('' for s3prl's recipe)")
    p.add_argument("-o", "--override", help="config overrides a.b=v,,c=d")
    p.add_argument("--device")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    builtin = str(a.manifest) == "builtin"
    work = a.work or (default_work(Path("builtin/x")) if builtin else default_work(a.manifest))
    try:
        corpus_dir = import_corpus(a.manifest if builtin else a.manifest.resolve(), work / "corpus")
        t0 = time.perf_counter()
        ext = extract(corpus_dir, work / f"store-{a.upstream}", a.upstream, device=a.device or "cpu")
        store = FeatureStore.open(work / f"store-{a.upstream}")
        cfg = er_config(a.config, a.profile or None, a.override)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    prep_s = time.perf_counter() - t0
    runs = []
    for fold in parse_range(a.folds):
        for seed in parse_range(a.seeds):
            r = train_er_on_store(store, fold, cfg, seed=seed, device=a.device or "cpu")
            runs.append({"fold": fold, "seed": seed, **{k: r.get(k) for k in (
                "test_uar", "test_acc", "dev_uar", "dev_acc", "best_step", "steps", "cap", "stopped",
                "standardized", "dev_by_space", "seconds_to_best", "train_seconds")},
                "n_test": len(r["predictions"])})
            print(f"fold{fold} seed{seed}: UAR {100 * r['test_uar']:.1f}  acc {100 * r['test_acc']:.1f}  "
                  f"(dev {100 * r['dev_uar']:.1f}, best step {r['best_step']} of {r['steps']} ({r['stopped']}), "
                  f"{'standardised' if r['standardized'] else 'raw'}, {r['seconds_to_best']:.1f}s to best)", flush=True)
    summary = {k: metrics.summarize([100 * r[f"test_{k}"] for r in runs]) for k in ("uar", "acc")}
    per_fold = {f: metrics.summarize([100 * r["test_uar"] for r in runs if r["fold"] == f])
                for f in parse_range(a.folds)}
    result = {"manifest": str(a.manifest), "upstream": a.upstream, "n_utterances": len(store),
              "config": cfg, "profile": a.profile, "runs": runs, "summary": summary,
              "uar_per_fold": per_fold, "extraction": ext, "prep_seconds": prep_s,
              "train_seconds_total": sum(r["train_seconds"] for r in runs),
              "convergence": {"stopped_by_patience": sum(r["stopped"] == "patience" for r in runs),
                              "n_runs": len(runs), "best_step_max": max(r["best_step"] for r in runs),
                              "cap": cfg["runner"]["total_steps"],
                              "standardized_chosen": sum(bool(r["standardized"]) for r in runs),
                              "seconds_to_best": metrics.summarize([r["seconds_to_best"] for r in runs])},
              "reference": REFERENCE, "env": {"torch": torch.__version__, "threads": a.threads,
                                              "python": platform.python_version()}}
    atomic_write_json(result, a.out)
    print(f"UAR {metrics.mean_std([r['test_uar'] for r in runs], scale=100)}   "
          f"acc {metrics.mean_std([r['test_acc'] for r in runs], scale=100)}   -> {a.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
