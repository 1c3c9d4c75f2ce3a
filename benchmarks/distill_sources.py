"""Which training-set source serves the SUPERB ER model best at a budget of ppc points per class?

For every fold x source x ppc x seed: build the set with ``s3prl_dd.distill.make_training_set``
(from the fold's TRAIN part only), train the linear SUPERB ER model on it (``er_config`` profile
``converge``; model selection on the real fold's DEV part), and score the real TEST part once with
the best-dev model. The full real train part is run too, as the reference. Nothing is tuned on
test: the source options are the shipped defaults (downstream_configs/distill/*.yaml) unless
``--set`` says otherwise.

    python benchmarks/distill_sources.py --store /tmp/emodb/store --folds 1 --ppc 1,2,5,10,20 \\
        --seeds 0,1,2 [--generator fold1=G.pt] [--pool fold1=POOL] \\
        --out benchmarks/results/distill_sources.json

GAN sources (gan, gan_herding, gan_latent) run only for folds given a generator (a generator
distilled from that fold: the sources refuse one of another fold). The output JSON is rewritten
after every run; rerunning with the same --out skips the runs it already holds."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from s3prl_dd import metrics
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.distill import make_training_set, source_config
from s3prl_dd.er.data import ERData
from s3prl_dd.er.model import ERModel
from s3prl_dd.er.train import er_config, train_er
from s3prl_dd.features.store import FeatureStore, normalize_fold
from s3prl_dd.utils import UserError, atomic_write_json

REAL_SOURCES = ("random", "herding", "kcenter", "dm")
GAN_SOURCES = ("gan", "gan_herding", "gan_latent")


def parse_ints(text: str) -> list[int]:
    out = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def per_fold(text: str | None, folds: list[str]) -> dict[str, str]:
    """``PATH`` (one fold only) or ``fold1=PATH,fold2=PATH``."""
    if not text:
        return {}
    if "=" not in text:
        if len(folds) != 1:
            raise UserError("with several folds give fold1=PATH,fold2=PATH (one per fold)")
        return {folds[0]: text}
    out = {}
    for part in filter(None, text.split(",")):
        k, _, v = part.partition("=")
        out[normalize_fold(k.strip())] = v.strip()
    return out


def source_overrides(text: str | None) -> dict[str, list[str]]:
    """``dm.iterations=500,,gan_latent.lr=0.1`` -> {"dm": ["iterations=500"], ...}."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (text or "").split(",,")):
        src, _, rest = part.partition(".")
        out.setdefault(src.strip(), []).append(rest)
    return out


def key(r: dict) -> tuple:
    return (r["fold"], r["source"], r["ppc"], r["seed"])


def summarize(runs: list[dict]) -> dict:
    """Per source x ppc: test/dev UAR over folds x seeds, and the paired difference to `random`
    (same fold, seed, ppc) with its win/tie/loss count."""
    table: dict = {}
    by_key = {key(r): r for r in runs}
    for r in runs:
        table.setdefault(r["source"], {}).setdefault(str(r["ppc"]), []).append(r)
    out = {}
    for src, rows in table.items():
        out[src] = {}
        for ppc, rs in rows.items():
            cell = {"test_uar": metrics.summarize([100 * r["test_uar"] for r in rs]),
                    "dev_uar": metrics.summarize([100 * r["dev_uar"] for r in rs]),
                    "artifact_bytes": int(np.median([r["artifact_bytes"] for r in rs]))}
            pairs = [(r, by_key.get((r["fold"], "random", r["ppc"], r["seed"]))) for r in rs]
            pairs = [(a, b) for a, b in pairs if b is not None and src not in ("random", "full")]
            if pairs:
                d = [100 * (a["test_uar"] - b["test_uar"]) for a, b in pairs]
                cell["vs_random"] = {**metrics.summarize(d), "wins": sum(x > 0 for x in d),
                                     "ties": sum(x == 0 for x in d), "losses": sum(x < 0 for x in d)}
            out[src][ppc] = cell
    return out


