"""The feature store: one upstream representation per utterance, on disk, memory-mapped.

Layout of a store directory (``format_version`` 1)::

    meta.json        {"format_version": 1, "upstream": "fbank_no_cmvn",
                      "representation": {"kind": "hidden_state", "layer": -1}
                                      | {"kind": "featurizer", "weights": [w0, ...],   # softmaxed
                                         "normalize": false},
                      "dim": 240, "dtype": "float32" | "float16", "downsample_rate": 160,
                      "sample_rate": 16000, "labels": {"neu": 0, "hap": 1, ...},
                      "shard_size": 256, "n_shards": 3, "n_items": 535,
                      # written by extraction:
                      "frame_rule": "own_frames" | "s3prl_round", "audio_root", "corpus"}
    plan.json        the shard plan: {"shard_size": 256, "shards": [[id, ...], ...]} (extraction)
    shard-00000.npy  float32/float16 array (N_frames, dim): the shard's utterances concatenated
    shard-00000.done JSON list of the shard's index entries; written (atomically) only after the
                     .npy is in place, so its presence is what makes a shard complete
    index.json       list of entries, one per utterance, in shard order:
                     {"id", "path", "label", "speaker", "session", "length", "shard", "offset"}
                     (+ "split" in stores without folds, e.g. synthetic ones: "train")
                     "length" = frames, "offset" = first row of the utterance in its shard.
                     frame_rule "own_frames": an utterance keeps the frames the upstream gives
                     it alone (no padding frames from its batch); "s3prl_round": s3prl's
                     Featurizer rule round(samples / downsample_rate), for upstreams whose frame
                     count could not be modelled (see features/upstream.py:frame_counter)
    folds.json       {"fold1": {"train": [id, ...], "test": [id, ...]}, ...}: the ids of each fold's
                     train_meta_data.json / test_meta_data.json in file order (absent in
                     synthetic stores)
    stats.json       {"fold1": {"mean": [...], "std": [...], "n_utterances", "n_frames"}, ...}:
                     per-dimension frame statistics over the fold's TRAIN part only (not dev, not
                     test); a store without folds has the single key "all"

Every file is written through a temporary file and renamed, so a crash leaves a complete file or
none. A store is complete (``FeatureStore.open`` accepts it) once ``index.json`` exists; until
then, extraction resumes by skipping shards that have their ``.done`` marker.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..protocol import LABELS, SAMPLE_RATE, fold_name, train_dev_indices
from ..utils import UserError, atomic_write_json, exists

FORMAT_VERSION = 1
STD_FLOOR = 1e-5  # a constant dimension (e.g. padding-only) must not divide by zero
PARTS = ("train", "dev", "test")


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def _atomic_save_npy(array: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: Path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------------------- representation
def normalize_fold(fold) -> str:
    """Accept 1, "1" or "fold1"; return "fold1"."""
    if isinstance(fold, int) or (isinstance(fold, str) and fold.isdigit()):
        return fold_name(int(fold))
    if isinstance(fold, str) and fold.startswith("fold"):
        return fold
    raise UserError(f"fold must be an integer or 'foldK', got {fold!r}")


def same_representation(a: dict, b: dict, atol: float = 1e-4) -> bool:
    if a.get("kind") != b.get("kind"):
        return False
    if a["kind"] == "hidden_state":
        return int(a["layer"]) == int(b["layer"])
    wa, wb = np.asarray(a["weights"], float), np.asarray(b["weights"], float)
    return wa.shape == wb.shape and bool(np.allclose(wa, wb, atol=atol)) and bool(
        a.get("normalize", False)) == bool(b.get("normalize", False))


def describe_representation(r: dict) -> str:
    if r.get("kind") == "hidden_state":
        return f"hidden state {r['layer']}"
    w = ", ".join(f"{x:.3f}" for x in r.get("weights", []))
    return f"featurizer weights [{w}]"


def check_compatible(what: str, meta: dict, dim=None, representation=None, upstream=None) -> None:
    """Raise a UserError naming both sides when ``meta`` (of a store or checkpoint) does not
    carry the features a caller expects: mixing representations trains on one space and tests
    on another, which fails silently as poor accuracy rather than loudly."""
    if exists(dim) and int(meta["dim"]) != int(dim):
        raise UserError(f"{what} holds {meta['dim']}-dim features, but {dim}-dim are expected")
    if exists(representation) and not same_representation(meta["representation"], representation):
        raise UserError(
            f"{what} holds {describe_representation(meta['representation'])}, but "
            f"{describe_representation(representation)} is expected")
    if exists(upstream) and meta.get("upstream") != upstream:
        raise UserError(f"{what} comes from upstream '{meta.get('upstream')}', expected '{upstream}'")


# ---------------------------------------------------------------------------- writing
def make_meta(upstream: str, representation: dict, dim: int, dtype: str = "float32",
              downsample_rate: int | None = None, labels: dict | None = None,
              shard_size: int = 256, **extra) -> dict:
    if dtype not in ("float32", "float16"):
        raise UserError(f"store dtype must be float32 or float16, got {dtype!r}")
    if representation.get("kind") not in ("hidden_state", "featurizer"):
        raise UserError(f"unknown representation {representation!r}")
    return {"format_version": FORMAT_VERSION, "upstream": upstream,
            "representation": representation, "dim": int(dim), "dtype": dtype,
            "downsample_rate": downsample_rate, "sample_rate": SAMPLE_RATE,
            "labels": dict(labels or LABELS), "shard_size": int(shard_size), **extra}


def write_shard(store_dir: str | os.PathLike, k: int, items: Sequence[dict],
                arrays: Sequence[np.ndarray], dtype: str) -> list[dict]:
    """Write shard ``k``: the .npy first, then the .done marker holding its index entries.
    ``items`` carry the metadata (id, label, speaker, session, path, ...), ``arrays`` the
    (T, D) features in the same order."""
    store_dir = Path(store_dir)
    entries, offset = [], 0
    for item, a in zip(items, arrays, strict=True):
        if a.ndim != 2:
            raise ValueError(f"features of {item.get('id')} must be (T, D), got {a.shape}")
        entry = {key: item.get(key) for key in ("id", "path", "label", "speaker", "session")}
        if "split" in item:
            entry["split"] = item["split"]
        entry.update(length=int(a.shape[0]), shard=k, offset=offset)
        entries.append(entry)
        offset += a.shape[0]
    data = np.concatenate(arrays, axis=0).astype(dtype, copy=False) if arrays else None
    if data is not None and not np.isfinite(data).all():  # float16 overflow counts too
        bad = next(e["id"] for e, a in zip(entries, arrays) if not np.isfinite(np.asarray(a, dtype)).all())
        hint = " (beyond float16's range: store float32, without --fp16)" if dtype == "float16" else ""
        raise UserError(f"store {store_dir}: the features of {bad} are not finite (NaN or inf){hint}; "
                        "nothing written")
    _atomic_save_npy(data, store_dir / f"{shard_name(k)}.npy")
    atomic_write_json(entries, store_dir / f"{shard_name(k)}.done")
    return entries


def shard_done(store_dir: str | os.PathLike, k: int) -> bool:
    store_dir = Path(store_dir)
    return (store_dir / f"{shard_name(k)}.done").is_file() and (
        store_dir / f"{shard_name(k)}.npy").is_file()


def finalize(store_dir: str | os.PathLike, n_shards: int, folds: dict | None = None) -> "FeatureStore":
    """Merge the shards' .done entries into index.json, write folds.json and stats.json."""
    store_dir = Path(store_dir)
    missing = [k for k in range(n_shards) if not shard_done(store_dir, k)]
    if missing:
        raise UserError(f"store {store_dir}: shards {missing[:5]} are not complete; resume extraction")
    index = []
    for k in range(n_shards):
        index.extend(_read_json(store_dir / f"{shard_name(k)}.done"))
    ids = [e["id"] for e in index]
    if len(set(ids)) != len(ids):
        raise UserError(f"store {store_dir}: duplicate utterance ids in the index")
    if folds is not None:
        known = set(ids)
        for name, parts in folds.items():
            lost = [i for p in ("train", "test") for i in parts[p] if i not in known]
            if lost:
                raise UserError(f"store {store_dir}: {name} lists {len(lost)} ids not extracted, e.g. {lost[0]}")
        atomic_write_json(folds, store_dir / "folds.json")
    meta = _read_json(store_dir / "meta.json")
    meta["n_shards"], meta["n_items"] = n_shards, len(index)
    atomic_write_json(meta, store_dir / "meta.json")
    # index.json last: its presence is what marks the store complete
    atomic_write_json(index, store_dir / "index.json")
    store = FeatureStore.open(store_dir)
    atomic_write_json(store.compute_stats(), store_dir / "stats.json")
    for tmp in store_dir.glob(".*.tmp"):  # left by a writer killed mid-way
        tmp.unlink(missing_ok=True)
    return store


