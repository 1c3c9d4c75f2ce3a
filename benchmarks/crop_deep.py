"""Does a downstream lose UAR when it trains on short crops? A check of why GAN-ATT sets fail it.

    python benchmarks/crop_deep.py --run runs/emodb_deep --frames 64 --ppc 5,20 \
        --out benchmarks/results/crop_deep.json
    python benchmarks/crop_deep.py --run runs/emodb_deep_distilled --downstream linear --ppc 1,2,5,10,20 \
        --out benchmarks/results/crop_linear.json

GAN-ATT generates T-frame crops, while the real sets a DeepModel trains on are whole utterances.
This trains the DeepModel (or, with ``--downstream linear``, the linear model on each crop's time
mean) of a pipeline run (its ``deep_er`` / ``er`` recipe, its store, its folds) on the
run's own random real subsets (``random`` source, downstream seed 0, the same subsets as the
run's cells) once with every utterance cut to one random ``--frames`` crop, and compares with the
run's whole-utterance cells: paired over folds, dev selects, test is whole real utterances.
"""
import argparse
import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

from s3prl_dd.er.data import ERData
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.er.train import er_config, train_er
from s3prl_dd.features.store import FeatureStore
from s3prl_dd.gan.data import crop_or_tile
from s3prl_dd.metrics import paired_test
from s3prl_dd.pipeline.cells import cell_key, training_set
from s3prl_dd.pipeline.config import DOWNSTREAMS, load_pipeline_config
from s3prl_dd.protocol import LABELS


def crop_cell(job):
    run, fold, ppc, frames, downstream = job
    torch.set_num_threads(1)
    cfg = load_pipeline_config(run / "config.yaml")
    store = FeatureStore.open(run / "store")
    pooled = downstream == "linear"
    cell = {"fold": fold, "seed": 0, "downstream": downstream, "source": "random", "arch": None, "variant": None,
            "gan_seed": None, "losses": [], "ppc": ppc, "balance": "balanced"}
    whole = training_set(cell, {"cfg": cfg, "generators": {}, "pools": {}}, store, pooled=False)
    g = torch.Generator().manual_seed(fold)
    crops = [crop_or_tile(torch.as_tensor(f), frames, g).numpy() for f in whole.features]
    train = ERData(np.stack([c.mean(0) for c in crops]) if pooled else crops, whole.labels)
    recipe = cfg["er" if pooled else "deep_er"]
    er = er_config(profile=recipe.get("profile"), overrides=recipe.get("overrides"))
    er["modelrc"]["select"] = DOWNSTREAMS[downstream]
    split = lambda s: ERData.from_store(store, store.split(f"fold{fold}", s), pooled)  # noqa: E731
    r = train_er(train, split("dev"), split("test"), er, stats=store.stats(f"fold{fold}"),
                 seed=0, device="cpu", n_classes=len(LABELS))
    ref = json.loads((run / "cells" / f"{cell_key(cell)}.json").read_text())
    return {"fold": fold, "ppc": ppc, "crop_test_uar": 100 * r["test_uar"], "whole_test_uar": ref["test_uar"],
            "crop_best_step": r["best_step"], "crop_steps": r["steps"], "crop_stopped": r["stopped"],
            "median_frames": float(np.median([len(f) for f in whole.features]))}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a pipeline run with random cells of --downstream")
    p.add_argument("--downstream", choices=("deep", "linear"), default="deep")
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--ppc", default="5,20")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    cfg = load_pipeline_config(args.run / "config.yaml")
    jobs = [(args.run, f, int(k), args.frames, args.downstream) for k in args.ppc.split(",") for f in cfg["folds"]]
    with Pool(args.workers) as pool:
        rows = pool.map(crop_cell, jobs)
    summary = {}
    for ppc in sorted({r["ppc"] for r in rows}):
        rs = [r for r in rows if r["ppc"] == ppc]
        crop, whole = np.array([r["crop_test_uar"] for r in rs]), np.array([r["whole_test_uar"] for r in rs])
        summary[str(ppc)] = {"crop": [crop.mean(), crop.std(ddof=1)], "whole": [whole.mean(), whole.std(ddof=1)],
                             "crop_minus_whole": paired_test(crop, whole)}
        t = summary[str(ppc)]["crop_minus_whole"]
        print(f"{ppc} ppc, n={len(rs)} folds: {args.frames}-frame crops {crop.mean():.1f} ± {crop.std(ddof=1):.1f}, "
              f"whole {whole.mean():.1f} ± {whole.std(ddof=1):.1f}; crop − whole {t['mean_diff']:+.1f} "
              f"[{t['ci_low']:+.1f}, {t['ci_high']:+.1f}] p={t['t_p']:.3f}")
    if args.out:
        args.out.write_text(json.dumps({"frames": args.frames, "downstream": args.downstream, "rows": rows, "summary": summary}, indent=2,
                                       default=float) + "\n")


if __name__ == "__main__":
    run_main(main)
