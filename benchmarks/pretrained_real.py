"""SUPERB ER on real data for each layer of the pretrained upstreams, and the grid's choice.

    python benchmarks/pretrained_real.py --manifest /path/to/emodb/er4.csv --out benchmarks/results/pretrained_real.json

For every (upstream, hidden-state index) of ``--plan``: a feature store of that layer
(``s3prl-dd corpus manifest`` + ``extract``, cached under ``--work``), then the ER recipe of
downstream_configs/er_cached.yaml (``--profile``, default ``converge``: train until dev UAR stops
improving) per fold x seed. Reports test and dev UAR mean ± std per layer, each run's best dev
step against the steps it ran, and picks the upstream + layer with the best mean **dev** UAR
(test never takes part in the choice; ``--also`` adds benchmarks/featurizer_real.py's learned
weighted sums to the candidates). The JSON is rewritten after every layer and a rerun skips
layers it already holds for the same folds, seeds and recipe."""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_uar import default_work, import_corpus, parse_range  # noqa: E402

from s3prl_dd import metrics  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.er.train import er_config, train_er_on_store  # noqa: E402
from s3prl_dd.features.extract import extract  # noqa: E402
from s3prl_dd.features.store import FeatureStore  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json  # noqa: E402

DEFAULT_PLAN = "ge2e:0,1,2;wakehubert:7,3,5,1,0,2,4,6;wakehubert_proj:0"
RUN_KEYS = ("test_uar", "test_acc", "dev_uar", "dev_acc", "best_step", "steps", "stopped", "standardized",
            "seconds_to_best", "train_seconds")


def parse_plan(text: str) -> list[tuple[str, int]]:
    """``name:l1,l2;name2:l`` -> [(name, l1), ...] in the given order (the order runs happen)."""
    plan = []
    for part in filter(None, text.split(";")):
        name, _, layers = part.partition(":")
        plan += [(name.strip(), int(k)) for k in layers.split(",")]
    return plan


def layer_summary(runs: list[dict]) -> dict:
    pct = lambda k: metrics.summarize([100 * r[k] for r in runs])  # noqa: E731
    return {"test_uar": pct("test_uar"), "test_acc": pct("test_acc"), "dev_uar": pct("dev_uar"),
            "best_step_median": statistics.median(r["best_step"] for r in runs),
            "best_step_max": max(r["best_step"] for r in runs),
            "steps_median": statistics.median(r["steps"] for r in runs),
            "stopped_by_patience": sum(r["stopped"] == "patience" for r in runs), "n_runs": len(runs),
            "standardized_chosen": sum(bool(r["standardized"]) for r in runs)}


def run_layer(corpus_dir: Path, work: Path, upstream: str, layer: int, folds, seeds, cfg, device) -> dict:
    t0 = time.perf_counter()
    store_dir = work / f"store-{upstream}-L{layer}"
    ext = extract(corpus_dir, store_dir, upstream, layer=layer, device=device, progress=False)
    store = FeatureStore.open(store_dir)
    runs = []
    for fold in folds:
        for seed in seeds:
            r = train_er_on_store(store, fold, cfg, seed=seed, device=device)
            runs.append({"fold": fold, "seed": seed, **{k: r.get(k) for k in RUN_KEYS}})
            print(f"  {upstream} L{layer} fold{fold} seed{seed}: test UAR {100 * r['test_uar']:.1f}, dev "
                  f"{100 * r['dev_uar']:.1f}, best step {r['best_step']} of {r['steps']} ({r['stopped']})", flush=True)
    return {"upstream": upstream, "layer": layer, "dim": store.dim, "downsample_rate": store.meta["downsample_rate"],
            "extraction": {k: ext.get(k) for k in ("utt_per_s", "rtf", "n_processed")},
            "seconds": time.perf_counter() - t0, "runs": runs, "summary": layer_summary(runs)}