def write_store(path: str | os.PathLike, items: Iterable[dict], meta: dict,
                folds: dict | None = None) -> "FeatureStore":
    """Write a whole store from ``items``: dicts with "features" (T, D) plus "id", "label"
    and optionally "speaker", "session", "path", "split". A store without ``folds`` (e.g. GAN
    samples) gets session 0 and split "train" by default, so ``split(any, "train")`` is all of it.
    ``meta`` comes from :func:`make_meta`."""
    path = Path(path)
    if (path / "index.json").exists():
        raise UserError(f"a feature store already exists at {path}; choose a new directory")
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(meta, path / "meta.json")
    shard_size = int(meta.get("shard_size", 256))
    buf_items, buf_arrays, k = [], [], 0
    for item in items:
        a = np.asarray(item["features"])
        if a.ndim != 2 or a.shape[1] != meta["dim"]:
            raise UserError(f"item {item.get('id')}: features {a.shape} do not match dim {meta['dim']}")
        item = dict(item)
        item.setdefault("speaker", None)
        item.setdefault("path", None)
        if folds is None:
            item.setdefault("session", 0)
            item.setdefault("split", "train")
        buf_items.append(item)
        buf_arrays.append(a)
        if len(buf_items) == shard_size:
            write_shard(path, k, buf_items, buf_arrays, meta["dtype"])
            buf_items, buf_arrays, k = [], [], k + 1
    if buf_items:
        write_shard(path, k, buf_items, buf_arrays, meta["dtype"])
        k += 1
    if k == 0:
        raise UserError("write_store got no items")
    return finalize(path, k, folds)


