"""Within-corpus speaker probe on cached features (any store whose index has speakers).

The paper (Section 5.3, Table 4) measures how much speaker identity the first layer of an SER
model keeps by training SUPERB's SID model on it. Here the same model shape,
``Linear(d -> 256) -> mean pooling -> Linear(256 -> n_speakers)`` (``er.model.ERModel`` with
UtteranceLevel/MeanPooling, i.e. s3prl's SID head), is trained on the utterances of one corpus:

- split: per speaker, a seeded ``train_ratio`` share of its utterances for training and the rest
  for testing (speaker-stratified, so every test speaker was seen in training);
- inputs: the store's RAW time-means, then either the fold's train standardisation (the plain
  upstream row) or a frozen ``SERProjector`` (the SER rows). The SID head is linear up to its
  mean pooling and the projector is affine, so training on time-means equals training on frames
  (see er/model.py); it runs in seconds.
- training: a fixed budget (``steps`` full-batch Adam updates at ``lr``) and the final model is
  scored (no model selection on the test part). Accuracy is reported as mean ± std over seeds;
  each seed draws its own split and initialisation, shared by all rows (paired)."""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..utils import UserError, merge_config, seed_everything

DEFAULT_PROBE = {
    "train_ratio": 0.7,     # per speaker
    "steps": 1000,          # full-batch Adam updates
    "lr": 1.0e-3,
    "weight_decay": 0.0,
    "projector_dim": 256,   # SUPERB SID head: Linear -> MeanPooling -> Linear
    "standardize_inputs": False,  # z-score each row's probe inputs with its training split
    "parts": None,          # None: every utterance of the store; or e.g. ["train", "dev"] of the fold
}


def probe_config(overrides: dict | None = None) -> dict:
    return merge_config(DEFAULT_PROBE, overrides, "speaker-probe")


def speaker_split(speakers: Sequence, train_ratio: float = 0.7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions: per speaker, ``round(train_ratio * n)`` of its utterances (at
    least 1, and at most n-1 when n >= 2) drawn at random for training. Speakers are visited in
    sorted order with one generator, so the split depends only on (speakers, ratio, seed)."""
    if not 0.0 < train_ratio < 1.0:
        raise UserError(f"train_ratio must be in (0, 1), got {train_ratio}")
    speakers = np.asarray([str(s) for s in speakers])
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for spk in sorted(set(speakers.tolist())):
        pos = np.flatnonzero(speakers == spk)
        pos = pos[rng.permutation(len(pos))]
        n_tr = int(round(train_ratio * len(pos)))
        n_tr = min(max(n_tr, 1), max(len(pos) - 1, 1))
        tr.append(pos[:n_tr])
        te.append(pos[n_tr:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))


def store_speakers(store, indices=None) -> list[str]:
    indices = range(len(store)) if indices is None else indices
    spk = [store.index[i].get("speaker") for i in indices]
    missing = sum(s in (None, "") for s in spk)
    if missing:
        raise UserError(f"store {store.path}: {missing} utterances have no speaker label; "
                        "the speaker probe needs a corpus with speakers")
    return [str(s) for s in spk]


def probe_indices(store, fold, parts) -> list[int]:
    if parts is None:
        return list(range(len(store)))
    out = []
    for p in parts:
        out += store.split(fold, p)
    return sorted(set(out))


def train_speaker_probe(x_tr, y_tr, x_te, y_te, n_speakers: int, cfg: dict | None = None, seed: int = 0,
                        device="cpu") -> dict:
    """Train the SID head on pooled (N, d) inputs; returns test/train accuracy of the last step."""
    from ..er.model import DEFAULT_MODELRC, ERModel

    cfg = probe_config(cfg)
    x_tr = torch.as_tensor(np.asarray(x_tr, np.float32), device=device)
    x_te = torch.as_tensor(np.asarray(x_te, np.float32), device=device)
    y_tr_t = torch.as_tensor(np.asarray(y_tr, np.int64), device=device)
    if cfg["standardize_inputs"]:
        mu, sd = x_tr.mean(0), x_tr.std(0).clamp_min(1e-5)
        x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    seed_everything(seed)
    rc = dict(copy.deepcopy(DEFAULT_MODELRC), projector_dim=int(cfg["projector_dim"]))
    model = ERModel(x_tr.shape[1], n_speakers, rc).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    model.train()
    for _ in range(int(cfg["steps"])):
        loss = F.cross_entropy(model.forward_pooled(x_tr), y_tr_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        p_te = model.forward_pooled(x_te).argmax(-1).cpu().numpy()
        p_tr = model.forward_pooled(x_tr).argmax(-1).cpu().numpy()
    return {"test_acc": metrics.accuracy(y_te, p_te), "train_acc": metrics.accuracy(y_tr, p_tr),
            "final_loss": float(loss.item()), "predictions": p_te}


def speaker_probe(store, fold, embedders: dict, seeds: Sequence[int] = (0, 1, 2), cfg: dict | None = None,
                  device="cpu") -> dict:
    """Speaker-ID accuracy of each row of ``embedders``: ``name -> None`` (the plain upstream
    features, standardised with ``fold``'s train statistics) or ``name -> SERProjector`` (a
    frozen first SER layer on the raw features). Returns ``{name: row}`` in the given order,
    each row with ``acc_mean``, ``acc_std``, ``accs`` (one per seed), ``train_acc_mean``, the
    split sizes and, for SER rows, the layer's effective rank."""
    cfg = probe_config(cfg)
    idx = probe_indices(store, fold, cfg["parts"])
    spk = store_speakers(store, idx)
    names = sorted(set(spk))
    if len(names) < 2:
        raise UserError(f"store {store.path}: the speaker probe needs at least 2 speakers, found {names}")
    y = np.array([names.index(s) for s in spk], dtype=np.int64)
    raw = store.pooled(idx).astype(np.float32)
    mean, std = store.stats(fold)
    inputs = {}
    for name, emb in embedders.items():
        if emb is None:
            inputs[name] = (raw - mean) / std
        else:
            inputs[name] = emb(torch.from_numpy(raw)).numpy()
    rows = {name: {"accs": [], "train_accs": []} for name in embedders}
    n_tr = n_te = None
    for seed in seeds:
        tr, te = speaker_split(spk, cfg["train_ratio"], seed)
        n_tr, n_te = len(tr), len(te)
        for name, x in inputs.items():
            r = train_speaker_probe(x[tr], y[tr], x[te], y[te], len(names), cfg, seed=int(seed), device=device)
            rows[name]["accs"].append(r["test_acc"])
            rows[name]["train_accs"].append(r["train_acc"])
    out = {}
    for name, r in rows.items():
        s = metrics.summarize(r["accs"])
        emb = embedders[name]
        out[name] = {"acc_mean": s["mean"], "acc_std": s["std"], "accs": r["accs"],
                     "train_acc_mean": float(np.mean(r["train_accs"])), "n_seeds": len(r["accs"]),
                     "n_speakers": len(names), "n_train": n_tr, "n_test": n_te,
                     "input_dim": int(inputs[name].shape[1]),
                     "effective_rank": None if emb is None else emb.effective_rank(),
                     "source": {"kind": "upstream"} if emb is None else dict(emb.info)}
    return out
