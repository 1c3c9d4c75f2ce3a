"""What a GAN's samples give the linear SUPERB ER model: the time mean, class by class.

    python benchmarks/time_mean_moments.py --run runs/emodb_mm --gan gan_att-div_sml-g0 --gan gan_att-div_sml-g1 \
        --out benchmarks/results/time_mean_moments_mm1.json

The linear model pools a sequence to its time mean before anything else, so a generated set is
only as good as the class-conditional distribution of its samples' time means. Per fold and
class this compares ``--n`` samples of each finished generator of a pipeline run (plain
sampling, the export's eval mode, seed ``--seed``) with the fold's real **train** utterances
(dev and test are not read):

- ``offset``: the distance between the generated and the real class mean of time means, as an
  RMS over dimensions, in units of the real within-class standard deviation of whole-utterance
  means (pooled over classes and dimensions);
- ``spread``: the generated per-dimension standard deviation of time means over the real one
  (whole utterances), averaged over dimensions.

- ``precision`` / ``recall`` (Kynkäänniemi et al. 2019, k = ``--k``): the share of generated
  time means inside the k-NN ball of some real one (are the samples where real utterances are?),
  and of real ones inside the k-NN ball of some generated one (do the samples cover them?). Per
  class, on as many generated samples as the class has real utterances (the first ones drawn:
  the two sets' radii then come from sets of one size), every dimension scaled by the real
  train means' standard deviation.

The same figures for real ``T``-frame crops (one random crop per utterance, the generator's
largest ``T``) say what the crop alone gives: a GAN trained on crops can at best match those. Each value
is the mean over classes weighted by the real train class counts; the JSON keeps every class.
``--standing-stats N`` first recomputes each generator's BatchNorm statistics for its exported
weights (``s3prl_dd.gan.sampler.standing_stats``, with its own fixed seed, so the figures describe
the generator that ``distill.gan.standing_stats: N`` samples), to ask whether the EMA's borrowed
statistics cause an offset."""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from truncation import run_generators  # noqa: E402  (a pipeline run's finished generators)
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.features.store import FeatureStore  # noqa: E402
from s3prl_dd.gan.checkpoint import load_generator  # noqa: E402
from s3prl_dd.gan.data import crop_or_tile  # noqa: E402
from s3prl_dd.gan.realdata import step_generator  # noqa: E402
from s3prl_dd.gan.sampler import generate_class, standing_stats  # noqa: E402
from s3prl_dd.pipeline.config import load_pipeline_config  # noqa: E402
from s3prl_dd.pipeline.layers import fold_stores  # noqa: E402
from s3prl_dd.utils import atomic_write_json  # noqa: E402


def moments(means: np.ndarray, real: np.ndarray, within_std: float) -> dict:
    """``offset`` and ``spread`` of one class's time means ``means`` against the real ones."""
    offset = float(np.sqrt(np.mean((means.mean(0) - real.mean(0)) ** 2)) / within_std)
    spread = float(means.std(0).mean() / real.std(0).mean())
    return {"offset": offset, "spread": spread}


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return np.sort(d, axis=1)[:, min(k, len(x) - 1)]  # column 0 is the point itself; tiny classes: the farthest


def coverage(points: np.ndarray, ref: np.ndarray, k: int) -> float:
    """The share of ``points`` inside the k-NN ball of at least one ``ref`` point."""
    d = np.linalg.norm(points[:, None] - ref[None], axis=-1)
    return float((d <= knn_radii(ref, k)[None]).any(1).mean())


def precision_recall(means: np.ndarray, real: np.ndarray, k: int) -> dict:
    fake = means[: len(real)]
    return {"precision": coverage(fake, real, k), "recall": coverage(real, fake, k)}


def weighted(per_class: dict, counts: dict, key: str) -> float:
    total = sum(counts.values())
    return sum(per_class[c][key] * counts[c] / total for c in per_class)


KEYS = ("offset", "spread", "precision", "recall")


