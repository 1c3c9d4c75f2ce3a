"""Datasets for the emotion_distilled expert: real audio listed in s3prl's meta json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ...corpus.audio import load_audio
from ...utils import UserError


def read_meta(meta_path: str | Path) -> dict:
    meta_path = Path(meta_path)
    if not meta_path.is_file():
        raise UserError(f"meta data file not found: {meta_path} (build the corpus first: s3prl-dd corpus ...)")
    with open(meta_path) as f:
        data = json.load(f)
    for key in ("labels", "meta_data"):
        if key not in data:
            raise UserError(f"{meta_path}: field '{key}' missing (not an s3prl emotion meta json)")
    if not data["meta_data"]:
        raise UserError(f"{meta_path}: no utterances")
    unknown = {m["label"] for m in data["meta_data"]} - set(data["labels"])
    if unknown:
        raise UserError(f"{meta_path}: labels {sorted(unknown)} are not in its 'labels' map")
    return data


class RealEmotionDataset(Dataset):
    """s3prl's IEMOCAPDataset, reading audio with soundfile (mono, 16 kHz) and failing with the
    file's name instead of deep inside torchaudio."""

    def __init__(self, root: str | Path, meta_path: str | Path, pre_load: bool = True):
        self.root = Path(root)
        data = read_meta(meta_path)
        self.class_dict = data["labels"]
        self.idx2emotion = {v: k for k, v in self.class_dict.items()}
        self.class_num = len(self.class_dict)
        self.meta_data = data["meta_data"]
        self.wavs = [self._load(i) for i in range(len(self))] if pre_load else None

    def _load(self, idx: int) -> np.ndarray:
        return load_audio(self.root / self.meta_data[idx]["path"])

    def __getitem__(self, idx):
        wav = self.wavs[idx] if self.wavs is not None else self._load(idx)
        item = self.meta_data[idx]
        return wav, self.class_dict[item["label"]], Path(item["path"]).stem

    def __len__(self):
        return len(self.meta_data)


class StoreItemDataset(Dataset):
    """The same meta json as :class:`RealEmotionDataset`, but each item is a store-item request
    (``upstream/requests.py``) for ``-u cached`` instead of audio: no audio is read at all."""

    def __init__(self, store, meta_path: str | Path):
        from ...upstream.requests import store_rate

        data = read_meta(meta_path)
        self.class_dict = data["labels"]
        self.idx2emotion = {v: k for k, v in self.class_dict.items()}
        self.class_num = len(self.class_dict)
        self.meta_data = data["meta_data"]
        # the store's ids are the meta json paths (features/extract.py); the file stem is a
        # fallback for stores extracted from a differently rooted copy of the corpus
        pos = {}
        for i, e in enumerate(store.index):
            for key in (e.get("path"), e.get("id"), Path(str(e.get("path") or e["id"])).stem):
                pos.setdefault(key, i)
        self.positions = []
        for item in self.meta_data:
            i = pos.get(item["path"], pos.get(Path(item["path"]).stem))
            if i is None:
                raise UserError(f"{meta_path}: utterance {item['path']} is not in the feature store "
                                f"{store.path}; extract the store from this corpus")
            self.positions.append(i)
        self.lengths = store.lengths(self.positions).tolist()
        self.rate = store_rate(store.meta)

    def __getitem__(self, idx):
        from ...upstream.requests import encode_item

        item = self.meta_data[idx]
        wav = encode_item(self.positions[idx], self.lengths[idx], self.rate)
        return wav, self.class_dict[item["label"]], Path(item["path"]).stem

    def __len__(self):
        return len(self.meta_data)


def collate_fn(samples):
    return zip(*samples)

