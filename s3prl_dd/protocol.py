"""The SUPERB ER protocol in one place: labels, folds, and s3prl's train/dev split.

Every stage (s3prl expert, feature store, cached trainer, GAN) must cut a fold exactly as
s3prl's emotion expert does, or dev/test numbers stop being comparable."""
from __future__ import annotations

import torch

# s3prl's IEMOCAP_preprocess.py: exc is merged into hap, everything else is dropped.
LABELS = {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
LABEL_ALIASES = {"exc": "hap"}
N_FOLDS = 5
VALID_RATIO = 0.2
SAMPLE_RATE = 16000


def fold_name(k: int) -> str:
    return f"fold{k}"


def session_dir(fold: str) -> str:
    """``fold3`` -> ``Session3``: s3prl's expert maps folds to meta-data directories this way."""
    return fold.replace("fold", "Session")


def train_dev_indices(n: int, valid_ratio: float = VALID_RATIO) -> tuple[list[int], list[int]]:
    """Indices of s3prl's dev split: ``torch.manual_seed(0); random_split(dataset, ...)`` over
    the fold's train_meta_data.json, reproduced without touching the global RNG."""
    trainlen = int((1 - valid_ratio) * n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    return perm[:trainlen], perm[trainlen:]
