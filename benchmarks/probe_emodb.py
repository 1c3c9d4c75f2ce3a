"""The paper's Table 4 (SID privacy probe) within one corpus, plus each generator's memorisation check.

    python benchmarks/probe_emodb.py [--store STORE] [--fold 1] [--seeds 0,1,2] \
        [--generator proposed=runs/.../generator.pt,baseline=...] [--out benchmarks/results/probe_emodb.json]

Rows: the plain upstream features (reference), the SER model trained on the fold's real TRAIN
part, and one SER model per generator trained on its samples (as many as the real train part,
following its class prior; the pipeline's "gan" training set). SER training = the ``fast``
profile of er_cached.yaml (lr 1e-3, 1000 steps, dev-selected; standardisation as that file says). The speaker probe then runs on every utterance of the store (10 speakers for
EmoDB), 70/30 per speaker, mean ± std over ``--seeds`` (see s3prl_dd/probe/speaker.py).

Default store: the one ``benchmarks/real_uar.py`` extracts for EmoDB (outside the repository)."""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from s3prl_dd.er.data import ERData
from s3prl_dd.er.train import er_config, train_er
from s3prl_dd.features.store import FeatureStore
from s3prl_dd.probe.run import parse_named, probe_run
from s3prl_dd.utils import UserError, atomic_write_json

DEFAULT_STORE = Path(os.environ.get("S3PRL_DD_CACHE", Path.home() / ".cache" / "s3prl_dd")) / "benchmarks" / "emodb" / "store-fbank_no_cmvn"


def er_on(train, store, fold, seed: int):
    cfg = er_config(profile="fast")
    dev = ERData.from_store(store, store.split(fold, "dev"), pooled=True)
    test = ERData.from_store(store, store.split(fold, "test"), pooled=True)
    return train_er(train, dev, test, cfg, stats=store.stats(fold), seed=seed, device="cpu",
                    n_classes=len(store.label_map), return_model=True)


def gan_train_set(path, store, fold, seed: int) -> ERData:
    """As many samples as the real train part, per class as its class counts (pooled)."""
    from s3prl_dd.gan.checkpoint import load_generator
    from s3prl_dd.gan.sampler import generate_class

    g = load_generator(path)
    counts = np.bincount(store.labels(store.split(fold, "train")), minlength=len(store.label_map))
    feats = [generate_class(g, c, int(n), seed).mean(1).numpy() for c, n in enumerate(counts)]
    labels = np.concatenate([np.full(int(n), c) for c, n in enumerate(counts)])
    return ERData(np.concatenate(feats).astype(np.float32), labels)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=str(DEFAULT_STORE))
    p.add_argument("--fold", default="1")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--er-seed", type=int, default=0)
    p.add_argument("--generator", help="name=generator.pt,... (trained on the same store and fold)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--n-per-class", type=int, default=50)
    p.add_argument("--out", default="benchmarks/results/probe_emodb.json")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        if not Path(a.store, "index.json").is_file():
            raise UserError(f"no feature store at {a.store}: run benchmarks/real_uar.py first, or pass --store")
        store = FeatureStore.open(a.store)
        fold = f"fold{a.fold}" if str(a.fold).isdigit() else a.fold
        gens = parse_named(a.generator, "--generator")
        t0 = time.perf_counter()
        models, ser = {}, {}
        real = er_on(ERData.from_store(store, store.split(fold, "train"), pooled=True), store, fold, a.er_seed)
        models["real"], ser["real"] = real["model"], {k: real[k] for k in ("test_uar", "test_acc", "best_step")}
        for name, path in gens.items():
            r = er_on(gan_train_set(path, store, fold, a.er_seed), store, fold, a.er_seed)
            models[name], ser[name] = r["model"], {k: r[k] for k in ("test_uar", "test_acc", "best_step")}
        seeds = [int(s) for s in a.seeds.split(",")]
        block = probe_run(store, fold, models, gens, seeds, out_dir=Path(a.out).with_suffix(""),
                          cfg={"steps": a.steps}, memo={"n_per_class": a.n_per_class})
    except UserError as e:
        raise SystemExit(f"error: {e}")
    record = {"what": "within-corpus SID probe (paper Table 4) + memorisation check", "store": str(store.path),
              "fold": fold, "ser_models": ser, "generators": gens, "sid_probe": block,
              "seconds": time.perf_counter() - t0, "threads": a.threads, "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__}
    atomic_write_json(record, a.out)
    print(block["markdown"])
    for name, s in ser.items():
        print(f"SER '{name}': test UAR {100 * s['test_uar']:.1f}  acc {100 * s['test_acc']:.1f} (step {s['best_step']})")
    print(f"{a.out}: {record['seconds']:.0f} s")


if __name__ == "__main__":
    main()