def crop_length(generators: dict) -> int:
    """The frame-level generators' T (GAN-MLP's T = 1 is a whole-utterance mean: no crop)."""
    return max(g.T for g in generators.values())


def crop_name(T: int) -> str:
    return f"real {T}-frame crops"


def fold_moments(store: FeatureStore, fold: int, generators: dict, n: int, seed: int, neighbours: int) -> dict:
    idx = store.split(fold, "train")
    labels, whole = store.labels(idx), store.pooled(idx)
    names = {v: k for k, v in store.label_map.items()}
    within = np.concatenate([whole[labels == c] - whole[labels == c].mean(0) for c in np.unique(labels)])
    within_std = float(within.std(0).mean())
    scale = whole.std(0) + 1e-8
    counts = {names[c]: int((labels == c).sum()) for c in np.unique(labels)}
    out = {"counts": counts, "within_std": within_std, "sets": {}}
    T = crop_length(generators)
    rng = step_generator(seed, "crop", fold)
    crops = np.stack([crop_or_tile(torch.from_numpy(np.array(store.features(i))), T, rng, "tile").mean(0).numpy()
                      for i in idx])
    sets = {crop_name(T): {names[c]: crops[labels == c] for c in np.unique(labels)}}
    for name, g in generators.items():
        sets[name] = {k: generate_class(g, g.labels[k], n, seed).mean(1).numpy() for k in counts}
    for name, by_class in sets.items():
        per_class = {}
        for c in counts:
            real = whole[labels == store.label_map[c]]
            per_class[c] = {**moments(by_class[c], real, within_std),
                            **precision_recall(by_class[c] / scale, real / scale, neighbours)}
        out["sets"][name] = {"per_class": per_class, **{key: weighted(per_class, counts, key) for key in KEYS}}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a pipeline run directory")
    p.add_argument("--gan", action="append", required=True, help="ARCH-VARIANT-gSEED, e.g. gan_att-div_sml-g0")
    p.add_argument("--n", type=int, default=300, help="samples per class and generator")
    p.add_argument("--seed", type=int, default=123, help="sampling and crop seed")
    p.add_argument("--standing-stats", type=int, default=0, metavar="BATCHES",
                   help="first recompute each generator's BatchNorm statistics over this many batches of 32")
    p.add_argument("--k", type=int, default=3, help="neighbours of precision / recall's balls")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    run = Path(a.run)
    cfg = load_pipeline_config(run / "config.yaml")
    found = {name: run_generators(run, name)[0] for name in a.gan}
    folds = sorted(set.intersection(*(set(g) for g in found.values())))
    result = {"run": str(run), "gans": a.gan, "n": a.n, "seed": a.seed, "standing_stats": a.standing_stats, "k": a.k,
              "folds": {}}
    stores = fold_stores(run, cfg)
    for fold in folds:
        gens = {name: load_generator(found[name][fold]) for name in a.gan}
        for g in gens.values() if a.standing_stats else ():
            standing_stats(g, a.standing_stats)  # its fixed seed: the generator the `gan` source samples
        result["folds"][str(fold)] = fold_moments(FeatureStore.open(stores[fold]), fold, gens, a.n, a.seed, a.k)
    names = [crop_name(crop_length(gens)), *a.gan]
    result["mean_over_folds"] = {s: {k: statistics.fmean(result["folds"][str(f)]["sets"][s][k] for f in folds)
                                     for k in KEYS} for s in names}
    for s in names:
        per = " / ".join(f"{result['folds'][str(f)]['sets'][s]['offset']:.2f}" for f in folds)
        m = result["mean_over_folds"][s]
        print(f"{s:>24}: offset {m['offset']:.2f} (folds {per}), spread {m['spread']:.2f}, "
              f"precision {m['precision']:.2f}, recall {m['recall']:.2f}")
    atomic_write_json(result, a.out)


if __name__ == "__main__":
    run_main(main)