def choose(layers: list[dict]) -> dict:
    best = max(layers, key=lambda e: e["summary"]["dev_uar"]["mean"])
    ranked = sorted(layers, key=lambda e: -e["summary"]["dev_uar"]["mean"])
    runner_up = ranked[1] if len(ranked) > 1 else None
    reason = (f"highest mean dev UAR over {best['summary']['n_runs']} runs "
              f"({best['summary']['dev_uar']['mean']:.1f}")
    if runner_up:
        reason += (f" vs {runner_up['summary']['dev_uar']['mean']:.1f} for the next best, "
                   f"{runner_up['upstream']} layer {runner_up['layer']}")
    reason += "); the choice uses dev only, test UAR is reported, not used"
    ranking = [{"upstream": e["upstream"], "layer": e["layer"], "dev_uar": e["summary"]["dev_uar"]["mean"],
                "test_uar": e["summary"]["test_uar"]["mean"]} for e in ranked]
    return {"upstream": best["upstream"], "layer": best["layer"], "reason": reason, "ranking": ranking}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, required=True, help="a manifest CSV, or 'builtin'")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--plan", default=DEFAULT_PLAN, help="upstream:layers;... (hidden-state indices)")
    p.add_argument("--folds", default="1-5")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--work", type=Path, help="corpus + stores (default: ~/.cache/s3prl_dd/benchmarks/...)")
    p.add_argument("--profile", default="converge")
    p.add_argument("-o", "--override", help="ER config overrides a.b=v,,c=d")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--also", type=Path, help="featurizer_real.py's JSON: its rows (same folds, seeds, recipe) "
                                              "take part in the choice")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    builtin = str(a.manifest) == "builtin"
    work = a.work or default_work(Path("builtin/x") if builtin else a.manifest)
    folds, seeds = parse_range(a.folds), parse_range(a.seeds)
    try:
        corpus_dir = import_corpus(a.manifest if builtin else a.manifest.resolve(), work / "corpus")
        cfg = er_config(None, a.profile or None, a.override)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    recipe = {"profile": a.profile, "override": a.override, "folds": folds, "seeds": seeds}
    done, others = [], []
    if a.also is not None:
        also = json.loads(a.also.read_text())
        if {k: also["recipe"][k] for k in ("profile", "folds", "seeds")} != {k: recipe[k] for k in ("profile", "folds", "seeds")}:
            print(f"error: {a.also} was run with another recipe, folds or seeds", file=sys.stderr)
            return 2
        others = also["layers"]
    if a.out.is_file():
        old = json.loads(a.out.read_text())
        if old.get("recipe") == recipe:
            done = old.get("layers", [])
    def write():
        atomic_write_json({"manifest": str(a.manifest), "recipe": recipe, "config": cfg, "layers": done,
                           "featurizer": [{k: e[k] for k in ("upstream", "featurizer_steps", "weights", "summary")}
                                          for e in others],
                           "choice": choose(done + others),
                           "env": {"torch": torch.__version__, "threads": a.threads,
                                   "python": platform.python_version(), "machine": platform.machine()}}, a.out)

    for upstream, layer in parse_plan(a.plan):
        if any(e["upstream"] == upstream and e["layer"] == layer for e in done):
            continue
        print(f"{upstream} layer {layer}", flush=True)
        try:
            entry = run_layer(corpus_dir, work, upstream, layer, folds, seeds, cfg, a.device)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        done.append(entry)
        s = entry["summary"]
        print(f"{upstream} L{layer}: dev UAR {s['dev_uar']['mean']:.1f} ± {s['dev_uar']['std']:.1f}, test UAR "
              f"{s['test_uar']['mean']:.1f} ± {s['test_uar']['std']:.1f}, best step median "
              f"{s['best_step_median']:.0f} of {s['steps_median']:.0f}", flush=True)
        write()
    if done:
        write()
        c = choose(done + others)
        print(f"choice: {c['upstream']} layer {c['layer']}: {c['reason']} -> {a.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
