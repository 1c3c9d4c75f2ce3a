"""How GAN-ATT for pretrained SSL features (gan_att_ssl_cpu.yaml) was set, on the built-in corpus.

    python benchmarks/gan_att_choice.py --store STORE [--fold 1] [--work runs/choose_att_builtin]
        [--pool POOL_DIR] [--device cpu] [--threads 1] [--out benchmarks/results/gan_att_choice.json]

STORE: the built-in corpus through GE2E layer 2, e.g. ``runs/table4/builtin-ge2e-L2/store`` of
``benchmarks/table4_upstreams.py`` (POOL_DIR: its ``pool/fold1``; without --pool the teachers are
trained as the pipeline trains them). Two measurements, both on train/dev of the built-in corpus,
whose use for choices is allowed by the protocol (it shares no speaker with EmoDB):

1. crop length: a linear model (Adam, 500 full-batch steps) trained on whole-utterance time means
   of a fold's train part, scored (dev UAR) on the time means of one random T-frame crop of each
   dev utterance, T in 16/32/64/128 and the whole utterance. The GAN learns T-frame crops and the
   SUPERB ER linear model sees time means, so this is what a crop length costs at best. Every fold.
2. 1-D vs 2-D convolutions: GAN-ATT + L_DIV + L_SML trained on --fold with gan_att_ssl_cpu.yaml
   (``model.conv: 1d``) and with the 2-D gan_att_cpu.yaml set to the same T, batch, λ, schedule,
   EMA and steps (a 4x wider critic than shipped); the quick-eval dev UAR curve of each.
Reruns read finished GAN runs from --work and resume interrupted ones.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lambda_sweep import gan_run  # noqa: E402

from s3prl_dd import metrics  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.er.pool import build_pool  # noqa: E402
from s3prl_dd.er.train import er_config  # noqa: E402
from s3prl_dd.features.store import FeatureStore  # noqa: E402
from s3prl_dd.gan.data import crop_or_tile  # noqa: E402
from s3prl_dd.utils import apply_overrides, atomic_write_json  # noqa: E402

GAN_DIR = ROOT / "downstream_configs" / "gan"
CROPS = (16, 32, 64, 128, 0)  # 0 = the whole utterance
SHARED = "model.D=auto"
CANDIDATES = {
    "1d": (GAN_DIR / "gan_att_ssl_cpu.yaml", SHARED),
    "2d": (GAN_DIR / "gan_att_cpu.yaml",
           SHARED + ",,model.T=64,,optim.batch_size=32,,model.d_channels=[8,8,16,16,16,16,16,16],,loss.lambda_sml=1.0,,"
           "train.ema_decay=0.995,,optim.lr_schedule=cosine,,train.steps=1000,,train.eval_every=125,,train.save_every=250"),
}
POOL_OVERRIDES = "runner.total_steps=5000,,datarc.standardize=False,,pool.seeds=[0],,pool.checkpoints_per_seed=5"


def crop_uar(store: FeatureStore, fold: str, seed: int = 0) -> dict:
    """Dev UAR of a whole-utterance linear model on T-frame crop means, per T."""
    torch.manual_seed(seed)
    crops = torch.Generator().manual_seed(seed)
    tr, dv = store.split(fold, "train"), store.split(fold, "dev")
    x, y = torch.tensor(store.pooled(tr)), torch.tensor(store.labels(tr))
    mu, sd = x.mean(0), x.std(0) + 1e-5
    model = torch.nn.Linear(x.shape[1], len(store.label_map))
    opt = torch.optim.Adam(model.parameters(), 1e-2, weight_decay=1e-4)
    for _ in range(500):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model((x - mu) / sd), y).backward()
        opt.step()
    out = {}
    for T in CROPS:
        # the GAN's own real-batch rule (s3prl_dd.gan.data.crop_or_tile: crop, or tile if shorter)
        feats = [torch.from_numpy(store.features(i)) for i in dv]
        means = torch.stack([(crop_or_tile(f, T, crops) if T else f).mean(0) for f in feats])
        with torch.no_grad():
            pred = model((means - mu) / sd).argmax(1).numpy()
        out["whole" if T == 0 else str(T)] = metrics.uar(store.labels(dv), pred)
    return out


def gan_curve(name: str, store, fold: str, pool, work: Path, device: str) -> dict:
    cfg, over = CANDIDATES[name]
    return {"config": str(Path(cfg).relative_to(ROOT)), "override": over,
            **gan_run(cfg, store, fold, pool, work / name, over, device)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--fold", type=int, default=1, help="fold of the GAN runs (crop UAR: every fold)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "choose_att_builtin")
    p.add_argument("--pool", type=Path, help="a teacher pool directory of --fold (default: trained into --work)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gan_att_choice.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    store, fold = FeatureStore.open(a.store), f"fold{a.fold}"
    crops = {f: crop_uar(store, f) for f in store.fold_names()}
    print("dev UAR of crop means (whole-utterance linear model):")
    for T in crops[fold]:
        vals = [c[T] for c in crops.values()]
        print(f"  T={T:>5}: {100 * np.mean(vals):5.1f} ± {100 * np.std(vals, ddof=1):.1f} over {len(vals)} folds")
    pool = a.pool or build_pool(store, fold, apply_overrides(er_config(profile="converge"), POOL_OVERRIDES),
                                a.work / "pool" / fold, device=a.device, progress=True)
    gans = {name: gan_curve(name, store, fold, str(pool), a.work, a.device) for name in CANDIDATES}
    for name, g in gans.items():
        curve = " ".join(f"{s}:{100 * u:.0f}" for s, u in g["dev_curve"])
        print(f"GAN-ATT {name}: best dev UAR {100 * g['best_dev_uar']:.1f} at step {g['best_step']}; {curve}")
    atomic_write_json({"store": str(a.store), "fold": a.fold, "crop_dev_uar": crops, "gans": gans,
                       "note": "built-in corpus only (allowed for choices); crop_dev_uar: per fold, dev UAR of a "
                               "linear model on whole-utterance means, scored on T-frame crop means",
                       "env": {"torch": torch.__version__, "threads": a.threads, "device": a.device,
                               "python": platform.python_version()}}, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
