"""Report figures (matplotlib is optional: `pip install s3prl-dd[report]`)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..features.store import FeatureStore  # noqa: E402
from ..gan.checkpoint import load_generator  # noqa: E402
from ..gan.sampler import generate_class  # noqa: E402
from ..protocol import LABELS  # noqa: E402
from ..runlog import read_metrics  # noqa: E402
from .config import for_downstream, gan_key, variants_for  # noqa: E402
from .layers import store_dir  # noqa: E402
from .records import match, methods, per_fold  # noqa: E402


def _uar_vs_budget(run: Path, cfg: dict, records: list[dict], ds: str) -> str | None:
    budgets = [b for b in cfg["budgets"] if b != "full"]
    if not budgets:  # a full-size-only grid (e.g. Table 4 runs) has no budget axis
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, sel in methods(cfg):
        means, stds = [], []
        for b in budgets:  # the spread shown is over folds, the unit of the report's tests
            v = list(per_fold(records, **sel, ppc=b, balance="balanced", downstream=ds).values())
            means.append(np.mean(v) if v else np.nan)
            stds.append(np.std(v, ddof=1) if len(v) > 1 else 0.0)
        ax.errorbar(budgets, means, yerr=stds, capsize=3, marker="o", label=name)
    real = [r["test_uar"] for r in records if match(r, source="real", downstream=ds)]
    if real:
        ax.axhline(np.mean(real), color="k", ls="--", label="full real")
    ax.set_xscale("log")
    ax.set_xlim(min(budgets) / 1.5, max(budgets) * 1.5)  # also when no method has a value yet
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("points per class")
    ax.set_ylabel("test UAR (%), mean ± std over folds")
    ax.set_title(f"{cfg['name']}: UAR vs budget ({ds} downstream)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"uar_vs_budget_{ds}.png"
    fig.savefig(run / name, dpi=120)
    plt.close(fig)
    return name


def _projection(run: Path, cfg: dict) -> str | None:
    if not cfg["gan"]["archs"]:  # a real-data-only run (e.g. built for its store and baselines)
        return None
    arch = cfg["gan"]["archs"][0]
    key = gan_key(arch, variants_for(cfg, arch)[-1], cfg["folds"][0], cfg["gan_seeds"][0])
    gens = sorted((run / "gans").glob(f"{key}/*/generator.pt"))
    if not gens:
        return None
    store = FeatureStore.open(store_dir(run, cfg, cfg["folds"][0]))
    fold = f"fold{cfg['folds'][0]}"
    idx = store.split(fold, "train")
    mean, std = store.stats(fold)
    real, y_real = (store.pooled(idx) - mean) / std, store.labels(idx)
    g = load_generator(gens[0])
    fake = np.concatenate([generate_class(g, c, 50, 0).mean(1).numpy() for c in range(len(LABELS))])
    fake, y_fake = (fake - mean) / std, np.repeat(np.arange(len(LABELS)), 50)
    centre = real.mean(0)
    _, _, vt = np.linalg.svd(real - centre, full_matrices=False)  # PCA fitted on real data only
    pr, pf = (real - centre) @ vt[:2].T, (fake - centre) @ vt[:2].T
    fig, ax = plt.subplots(figsize=(6.4, 5))
    for name, c in LABELS.items():
        color = f"C{c}"
        ax.scatter(*pr[y_real == c].T, s=14, color=color, alpha=0.6, label=f"real {name}")
        ax.scatter(*pf[y_fake == c].T, s=22, color=color, marker="x", label=f"GAN {name}")
    ax.set_title(f"PCA of utterance means, {fold} train: real (o) vs {gens[0].parents[1].name} (x)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(run / "projection.png", dpi=120)
    plt.close(fig)
    return "projection.png"


def _gan_curves(run: Path, cfg: dict) -> str | None:
    """Convergence you can see: each GAN's quick-evaluation dev UAR against step and against
    training minutes, and its critic's Wasserstein estimate against step; a dot marks the
    exported (best-dev) step. One colour per loss variant, one line per fold x GAN seed."""
    logs = sorted((run / "gans").glob("*/*/metrics.jsonl"))
    if not logs:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    variants = {}
    for log in logs:
        name = log.parents[1].name  # <arch>-<variant>-fold<k>-g<seed>
        arch_variant = name.rsplit("-fold", 1)[0]
        color = variants.setdefault(arch_variant, f"C{len(variants)}")
        rows = read_metrics(log)
        ev = [r for r in rows if r.get("split") == "eval" and "dev_uar" in r]
        tr = [r for r in rows if r.get("split") == "train" and "critic/wasserstein" in r]
        if ev:
            steps, uar = [r["step"] for r in ev], [100 * r["dev_uar"] for r in ev]
            minutes = [r.get("train_seconds", np.nan) / 60 for r in ev]
            best = int(np.argmax(uar))
            axes[0].plot(steps, uar, color=color, alpha=0.5, lw=1)
            axes[0].plot(steps[best], uar[best], "o", color=color, ms=4)
            axes[1].plot(minutes, uar, color=color, alpha=0.5, lw=1)
        if tr:
            axes[2].plot([r["step"] for r in tr], [r["critic/wasserstein"] for r in tr], color=color, alpha=0.4, lw=0.8)
    for ax, (x, y) in zip(axes, [("generator step", "quick-eval dev UAR (%)"), ("training minutes (wall clock)", "quick-eval dev UAR (%)"),
                                 ("generator step", "Wasserstein estimate")]):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    for av, color in variants.items():
        axes[0].plot([], [], color=color, label=av)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{cfg['name']}: GAN training (dot: exported step)")
    fig.tight_layout()
    fig.savefig(run / "gan_training.png", dpi=110)
    plt.close(fig)
    return "gan_training.png"


def write_plots(run: Path, cfg: dict, records: list[dict]) -> list[str]:
    md = ["## Figures", ""]
    for ds in cfg["downstreams"]:
        if plot := _uar_vs_budget(run, for_downstream(cfg, ds), records, ds):
            md.append(f"![UAR vs budget, {ds}]({plot})")
    proj = _projection(run, cfg)
    if proj:
        md.append(f"![real vs generated]({proj})")
    curves = _gan_curves(run, cfg)
    if curves:
        md.append(f"![GAN training curves]({curves})")
    return md + [""]
