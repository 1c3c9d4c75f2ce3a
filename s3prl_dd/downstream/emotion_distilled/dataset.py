"""Datasets for the emotion_distilled expert: real audio listed in s3prl's meta json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ...corpus.audio import load_audio
from ...protocol import LABELS
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


def collate_fn(samples):
    return zip(*samples)


DEFAULT_LABELS = LABELS
