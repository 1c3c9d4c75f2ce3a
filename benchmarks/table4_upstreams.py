"""The paper's Table 4 (speaker information left in the SER model's first layer) per upstream and
corpus, on every fold, with fold-level tests.

    python benchmarks/table4_upstreams.py [--emodb /path/to/emodb/er4.csv] \
        [--plan ge2e:2,wakehubert:1,fbank_no_cmvn:-1] [--folds 1,2,3,4,5] \
        [--work runs/table4] [--out benchmarks/results/table4_upstreams.json]

For each corpus (the built-in one, and EmoDB when ``--emodb`` is given) and each upstream:layer of
``--plan``, a pipeline run (``s3prl_dd.pipeline``) with only what Table 4 needs: per fold, the
linear SER model on all real train data and on full-size GAN-MLP sets (Baseline, + L_DIV +
L_SML; one GAN seed, 1500 steps as in the grids), then the pipeline's privacy stage on each fold
in turn (3 probe seeds each). A fold's row value is the mean over its probe seeds; the table is
mean ± std over folds, and every comparison is a paired t-test over folds (the independent
unit: each fold has its own ER models and generators). Layers: GE2E 2 is the grid's choice,
WakeHuBERT 1 its best mean dev UAR on EmoDB (benchmarks/results/pretrained_real.json); test
never takes part. Reruns reuse the run directories under ``--work``."""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from s3prl_dd import metrics
from s3prl_dd.pipeline.privacy import finished_probe, privacy_stage, probe_settings
from s3prl_dd.pipeline.run import build_context, run_pipeline
from s3prl_dd.runlock import run_lock
from s3prl_dd.utils import UserError, atomic_write_json, load_yaml, save_yaml
from s3prl_dd.errors import run_main

ROWS = ("upstream", "real", "baseline", "proposed")
COMPARISONS = (("real", "upstream"), ("baseline", "real"), ("proposed", "real"), ("proposed", "baseline"))
GAN_OVERRIDES = "train.steps=1500,,train.eval_every=500,,train.save_every=500,,model.D=auto"
POOL_OVERRIDES = "runner.total_steps=5000,,datarc.standardize=False,,pool.seeds=[0],,pool.checkpoints_per_seed=5"


def pipeline_config(name: str, corpus: dict, upstream: str, layer: int, folds: list[int], workers: int) -> dict:
    return {"name": name, "corpus": corpus, "upstream": upstream, "layer": layer, "folds": folds, "seeds": [0],
            "gan_seeds": [0], "workers": workers,
            "gan": {"archs": ["gan_mlp"], "variants": ["baseline", "div_sml"], "overrides": {"gan_mlp": GAN_OVERRIDES}},
            "pool": {"overrides": POOL_OVERRIDES}, "sources": ["real", "gan"], "budgets": ["full"],
            "balance": ["imbalanced"], "table3": False, "downstreams": ["linear"], "probe": {"enabled": True}}


def fold_probe(cfg: dict, run: Path, fold: int, ctx_box: list) -> dict:
    """The privacy stage's block for one fold, kept as ``sid_probe-fold<k>.json``: the stage
    keeps a single fold in ``sid_probe.json`` (and the run's report.md shows the first fold)."""
    cfg = {**cfg, "probe": {**cfg["probe"], "fold": fold}}
    kept = run / f"sid_probe-fold{fold}.json"
    block = json.loads(kept.read_text()) if kept.is_file() else None
    if block is not None and block.get("pipeline_probe") == probe_settings(cfg):
        return block
    block = finished_probe(cfg, run)  # the pipeline itself probed its first fold
    if block is None:
        with run_lock(run, "benchmarks/table4_upstreams.py"):
            if not ctx_box:  # every stage is on disk after run_pipeline: this only finds it
                ctx_box.append(build_context(cfg, run))
            block = privacy_stage(cfg, {**ctx_box[0], "cfg": cfg}, force=True)
    atomic_write_json(block, kept)
    return block


def fold_values(block: dict, run: Path) -> dict:
    rows = {r["name"]: 100 * r["acc_mean"] for r in block["rows"]}
    uar = {row: json.loads((run / "cells" / f"{key}.json").read_text())["test_uar"]  # cells keep percent
           for row, key in block["cells"].items()}
    flagged = {name: bool(m.get("flagged")) for name, m in (block.get("memorization") or {}).items()}
    return {"sid_acc": rows, "ser_test_uar": uar, "memorization_flagged": flagged}