def table_text(summary: dict, ppcs: list[int], sources: list[str]) -> str:
    head = "| source | " + " | ".join(f"{p} ppc" for p in ppcs) + " |"
    lines = [head, "|" + "---|" * (len(ppcs) + 1)]
    for src in sources:
        if src not in summary:
            continue
        cells = []
        for p in ppcs:
            c = summary[src].get(str(p))
            if c is None:
                cells.append("")
                continue
            t = c["test_uar"]
            text = f"{t['mean']:.1f}" + (f" ± {t['std']:.1f}" if t["n"] > 1 else "")
            if "vs_random" in c:
                v = c["vs_random"]
                text += f" ({v['mean']:+.1f}; {v['wins']}/{v['ties']}/{v['losses']})"
            cells.append(text)
        lines.append(f"| {src} | " + " | ".join(cells) + " |")
    if "full" in summary:
        t = summary["full"]["all"]["test_uar"]
        sd = f" ± {t['std']:.1f}" if t["n"] > 1 else ""
        lines.append(f"| full real train | {t['mean']:.1f}{sd} (n={t['n']}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="real feature store (e.g. fbank_no_cmvn EmoDB)")
    p.add_argument("--folds", default="1")
    p.add_argument("--ppc", default="1,2,5,10,20")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--sources", help=f"comma list (default: {','.join(REAL_SOURCES[:2])},dm "
                                     f"+ {','.join(GAN_SOURCES)} where a generator is given)")
    p.add_argument("--generator", help="generator.pt (one fold) or fold1=G1.pt,fold2=G2.pt")
    p.add_argument("--pool", help="teacher pool dir (one fold) or fold1=P1,... (gan_herding space=pool, gan_latent)")
    p.add_argument("--set", help="source options: dm.iterations=500,,gan_latent.lambda_gm=0 "
                                 "(a tagged source name@tag gets its own: gan_herding@pool.space=pool)")
    p.add_argument("--profile", default="converge", help="ER config profile")
    p.add_argument("-o", "--override", help="ER config overrides a.b=v,,c=d")
    p.add_argument("--no-full", action="store_true", help="skip the full-train reference")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/distill_sources.json"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        store = FeatureStore.open(a.store)
        folds = [normalize_fold(f) for f in parse_ints(a.folds)]
        gens, pools = per_fold(a.generator, folds), per_fold(a.pool, folds)
        sources = a.sources.split(",") if a.sources else ["random", "herding", "dm"] + (list(GAN_SOURCES) if gens else [])
        sets = source_overrides(a.set)
        # a source may carry a tag, e.g. gan_herding@pool with --set gan_herding@pool.space=pool
        src_cfg = {s: source_config(s.split("@")[0], overrides=sets.get(s)) or None for s in sources}
        for s in src_cfg.values():
            if s and "device" in s:
                s["device"] = a.device
        cfg = er_config(profile=a.profile or None, overrides=a.override)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ppcs, seeds = parse_ints(a.ppc), parse_ints(a.seeds)
    probe = ERModel(store.dim, len(store.label_map), cfg["modelrc"])
    pooled = probe.supports_pooled if cfg["datarc"].get("pooled", "auto") == "auto" else bool(cfg["datarc"]["pooled"])

    settings = {"store": str(Path(a.store).resolve()), "config": cfg, "source_config": src_cfg,
                "generators": gens, "pools": pools}
    runs: list[dict] = []
    if a.out.is_file():
        old = json.loads(a.out.read_text())
        if old.get("settings") == json.loads(json.dumps(settings)):
            runs = old.get("runs", [])
            print(f"resuming: {len(runs)} runs already in {a.out}", flush=True)
    done = {key(r) for r in runs}

    def save():
        summary = summarize(runs)
        atomic_write_json({"settings": settings, "runs": runs, "summary": summary,
                           "table": table_text(summary, ppcs, sources),
                           "env": {"torch": torch.__version__, "threads": a.threads,
                                   "python": platform.python_version()}}, a.out)

    for fold in folds:
        data = {part: ERData.from_store(store, store.split(fold, part), pooled) for part in ("train", "dev", "test")}
        stats = store.stats(fold)

        def run(source, ppc, seed, train, extra):
            r = train_er(train, data["dev"], data["test"], cfg, stats=stats, seed=seed, device=a.device,
                         n_classes=len(store.label_map))
            rec = {"fold": fold, "source": source, "ppc": ppc, "seed": seed,
                   **{k: r[k] for k in ("test_uar", "test_acc", "dev_uar", "dev_acc", "best_step", "train_seconds")},
                   **extra}
            runs.append(rec)
            save()
            print(f"{fold} {source:12s} ppc {str(ppc):>3s} seed {seed}: test UAR {100 * r['test_uar']:5.1f}  "
                  f"dev UAR {100 * r['dev_uar']:5.1f}  ({extra.get('distill_seconds', 0):.1f}s + {r['train_seconds']:.1f}s)",
                  flush=True)

        if not a.no_full:
            for seed in seeds:
                if (fold, "full", "all", seed) not in done:
                    nbytes = int(4 * store.lengths(store.split(fold, "train")).sum() * store.dim)
                    run("full", "all", seed, data["train"], {"n_items": len(data["train"]), "artifact_bytes": nbytes})
        for ppc in ppcs:
            for source in sources:
                if source.split("@")[0] in GAN_SOURCES and fold not in gens:
                    continue
                for seed in seeds:
                    if (fold, source, ppc, seed) in done:
                        continue
                    t0 = time.perf_counter()
                    ts = make_training_set(source.split("@")[0], store, fold, ppc, seed, generator=gens.get(fold),
                                           pool=pools.get(fold), cfg=src_cfg.get(source))
                    extra = {"distill_seconds": time.perf_counter() - t0, "n_items": len(ts),
                             "counts": ts.counts(len(store.label_map)), "artifact_bytes": ts.artifact_bytes}
                    for k in ("short_classes", "objective_before", "objective_after"):
                        if k in ts.info:
                            extra[k] = ts.info[k]
                    run(source, ppc, seed, ts.to_erdata(), extra)
    save()
    summary = summarize(runs)
    print(f"\ntest UAR % (mean ± std over folds x seeds; in brackets: paired difference to random, "
          f"wins/ties/losses)\n{table_text(summary, ppcs, sources)}\n-> {a.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
