"""GAN trainer configuration: defaults, resolution with ``-o`` overrides, and the checks that
tie a config to a feature store, a fold and a teacher pool before any training starts."""
from __future__ import annotations

import os
from pathlib import Path

from .. import utils
from ..features.store import FeatureStore, check_compatible, normalize_fold
from ..utils import UserError

MM_TARGETS = ("batch", "train")  # whose time-mean moments L_MM matches: the real batch's, the train split's

DEFAULTS = {
    # lr_schedule: constant | cosine (to lr_min_ratio x lr at train.steps); warmup_steps: linear.
    "optim": {"lr_g": 1e-4, "lr_d": 1e-4, "betas": [0.0, 0.9], "n_critic": 5, "batch_size": 64,
              "lr_schedule": "constant", "lr_min_ratio": 0.1, "warmup_steps": 0},
    "loss": {"lambda_gp": 10.0, "lambda_cls_real": 1.0, "lambda_cls_fake": 1.0, "lambda_fm": 1.0,
             "lambda_div": 0.0, "lambda_sml": 0.0, "tau": 0.08,
             "lambda_cls_fake_critic": None,  # None: λ3, as Eq. 4
             # L_MM, beyond the paper (losses.moment_matching_loss), against the real batch's
             # time-mean moments or, with mm_targets: train, the whole train split's
             "lambda_mm": 0.0, "mm_targets": "batch"},
    "train": {"steps": 10000, "eval_every": 1000, "save_every": 1000, "log_every": 50,
              "keep_last": 3, "seed": 0, "real_fit": "tile", "device": None, "bf16": False,
              "ema_decay": None,  # None: no EMA generator; e.g. 0.999 (s3prl_dd.gan.ema)
              # GAN space = features standardised with the fold's train frame statistics; gan_mlp
              # may take its utterance means' own (s3prl_dd.gan.realdata)
              "standardize": "frames"},
    # Quick evaluation: a balanced sample of `ppc` per class trains the SUPERB ER model (the ER
    # profile, then `er_overrides`) and is scored on the fold's real DEV split; test is never read.
    "eval": {"ppc": 20, "repeats": 3, "er_profile": "fast", "er_overrides": "selection.metric='uar'"},
}


def resolve_config(cfg, overrides=None) -> dict:
    """Trainer defaults <- the config (path or dict) <- ``a.b=v,,c=w`` overrides (strict keys)."""
    cfg = utils.load_yaml(cfg) if isinstance(cfg, (str, os.PathLike)) else (cfg or {})
    if "model" not in cfg:
        raise UserError("the GAN config has no model: section")
    return utils.apply_overrides(utils.merge_config(DEFAULTS, cfg), overrides)


def resolve_recorded(path, run_dir: Path, what: str):
    """A path a run recorded (relative to the directory it was started from): as recorded when
    it exists from here, else under an ancestor of the run directory (the run was started from
    one, e.g. ``runs/demo/store`` beside ``runs/demo/gans/...``), so a resume from another
    working directory finds the same files."""
    if path is None or isinstance(path, FeatureStore) or "," in str(path):  # (a list of runner .ckpt: as given)
        return path
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    for base in run_dir.resolve().parents:
        if (base / p).exists():
            return str(base / p)
    raise UserError(f"--resume {run_dir}: the run's {what} {path} is not found (neither from here nor "
                    f"beside the run directory); give it with --{what}")


def prepare(cfg, store, fold, pool_dir, resume, out_dir, overrides):
    """Resolve config, store and run directory, on every rank (rank 0 creates the directory)."""
    run_dir = None
    if resume:
        run_dir = Path(out_dir if resume is True else resume)
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"--resume {run_dir}: not a GAN run directory (config.yaml missing)")
        saved = utils.load_yaml(run_dir / "config.yaml")
        # over the defaults: a run saved before a key existed resumes with that key's default
        # (and -o may set it); e.g. train.steps=... to train longer
        cfg = resolve_config(saved, overrides)
        run = saved.get("run", {})
        store = store or resolve_recorded(run.get("store"), run_dir, "store")
        pool_dir = pool_dir or resolve_recorded(run.get("pool"), run_dir, "pool")
        fold = fold or run.get("fold")
    else:
        cfg = resolve_config(cfg, overrides)
    if store is None or fold is None:
        raise UserError("a feature store and a fold are required (--store, --fold)")
    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    fold = normalize_fold(fold) if store.folds else str(fold)
    m = cfg["model"]
    for key, have in (("D", store.dim), ("num_classes", len(store.label_map))):
        if m.get(key) in (None, "auto"):
            m[key] = have
        elif int(m[key]) != have:
            raise UserError(f"model.{key}={m[key]} but the store {store.path} has {have}; "
                            f"override with -o model.{key}={have}")
    if cfg["loss"]["mm_targets"] not in MM_TARGETS:
        raise UserError(f"loss.mm_targets={cfg['loss']['mm_targets']!r}: choose from {', '.join(MM_TARGETS)}")
    if cfg["loss"].get("lambda_sml") and pool_dir is None:
        raise UserError("loss.lambda_sml > 0 needs a teacher pool (--pool); "
                        "set -o loss.lambda_sml=0 for the paper's baseline without L_SML")
    cfg["run"] = {"store": str(store.path), "fold": fold, "pool": str(pool_dir) if pool_dir else None}
    return cfg, store, fold, pool_dir, run_dir


def load_pool(pool_dir, store, fold, device):
    from ..er.pool import TeacherPool

    pool = TeacherPool.load(pool_dir, expect_dim=store.dim, expect_representation=store.representation,
                            device=device)
    if pool.info.get("upstream"):  # same dim and layer of another upstream is another feature space
        check_compatible(f"teacher pool {pool_dir}", pool.info, upstream=store.meta.get("upstream"))
    if store.folds and normalize_fold(pool.info["fold"]) != fold:
        # A pool of another fold was trained on this fold's test session: L_SML would leak it.
        raise UserError(f"teacher pool {pool_dir} was trained on {pool.info['fold']}, not {fold}")
    return pool
