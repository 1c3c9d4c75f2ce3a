"""Does a generator copy its training data? Nearest-neighbour distances to the real TRAIN part.

A GAN distilled from a fold sees that fold's ``train`` part only (``gan/realdata.py``). Its
samples are compared with the real utterances it never saw from the same speakers and sessions,
the fold's ``dev`` part (default; ``test`` holds other speakers, whose larger distances would
flatter any generator). Everything lives in the fold's standardised space:
``z = (x - mean) / std`` with the train-frame statistics of ``store.stats(fold)``.

Definitions (Euclidean distances, ``R`` = the real training set):

- pooled: each utterance or sample is its time-mean of z. ``d(q) = min_{r in R} ||q - r||``.
- frame-level: for one utterance or sample q with frames q_1..q_T,
  ``d(q) = mean_t min_{f in F} ||q_t - f||``, ``F`` = the frames of the training utterances
  (a seeded random subset of at most ``max_ref_frames``), on a seeded random subset of at most
  ``max_queries`` samples and held-out utterances and at most ``max_frames_per_query`` frames each.
- ``ratio = median_g d(g) / median_h d(h)`` over generated samples g and held-out utterances h:
  about 1 for a generator whose samples are as far from the training data as new real data is,
  0 for a copier.
- ``frac_closer_than_any_heldout = |{g : d(g) < min_h d(h)}| / |G|``: the share of generated
  samples closer to some training utterance than ANY held-out utterance is to its nearest
  training utterance. A copier gives 1; a generator drawing fresh samples from the data's own
  distribution gives about ``1 / (n_heldout + 1)``.
- ``frac_below_heldout_p05``: the share of g with d(g) below the 5th percentile of the held-out
  d(h) (about 0.05 for fresh samples).
- ``frac_near_copy``: the share of g with ``d(g) < near_copy * median_h d(h)`` (``near_copy`` =
  0.1): near-duplicates of a training utterance. Fresh samples essentially never come that close
  in tens of dimensions or more; it catches a generator that copies only part of the time.

Samples of one frame (a time-mean generator such as GAN-MLP) get the pooled level only.

``flagged`` is True when, at the pooled or the frame level, ``ratio < ratio_threshold`` (0.5),
``frac_near_copy > near_copy_threshold`` (0.1) or ``frac_closer_than_any_heldout >
frac_threshold`` (0.5). The last threshold is high on purpose: ``frac_closer_than_any_heldout``
hinges on the single closest held-out utterance, so with a small held-out part (tens of
utterances, as a fold's dev part of EmoDB) fresh samples reach 0.1-0.3 now and then.
Caveat: nearest-neighbour tests also react to low diversity: a mode-collapsed generator whose
samples sit in the densest part of the data gets a ratio below 1 without copying anything.
"""
from __future__ import annotations

import numpy as np
import torch

from ..utils import UserError

DEFAULT_MEMO = {"heldout": "dev", "ratio_threshold": 0.5, "frac_threshold": 0.5, "near_copy": 0.1,
                "near_copy_threshold": 0.1, "max_queries": 64,
                "max_frames_per_query": 50, "max_ref_frames": 100_000, "n_per_class": 50, "seed": 0}


def nn_distances(query: torch.Tensor, ref: torch.Tensor, chunk_q: int = 2048, chunk_r: int = 32768) -> torch.Tensor:
    """(Q,) Euclidean distance of each query row to its nearest row of ``ref``."""
    if len(ref) == 0:
        raise UserError("nearest-neighbour reference set is empty")
    out = torch.empty(len(query), dtype=torch.float32)
    for s in range(0, len(query), chunk_q):
        q = query[s: s + chunk_q].float()
        best = torch.full((len(q),), float("inf"))
        for r0 in range(0, len(ref), chunk_r):
            d = torch.cdist(q, ref[r0: r0 + chunk_r].float().to(q.device))
            best = torch.minimum(best, d.min(1).values.cpu())
        out[s: s + chunk_q] = best
    return out