# ---------------------------------------------------------------------------- reading
class FeatureStore:
    """Read side of a store. Shards are memory-mapped, so opening is cheap and many processes
    (DataLoader workers, DDP ranks) share the page cache instead of copying features."""

    def __init__(self, path: Path, meta: dict, index: list[dict], folds: dict | None):
        self.path, self.meta, self.index, self.folds = path, meta, index, folds
        self._shards: dict[int, np.ndarray] = {}
        self._finite: set[int] = set()
        self._stats = None
        self._pooled = None
        self._pos = {e["id"]: i for i, e in enumerate(index)}

    @classmethod
    def open(cls, path: str | os.PathLike) -> "FeatureStore":
        path = Path(path)
        if not (path / "meta.json").is_file():
            raise UserError(f"no feature store at {path} (meta.json missing)")
        if not (path / "index.json").is_file():
            raise UserError(f"feature store {path} is incomplete (no index.json): "
                            "rerun the extraction with the same arguments to resume it")
        meta = _read_json(path / "meta.json")
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"store {path} has format_version {meta.get('format_version')}, "
                            f"this code reads {FORMAT_VERSION}")
        folds = _read_json(path / "folds.json") if (path / "folds.json").is_file() else None
        store = cls(path, meta, _read_json(path / "index.json"), folds)
        store._check_shards()
        return store

    def _check_shards(self) -> None:
        """Cheap checks of what is on disk against meta.json: each shard's width (from the .npy
        header) and, through stats.json, that the training frames are finite (a store written by
        other tools, or edited, must not train to chance without a word)."""
        for k in sorted({e["shard"] for e in self.index}):
            p = self.path / f"{shard_name(k)}.npy"
            if not p.is_file():
                raise UserError(f"store {self.path}: {p.name} is missing")
            try:
                shape = self._mapped(k).shape
            except (ValueError, OSError) as e:
                raise UserError(f"store {self.path}: {p.name} is not a readable .npy array ({e})") from None
            if len(shape) != 2 or shape[1] != self.dim:
                raise UserError(f"store {self.path}: meta.json says dim {self.dim}, but {p.name} holds "
                                f"arrays of shape {tuple(shape)}")
        p = self.path / "stats.json"
        if p.is_file():
            stats = _read_json(p)
            bad = [name for name, s in stats.items()
                   if not (np.isfinite(s.get("mean", [])).all() and np.isfinite(s.get("std", [])).all())]
            if bad:
                raise UserError(f"store {self.path} holds non-finite features (NaN or inf): the statistics "
                                f"of {', '.join(bad)} are not finite; re-extract it")

    # -- metadata
    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def representation(self) -> dict:
        return self.meta["representation"]

    @property
    def label_map(self) -> dict:
        return self.meta.get("labels", LABELS)

    def __len__(self) -> int:
        return len(self.index)

    def check_compatible(self, dim=None, representation=None, upstream=None) -> None:
        check_compatible(f"feature store {self.path}", self.meta, dim, representation, upstream)

    # -- features
    def _mapped(self, k: int) -> np.ndarray:
        if k not in self._shards:
            self._shards[k] = np.load(self.path / f"{shard_name(k)}.npy", mmap_mode="r")
        return self._shards[k]

    def _shard(self, k: int) -> np.ndarray:
        """Shard ``k``, memory-mapped; checked finite on first use (one pass over it, which any
        training does anyway): dev and test frames are in no statistics, so a NaN there would
        otherwise only show as a chance-level score."""
        a = self._mapped(k)
        if k not in self._finite:
            for start in range(0, a.shape[0], 1 << 16):
                if not np.isfinite(a[start: start + (1 << 16)]).all():
                    row = start + int(np.argwhere(~np.isfinite(a[start: start + (1 << 16)]))[0][0])
                    bad = next((e["id"] for e in self.index if e["shard"] == k
                                and e["offset"] <= row < e["offset"] + e["length"]), "?")
                    raise UserError(f"store {self.path} holds non-finite features (NaN or inf) in "
                                    f"{shard_name(k)}.npy (utterance {bad}); re-extract it")
            self._finite.add(k)
        return a

    def features(self, i: int) -> np.ndarray:
        """(T, D) float32; a read-only view into the mmap for float32 stores, a copy for float16."""
        e = self.index[i]
        a = self._shard(e["shard"])[e["offset"]: e["offset"] + e["length"]]
        return a if a.dtype == np.float32 else a.astype(np.float32)

    def lengths(self, indices: Sequence[int] | None = None) -> np.ndarray:
        indices = range(len(self)) if indices is None else indices
        return np.array([self.index[i]["length"] for i in indices], dtype=np.int64)

    def pooled(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """(N, D) float32 time-means over each utterance's frames (computed once, in float64)."""
        if self._pooled is None:
            out = np.empty((len(self), self.dim), dtype=np.float32)
            for i in range(len(self)):
                out[i] = self.features(i).mean(axis=0, dtype=np.float64)
            self._pooled = out
        return self._pooled if indices is None else self._pooled[np.asarray(indices, dtype=np.int64)]

    def labels(self, indices: Sequence[int] | None = None) -> np.ndarray:
        indices = range(len(self)) if indices is None else indices
        try:
            return np.array([self.label_map[self.index[i]["label"]] for i in indices], dtype=np.int64)
        except KeyError as e:
            raise UserError(f"store {self.path}: label {e} is not in {list(self.label_map)}") from None

    def ids(self, indices: Sequence[int] | None = None) -> list[str]:
        indices = range(len(self)) if indices is None else indices
        return [self.index[i]["id"] for i in indices]

    # -- protocol
    def fold_names(self) -> list[str]:
        return sorted(self.folds) if self.folds else []

    def split(self, fold, part: str) -> list[int]:
        """Store positions of ``part`` of ``fold``, cut exactly as s3prl's emotion expert does:
        test = the fold's test_meta_data.json; train/dev = ``train_dev_indices`` over
        train_meta_data.json in its file order. A store without folds (synthetic) puts every item
        with split "train" in train, whatever the fold."""
        if part not in PARTS:
            raise UserError(f"part must be one of {PARTS}, got {part!r}")
        if not self.folds:
            return [i for i, e in enumerate(self.index) if e.get("split", "train") == part]
        fold = normalize_fold(fold)
        if fold not in self.folds:
            raise UserError(f"store {self.path} has no {fold}; it has {self.fold_names()}")
        if part == "test":
            ids = self.folds[fold]["test"]
        else:
            train_ids = self.folds[fold]["train"]
            tr, dv = train_dev_indices(len(train_ids))
            ids = [train_ids[j] for j in (tr if part == "train" else dv)]
        return [self._pos[i] for i in ids]

    def compute_stats(self) -> dict:
        groups = {f: self.split(f, "train") for f in self.fold_names()} or {"all": list(range(len(self)))}
        stats = {}
        for name, idx in groups.items():
            s = np.zeros(self.dim, np.float64)
            s2 = np.zeros(self.dim, np.float64)
            n = 0
            for i in idx:
                a = self.features(i).astype(np.float64)
                s += a.sum(0)
                s2 += np.square(a).sum(0)
                n += a.shape[0]
            if n == 0:
                raise UserError(f"store {self.path}: {name} has no training frames")
            mean = s / n
            std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
            stats[name] = {"mean": mean.tolist(), "std": np.maximum(std, STD_FLOOR).tolist(),
                           "n_utterances": len(idx), "n_frames": int(n)}
        return stats

    def stats(self, fold=None) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension (mean, std) of the frames of ``fold``'s train part, float32 (D,).
        A store without folds has only "all"."""
        if self._stats is None:
            p = self.path / "stats.json"
            self._stats = _read_json(p) if p.is_file() else self.compute_stats()
        key = "all" if not self.folds else normalize_fold(fold)
        if key not in self._stats:
            raise UserError(f"store {self.path} has no statistics for {key}")
        s = self._stats[key]
        return np.asarray(s["mean"], np.float32), np.asarray(s["std"], np.float32)

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("shard-*.npy"))
