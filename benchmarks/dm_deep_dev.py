"""Which DM form should the DeepModel downstream get: time-mean vectors or frame sequences?

Runs the pipeline's own DeepModel cells (``s3prl_dd.pipeline.cells.run_cell``, the grid's
``deep_er`` schedule) on a finished pipeline run's store for each DM variant, fold and budget,
and prints the DEV UAR the choice is made on (test UAR is written too, for the record, and is not
used to choose). The EmoDB grid's ``per_downstream.deep.distill.dm`` came from this script:

    python benchmarks/dm_deep_dev.py --run runs/emodb --folds 1,2,3 --ppc 1,5,20 \\
        --variants vectors,frames --out benchmarks/results/dm_deep_dev.json

Variants: ``vectors`` (dm.yaml as shipped), ``frames`` (frames: true), ``frames_T250``
(frames: true, frames_T: 250). The output JSON is rewritten after every cell; rerunning with
the same --out skips the cells it already holds."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from s3prl_dd.pipeline.cells import run_cell
from s3prl_dd.pipeline.config import load_pipeline_config
from s3prl_dd.utils import UserError, atomic_write_json, merge_config, pick_device

VARIANTS = {"vectors": {"frames": False}, "frames": {"frames": True}, "frames_T250": {"frames": True, "frames_T": 250}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a pipeline run directory with store/ and config.yaml")
    ap.add_argument("--folds", default="1,2,3")
    ap.add_argument("--ppc", default="1,5,20")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="vectors,frames")
    ap.add_argument("--out", default="benchmarks/results/dm_deep_dev.json")
    a = ap.parse_args(argv)
    run = Path(a.run)
    if not (run / "store" / "index.json").is_file() or not (run / "config.yaml").is_file():
        raise UserError(f"{run}: not a pipeline run with a feature store (run s3prl-dd pipeline first)")
    variants = a.variants.split(",")
    if set(variants) - set(VARIANTS):
        raise UserError(f"--variants: choose from {list(VARIANTS)}")
    cfg = load_pipeline_config(run / "config.yaml")
    out = Path(a.out)
    done = json.loads(out.read_text()) if out.is_file() else {"cells": []}
    have = {(c["variant"], c["fold"], c["ppc"], c["seed"]) for c in done["cells"]}
    for v in variants:
        for fold in [int(f) for f in a.folds.split(",")]:
            for ppc in [int(p) for p in a.ppc.split(",")]:
                if (v, fold, ppc, a.seed) in have:
                    continue
                # the run's shared dm options with the variant on top; no per-downstream ones
                dm = merge_config(cfg["distill"].get("dm", {}), VARIANTS[v])
                ctx = {"cfg": {**cfg, "distill": {**cfg["distill"], "dm": dm}, "per_downstream": {}},
                       "store": str(run / "store"), "pools": {}, "generators": {},
                       "device": str(pick_device(cfg["device"])), "run": None}
                cell = {"fold": fold, "seed": a.seed, "downstream": "deep", "arch": None, "variant": None,
                        "losses": [], "source": "dm", "ppc": ppc, "balance": "balanced"}
                r = run_cell(cell, ctx)
                rec = {"variant": v, "fold": fold, "ppc": ppc, "seed": a.seed, "dev_uar": r["dev_uar"],
                       "test_uar": r["test_uar"], "set_seconds": r["set_seconds"]}
                print(json.dumps(rec), flush=True)
                done["cells"].append(rec)
                atomic_write_json(done, out)
    done["dev_mean"] = {v: {str(p): float(np.mean([c["dev_uar"] for c in done["cells"] if c["variant"] == v and c["ppc"] == p]))
                            for p in sorted({c["ppc"] for c in done["cells"] if c["variant"] == v})}
                        for v in sorted({c["variant"] for c in done["cells"]})}
    atomic_write_json(done, out)
    print("DEV UAR %, mean over folds:", json.dumps(done["dev_mean"], indent=1))
    return done


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"dm_deep_dev: {e}")