def summarize(per_fold: dict[int, dict]) -> dict:
    folds = sorted(per_fold)

    def series(kind, row):
        return [per_fold[f][kind][row] for f in folds]

    out = {"sid_acc": {r: metrics.summarize(series("sid_acc", r)) for r in ROWS},
           "ser_test_uar": {r: metrics.summarize(series("ser_test_uar", r)) for r in ROWS if r != "upstream"},
           "paired": {}}
    for a, b in COMPARISONS:
        test = metrics.paired_test(series("sid_acc", a), series("sid_acc", b))
        out["paired"][f"{a} - {b}"] = {**test, "fold_values": [per_fold[f]["sid_acc"][a] - per_fold[f]["sid_acc"][b]
                                                                 for f in folds]}
    return out


def run_one(corpus_name: str, corpus: dict, upstream: str, layer: int, folds, work: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    name = f"{corpus_name}-{upstream}-L{layer}"
    run = work / name
    cfg_path = work / f"{name}.yaml"
    save_yaml(pipeline_config(name, corpus, upstream, layer, folds, workers), cfg_path)
    run_pipeline(cfg_path, out=run)
    cfg = load_yaml(run / "config.yaml")
    ctx_box: list = []
    per_fold = {}
    for fold in folds:
        block = fold_probe(cfg, run, fold, ctx_box)
        per_fold[fold] = fold_values(block, run)
        acc = per_fold[fold]["sid_acc"]
        print(f"  {name} fold{fold}: SID acc " + ", ".join(f"{r} {acc[r]:.1f}" for r in ROWS), flush=True)
    return {"corpus": corpus_name, "upstream": upstream, "layer": layer, "n_speakers": block["n_speakers"],
            "probe": {k: block["config"][k] for k in ("train_ratio", "steps", "lr")}, "probe_seeds": block["seeds"],
            "per_fold": per_fold, "summary": summarize(per_fold), "seconds": time.perf_counter() - t0}


def markdown(entries: list[dict]) -> str:
    lines = ["| corpus | upstream | upstream features | SER real | SER Baseline GAN | SER + L_DIV + L_SML GAN | "
             "proposed − real (paired over folds) | SER test UAR real / Baseline / proposed |",
             "|---|---|---|---|---|---|---|---|"]
    for e in entries:
        s = e["summary"]
        acc = [f"{s['sid_acc'][r]['mean']:.1f} ± {s['sid_acc'][r]['std']:.1f}" for r in ROWS]
        d = s["paired"]["proposed - real"]
        uar = " / ".join(f"{s['ser_test_uar'][r]['mean']:.1f}" for r in ("real", "baseline", "proposed"))
        lines.append(f"| {e['corpus']} | {e['upstream']} L{e['layer']} | " + " | ".join(acc)
                     + f" | {d['mean_diff']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}] p={d['t_p']:.2g} | {uar} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--emodb", help="EmoDB er4.csv (adds the EmoDB rows)")
    p.add_argument("--plan", default="ge2e:2,wakehubert:1,fbank_no_cmvn:-1", help="upstream:layer,...")
    p.add_argument("--folds", default="1,2,3,4,5")
    p.add_argument("--corpora", default="builtin,emodb", help="which of builtin,emodb to run")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", default="runs/table4")
    p.add_argument("--out", default="benchmarks/results/table4_upstreams.json")
    a = p.parse_args(argv)
    folds = [int(f) for f in a.folds.split(",")]
    plan = [(u, int(l)) for u, _, l in (part.partition(":") for part in a.plan.split(","))]
    corpora = {"builtin": {"type": "builtin", "n_per_speaker": 40, "seed": 0}}
    if a.emodb:
        if not Path(a.emodb).is_file():
            raise SystemExit(f"table4_upstreams: --emodb {a.emodb}: no such file")
        corpora["emodb"] = {"type": "manifest", "csv": str(Path(a.emodb).resolve())}
    corpora = {k: v for k, v in corpora.items() if k in a.corpora.split(",")}
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text())["entries"] if out.is_file() else []
    entries = {(e["corpus"], e["upstream"], e["layer"]): e for e in old}
    try:
        for cname, corpus in corpora.items():
            for upstream, layer in plan:
                print(f"[table4] {cname} / {upstream} layer {layer}", flush=True)
                entries[(cname, upstream, layer)] = run_one(cname, corpus, upstream, layer, folds, work, a.workers)
                ordered = sorted(entries.values(), key=lambda e: (e["corpus"], e["upstream"]))
                atomic_write_json({"folds": folds, "entries": ordered, "markdown": markdown(ordered),
                                   "env": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                                           "python": platform.python_version(), "machine": platform.machine()}}, out)
    except UserError as e:
        raise SystemExit(f"table4_upstreams: {e}")
    print(markdown(sorted(entries.values(), key=lambda e: (e["corpus"], e["upstream"]))))


if __name__ == "__main__":
    run_main(main)
