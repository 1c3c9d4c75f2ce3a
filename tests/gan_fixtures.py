"""Tiny stores, pools and GAN configs shared by the GAN trainer and sampler tests."""
from __future__ import annotations

import numpy as np

from s3prl_dd.features.store import make_meta, write_store
from s3prl_dd.protocol import LABELS

LAB = list(LABELS)
REP = {"kind": "hidden_state", "layer": -1}
DIM = 8


def tiny_store(path, per_session=8, dim=DIM, offset=5.0, scale=3.0, seed=0):
    """5 sessions of variable-length utterances (4..14 frames) whose means separate the classes;
    raw features far from standard scale, so a missed (de)standardisation shows."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((4, dim)) * 2
    items, sessions = [], {}
    for s in range(1, 6):
        for k in range(per_session):
            c = k % 4
            f = offset + scale * (centres[c] + rng.standard_normal((int(rng.integers(4, 15)), dim)))
            uid = f"s{s}/u{k}.wav"
            items.append({"id": uid, "path": uid, "label": LAB[c], "speaker": f"spk{s}", "session": s,
                          "features": f.astype(np.float32)})
            sessions.setdefault(s, []).append(uid)
    folds = {f"fold{s}": {"train": [i for t, ids in sessions.items() if t != s for i in ids],
                          "test": list(sessions[s])} for s in sessions}
    meta = make_meta("fbank_no_cmvn", REP, dim, downsample_rate=160, shard_size=16)
    return write_store(path, items, meta, folds)


def tiny_pool(store, path, fold="fold1"):
    from s3prl_dd.er.pool import build_pool
    from s3prl_dd.er.train import er_config

    cfg = er_config(profile="fast", overrides="runner.total_steps=12,,runner.eval_step=6,,runner.log_step=6,,"
                                              "pool.seeds=[0],,pool.checkpoints_per_seed=2,,pool.first_step=3")
    return build_pool(store, fold, cfg, out_dir=path, device="cpu", progress=False)


def gan_cfg(arch="gan_att", steps=4, **train):
    model = {"gan_mlp": {"arch": "gan_mlp", "T": 1, "D": DIM, "num_classes": 4, "noise_dim": 6,
                         "g_hidden": [16], "d_hidden": [16]},
             "gan_att": {"arch": "gan_att", "T": 8, "D": DIM, "num_classes": 4, "noise_dim": 6,
                         "g_init_channels": 4, "g_channels": [4, 4], "g_up": 2, "g_dilations": [2, 1],
                         "attn_after": 2, "attn_dim": 8, "attn_heads": 2,
                         "d_channels": [4, 4], "d_strides": 2}}[arch]
    return {"model": model,
            "loss": {"lambda_gp": 10.0, "lambda_cls_real": 1.0, "lambda_cls_fake": 1.0, "lambda_fm": 1.0,
                     "lambda_div": 1.0, "lambda_sml": 1.0, "tau": 0.3},
            "optim": {"lr_g": 1e-3, "lr_d": 1e-3, "betas": [0.0, 0.9], "n_critic": 2, "batch_size": 6},
            "train": {"steps": steps, "eval_every": 2, "save_every": 2, "log_every": 1, "keep_last": 3,
                      "seed": 0, "real_fit": "tile", **train},
            "eval": {"ppc": 2, "repeats": 2, "er_profile": "fast",
                     "er_overrides": "selection.metric='uar',,runner.total_steps=4,,runner.eval_step=2"}}