def _stack_frames(items) -> list[np.ndarray]:
    if isinstance(items, torch.Tensor):
        items = items.detach().cpu().numpy()
    if isinstance(items, np.ndarray):
        if items.ndim == 2:  # (N, D) pooled samples: one frame each
            items = items[:, None, :]
        return [np.asarray(a, np.float32) for a in items]
    out = []
    for a in items:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        out.append(np.asarray(a, np.float32).reshape(-1, a.shape[-1]))
    return out


def _summary(d_gen: np.ndarray, d_ho: np.ndarray, near_copy: float) -> dict:
    med_g, med_h = float(np.median(d_gen)), float(np.median(d_ho))
    return {"median_gen_nn": med_g, "median_heldout_nn": med_h,
            "ratio": med_g / med_h if med_h > 0 else float("nan"),
            "heldout_min_nn": float(d_ho.min()),
            "frac_closer_than_any_heldout": float(np.mean(d_gen < d_ho.min())),
            "expected_frac_if_fresh": 1.0 / (len(d_ho) + 1),
            "frac_below_heldout_p05": float(np.mean(d_gen < np.percentile(d_ho, 5))),
            "frac_near_copy": float(np.mean(d_gen < near_copy * med_h)),
            "n_gen": int(len(d_gen)), "n_heldout": int(len(d_ho))}


def memorization_check(store, fold, generated, *, heldout: str = "dev", seed: int = 0,
                       max_queries: int = 64, max_frames_per_query: int = 50, max_ref_frames: int = 100_000,
                       ratio_threshold: float = 0.5, frac_threshold: float = 0.5, near_copy: float = 0.1,
                       near_copy_threshold: float = 0.1, device="cpu") -> dict:
    """Nearest-neighbour memorisation figures of ``generated`` (raw-scale samples: a list of
    (T, D) arrays, an (N, T, D) array, or (N, D) time-means) against ``fold``'s train part, with
    the ``heldout`` part as the reference behaviour. See the module docstring for definitions."""
    if heldout not in ("dev", "test"):
        raise UserError(f"held-out part must be 'dev' or 'test', got {heldout!r}")
    gen = _stack_frames(generated)
    if not gen:
        raise UserError("memorization check: no generated samples")
    if gen[0].shape[1] != store.dim:
        raise UserError(f"generated samples are {gen[0].shape[1]}-dim, the store holds {store.dim}-dim features")
    tr_idx, ho_idx = store.split(fold, "train"), store.split(fold, heldout)
    if not ho_idx:
        raise UserError(f"store {store.path}: {fold} has an empty {heldout} part")
    mean, std = (torch.from_numpy(a) for a in store.stats(fold))

    def z(a: np.ndarray) -> torch.Tensor:
        return (torch.tensor(np.asarray(a, dtype=np.float32)) - mean) / std  # a copy: store arrays are read-only mmaps

    # pooled level: time-means of standardised frames (= standardised time-means)
    ref = z(store.pooled(tr_idx)).to(device)
    d_gen = nn_distances(z(np.stack([g.mean(0) for g in gen])).to(device), ref).numpy()
    d_ho = nn_distances(z(store.pooled(ho_idx)).to(device), ref).numpy()
    pooled = _summary(d_gen, d_ho, near_copy)

    # frame level, on seeded random subsets; one stream per draw, so the reference frames and
    # the held-out baseline do not depend on how many samples a generator gave
    rngs = [np.random.default_rng([seed, k]) for k in range(3)]  # reference, generated, held-out
    ref_f = None
    if max(len(g) for g in gen) > 1:
        frames = np.concatenate([store.features(i) for i in tr_idx])
        if len(frames) > max_ref_frames:
            frames = frames[np.sort(rngs[0].choice(len(frames), max_ref_frames, replace=False))]
        ref_f = z(frames).to(device)

    def frame_scores(items: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        pick = rng.choice(len(items), min(max_queries, len(items)), replace=False)
        out = []
        for k in pick:
            a = items[k]
            if len(a) > max_frames_per_query:
                a = a[np.sort(rng.choice(len(a), max_frames_per_query, replace=False))]
            out.append(float(nn_distances(z(a).to(device), ref_f).mean()))
        return np.asarray(out)

    if max(len(g) for g in gen) > 1:
        f_gen = frame_scores(gen, rngs[1])
        f_ho = frame_scores([store.features(i) for i in ho_idx], rngs[2])
        frame = dict(_summary(f_gen, f_ho, near_copy), n_ref_frames=int(len(ref_f)))
    else:  # a time-mean is not a frame: comparing it with frames would measure pooling, not copying
        frame = {"skipped": "the samples have one frame each (a time-mean generator, e.g. GAN-MLP)"}

    def bad(s):
        return "ratio" in s and bool(s["ratio"] < ratio_threshold or s["frac_near_copy"] > near_copy_threshold
                                     or s["frac_closer_than_any_heldout"] > frac_threshold)

    return {"space": f"standardised with {fold}'s train statistics", "train_part": "train", "heldout_part": heldout,
            "n_train": len(tr_idx), "pooled": pooled, "frame": frame,
            "thresholds": {"ratio": ratio_threshold, "frac_near_copy": near_copy_threshold, "near_copy": near_copy,
                           "frac_closer_than_any_heldout": frac_threshold},
            "flagged": bad(pooled) or bad(frame)}


# ---------------------------------------------------------------------------- generators
def generator_samples(generator, labels: dict | None = None, n_per_class: int = 50, seed: int = 0):
    """(list of (T, D) raw samples, label ids) of ``n_per_class`` per class from ``generator``:
    a ``generator.pt`` path, a loaded ``DistilledGenerator``, or any object with ``labels``
    (name -> id) and ``sample_class(label_id, n, seed) -> (n, T, D)`` (e.g. a test double)."""
    from ..gan.checkpoint import DistilledGenerator, load_generator
    from ..gan.sampler import generate_class

    if isinstance(generator, (str, bytes)) or hasattr(generator, "__fspath__"):
        generator = load_generator(generator)
    if isinstance(generator, DistilledGenerator):
        def draw(c, n, s):
            return generate_class(generator, c, n, s)
    elif hasattr(generator, "sample_class"):
        draw = generator.sample_class
    else:
        raise UserError(f"cannot sample from {type(generator).__name__}: give a generator.pt path, "
                        "a DistilledGenerator or an object with sample_class(label_id, n, seed)")
    labels = getattr(generator, "labels", None) or labels
    if not labels:
        raise UserError("the generator names no classes (labels)")
    feats, ys = [], []
    for name, c in sorted(labels.items(), key=lambda kv: kv[1]):
        x = draw(int(c), int(n_per_class), int(seed))
        feats += _stack_frames(x)
        ys += [int(c)] * len(x)
    return feats, np.asarray(ys, np.int64)


def check_generator(store, fold, generator, n_per_class: int = 50, seed: int = 0, **kwargs) -> dict:
    """``memorization_check`` on ``n_per_class`` samples per class of ``generator`` (a generator
    export must make this store's features: same upstream, representation and dim)."""
    from ..gan.checkpoint import load_generator

    if isinstance(generator, (str, bytes)) or hasattr(generator, "__fspath__"):
        generator = load_generator(generator)
    if hasattr(generator, "info") and hasattr(generator, "D"):
        from ..distill.common import check_generator as check_compatible_generator

        check_compatible_generator(generator, store)
    feats, _ = generator_samples(generator, store.label_map, n_per_class, seed)
    out = memorization_check(store, fold, feats, seed=seed, **kwargs)
    out["n_per_class"] = int(n_per_class)
    return out
