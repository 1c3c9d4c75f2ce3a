"""Train the SUPERB ER model on cached features, as s3prl's runner would on the fly.

The schedule reproduces s3prl's runner + emotion expert: shuffled mini-batches of
``train_batch_size`` (last one short), ``gradient_accumulate_steps`` backward passes per
optimizer step (the count runs across epochs), gradient-norm clipping, a "step" = one optimizer
update, dev evaluation every ``eval_step``, best dev score (strictly greater) kept, and test
evaluated once, with the best dev model. For the linear model the 8 accumulated mini-batches
are done as one forward pass over time-means with per-item weights ``1 / (8 * len(mini-batch))``,
which gives the same gradient as accumulating them one by one.

Config: ``downstream_configs/er_cached.yaml`` (== DEFAULT_CONFIG; a test keeps them equal)."""
from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..runlog import RunLog
from ..utils import (UserError, apply_overrides, atomic_write_json, config_path, load_yaml, pick_device, save_yaml,
                     seed_everything)
from .data import ERData, standardize
from .model import DEFAULT_MODELRC, ERModel, input_space, pad, save_checkpoint

DEFAULT_CONFIG = {
    "runner": {"total_steps": 30000, "gradient_clipping": 1, "gradient_accumulate_steps": 8,
               "log_step": 500, "eval_step": 1000, "bf16": False, "patience": None},
    "optimizer": {"name": "Adam", "lr": 1.0e-4},
    "datarc": {"train_batch_size": 4, "eval_batch_size": 4, "standardize": False, "pooled": "auto"},
    "selection": {"metric": "uar"},
    "modelrc": copy.deepcopy(DEFAULT_MODELRC),
    "pool": {"seeds": [0, 1, 2], "checkpoints_per_seed": 5, "spacing": "log", "first_step": 20},
    "profiles": {"fast": {"optimizer.lr": 1.0e-3, "runner.total_steps": 1000, "runner.eval_step": 50,
                          "runner.log_step": 50, "datarc.eval_batch_size": 32},
                 "converge": {"optimizer.lr": 1.0e-3, "runner.total_steps": 20000, "runner.patience": 1500,
                              "runner.eval_step": 50, "runner.log_step": 50, "datarc.eval_batch_size": 32,
                              "datarc.standardize": "auto"}},
}
CONFIG_PATH = config_path("downstream_configs/er_cached.yaml")


def er_config(path=None, profile: str | None = None, overrides=None) -> dict:
    """Resolved config: file (or defaults), then a named profile, then ``a.b=v,,c=w`` overrides."""
    cfg = load_yaml(path) if path is not None else copy.deepcopy(DEFAULT_CONFIG)
    if profile:
        prof = cfg.get("profiles", {}).get(profile)
        if prof is None:
            raise UserError(f"no profile '{profile}' in the ER config (have {list(cfg.get('profiles', {}))})")
        cfg = apply_overrides(cfg, [f"{k}={v!r}" for k, v in prof.items()])
    return apply_overrides(cfg, overrides)


def _use_pooled(model: ERModel, cfg: dict) -> bool:
    want = cfg["datarc"].get("pooled", "auto")
    if want == "auto":
        return model.supports_pooled
    if want and not model.supports_pooled:
        raise UserError("datarc.pooled=true needs the linear model (UtteranceLevel + MeanPooling)")
    return bool(want)


def microbatch_schedule(n: int, batch_size: int, generator: torch.Generator):
    """Endless stream of s3prl-style mini-batches: a fresh permutation per epoch, the last batch
    of an epoch short (DataLoader(shuffle=True, drop_last=False))."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for s in range(0, n, batch_size):
            yield perm[s: s + batch_size]


def s3prl_batches(n: int, batch_size: int):
    """The runner's mini-batches drawn exactly as it draws them: a ``DataLoader(shuffle=True)``
    per epoch, its shuffling seeded from the global torch RNG when the epoch's first batch is
    asked for. With ``schedule="s3prl"`` the global RNG also follows the runner (seed, then
    Featurizer probe, model init, re-seeded at each evaluation), so the batches are the same."""
    from torch.utils.data import DataLoader

    while True:
        for batch in DataLoader(range(n), batch_size=batch_size, shuffle=True):
            yield batch


def _s3prl_eval_reseed(seed: int) -> None:
    """What the runner's evaluate() leaves in the global torch RNG: it seeds with ``--seed`` and
    builds an (unshuffled) eval DataLoader, whose iterator draws one base seed."""
    from torch.utils.data import DataLoader

    torch.manual_seed(seed)
    iter(DataLoader([0]))


@torch.no_grad()
def predict(model: ERModel, x, pooled: bool, batch_size: int, device, bf16: bool = False) -> np.ndarray:
    """Logits (N, C) as float32 numpy, in data order."""
    model.eval()
    out = []
    if pooled:
        for s in range(0, len(x), 4096):
            out.append(model.forward_pooled(x[s: s + 4096].to(device)).float().cpu())
    else:
        for s in range(0, len(x), batch_size):
            feats, lengths = pad([x[i].to(device) for i in range(s, min(s + batch_size, len(x)))])
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                out.append(model(feats, lengths).float().cpu())
    return torch.cat(out).numpy()


def _scores(logits: np.ndarray, y: torch.Tensor) -> dict:
    pred = logits.argmax(-1)
    return {"acc": metrics.accuracy(y.numpy(), pred), "uar": metrics.uar(y.numpy(), pred),
            "loss": float(F.cross_entropy(torch.from_numpy(logits), y).item())}


def train_er(train: ERData, dev: ERData | None, test: ERData | None, cfg: dict | None = None, *,
             stats=None, out_dir: str | os.PathLike | None = None, seed: int = 0, device=None,
             meta: dict | None = None, save_steps=(), return_model: bool = False, n_classes: int = 4,
             schedule: str = "generator") -> dict:
    """Train on ``train``, select on ``dev`` (None: keep the last step), score ``test``.
    Each split is an :class:`ERData` or a ``(features, labels)`` pair, features being a list of
    (T, D) frame arrays/tensors or an (N, D) array of time-means (GAN samples plug in here).

    ``stats`` = (mean, std) of the real fold's train frames. ``datarc.standardize``: True applies
    them to every split, False trains on raw features, "auto" trains both ways and keeps the one
    with the better best dev score (the choice is made on this run's own dev split and recorded
    as ``standardized``). All splits must be in the same raw feature space. ``runner.patience``
    (steps, optional) stops a run whose dev score has not improved for that long;
    ``runner.total_steps`` is then a cap. ``meta`` (e.g. representation, fold, upstream) goes
    into every checkpoint, with the input space the model was trained in. ``save_steps``: extra
    steps at which ``er-<step>.pt`` is written whether or not it is the best.

    Returns test_uar, test_acc, dev_uar, dev_acc, best_step, steps (run), stopped ("patience" |
    "cap"), seconds_to_best (measured wall time from the first step to the end of the selected
    evaluation), train_seconds (the whole run; both runs under "auto"), standardized,
    predictions (test argmax, data order), test_labels, test_ids (+ model).

    ``schedule``: "generator" shuffles with a private generator seeded by ``seed`` (the global
    RNG never matters); "s3prl" replays the global-RNG use of s3prl's runner run with
    ``--seed seed`` (model init and every epoch's shuffle), so both train the same model from
    the same batches (tests/test_parity.py)."""
    cfg = cfg or er_config()
    train, dev, test = ERData.coerce(train), ERData.coerce(dev), ERData.coerce(test)
    device = str(pick_device(device))
    _check_inputs(cfg, schedule, n_classes, train=train, dev=dev, test=test)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out / "config.yaml")
    spaces = _candidate_spaces(cfg["datarc"].get("standardize", False), stats, dev)
    if len(spaces) > 1 and save_steps:
        raise UserError("save_steps needs one input space: set datarc.standardize to true or false")
    log = RunLog(out)
    fits = []
    for std in spaces:
        # under "auto" each space is a run of its own in the logs (dev/raw/uar, dev/standardized/uar)
        # and only the selected one leaves a checkpoint, written below
        tag = ("standardized" if std else "raw") if len(spaces) > 1 else None
        fits.append(_fit(train, dev, test, cfg, stats if std else None, seed, device, n_classes, schedule, log, tag,
                         out if len(spaces) == 1 else None, dict(meta or {}, seed=seed), save_steps))
    metric = cfg.get("selection", {}).get("metric", "uar")
    fit = max(fits, key=lambda f: f["best"]["score"])  # first wins a tie: raw, the runner's space
    model, best, xs = fit["model"], fit["best"], fit["xs"]
    model.load_state_dict(best["state"])
    if out is not None and best["path"] is None:  # no dev (the last step), or chosen under "auto"
        save_checkpoint(model, out / f"er-{best['step']}.pt", input_space=fit["space"], **fit["meta"],
                        step=best["step"], dev_acc=best["dev"].get("acc"), dev_uar=best["dev"].get("uar"),
                        best=dev is not None)
    result = {"best_step": best["step"], "dev_acc": best["dev"].get("acc"), "dev_uar": best["dev"].get("uar"),
              "seconds_to_best": best["seconds"], "train_seconds": sum(f["seconds"] for f in fits),
              "steps": fit["steps"], "stopped": fit["stopped"], "cap": int(cfg["runner"]["total_steps"]),
              "standardized": fit["space"]["standardized"], "pooled": fit["pooled"], "seed": seed,
              "selection_metric": metric}
    if len(fits) > 1:
        result["dev_by_space"] = {("standardized" if f["space"]["standardized"] else "raw"): f["best"]["score"]
                                  for f in fits}
    if test is not None:
        logits = predict(model, xs["test"][0], fit["pooled"], cfg["datarc"]["eval_batch_size"], device, fit["bf16"])
        pred, y = logits.argmax(-1), test.labels
        result.update(test_acc=metrics.accuracy(y, pred), test_uar=metrics.uar(y, pred),
                      predictions=pred, test_labels=y, test_ids=test.ids)
        log(best["step"], "test", {"acc": result["test_acc"], "uar": result["test_uar"]})
        if out is not None:
            ids = test.ids or [str(i) for i in range(len(y))]
            atomic_write_json([{"id": i, "label": int(t), "pred": int(p)} for i, t, p in zip(ids, y, pred)],
                              out / "test_predictions.json")
    if out is not None:
        atomic_write_json({k: v for k, v in result.items() if k not in ("predictions", "test_labels", "test_ids")},
                          out / "result.json")
    log.close()
    if return_model:
        result["model"] = model.eval()
    return result


class EarlyStop:
    """The convergence rule every training set is scored with: keep the best dev score (strictly
    greater, as s3prl's runner) and stop once ``patience`` steps have passed without a better one.
    ``patience`` None: never stop early (s3prl's fixed schedule)."""

    def __init__(self, patience: int | None):
        self.patience, self.best_step, self.best = patience, None, -math.inf

    def update(self, step: int, score: float) -> bool:
        """Record an evaluation; True when it is a new best."""
        if score > self.best:
            self.best, self.best_step = score, step
            return True
        return False

    def done(self, step: int) -> bool:
        return self.patience is not None and self.best_step is not None and step - self.best_step >= self.patience


def _check_inputs(cfg: dict, schedule: str, n_classes: int, **splits) -> None:
    metric = cfg.get("selection", {}).get("metric", "uar")
    if metric not in ("acc", "uar"):
        raise UserError(f"selection.metric must be 'acc' or 'uar', got {metric!r}")
    if not hasattr(torch.optim, str(cfg["optimizer"].get("name", "Adam"))):
        raise UserError(f"optimizer.name '{cfg['optimizer'].get('name')}' is not in torch.optim")
    if cfg["datarc"].get("standardize", False) not in (True, False, "auto"):
        raise UserError(f"datarc.standardize must be true, false or auto, got {cfg['datarc']['standardize']!r}")
    patience = cfg["runner"].get("patience")
    if patience is not None and int(patience) < int(cfg["runner"]["eval_step"]):
        raise UserError(f"runner.patience ({patience} steps) is shorter than runner.eval_step")
    for name, d in splits.items():
        if d is not None and (d.labels.min() < 0 or d.labels.max() >= n_classes):
            raise UserError(f"{name} labels must lie in 0..{n_classes - 1}")
    if schedule not in ("generator", "s3prl"):
        raise UserError(f"schedule must be 'generator' or 's3prl', got {schedule!r}")


def _candidate_spaces(want, stats, dev) -> list[bool]:
    if want == "auto":
        if stats is None:
            raise UserError("datarc.standardize=auto needs the fold's statistics (stats=)")
        return [False, True] if dev is not None else [True]
    if want and stats is None:
        raise UserError("datarc.standardize=true needs the fold's statistics (stats=)")
    return [bool(want)]


def _fit(train, dev, test, cfg, stats, seed, device, n_classes, schedule, log, tag, out, ckpt_meta, save_steps) -> dict:
    """One training run in one input space: the loop of s3prl's runner, with early stopping."""
    rn, dr = cfg["runner"], cfg["datarc"]
    metric = cfg.get("selection", {}).get("metric", "uar")
    seed_everything(seed)
    if schedule == "s3prl":
        from ..protocol import SAMPLE_RATE

        torch.randn(SAMPLE_RATE)  # s3prl's Featurizer probes the upstream with noise before the model exists
    model = ERModel(train.dim, n_classes, cfg["modelrc"]).to(device)
    pooled = _use_pooled(model, cfg)
    space = input_space(stats)
    xs = {name: standardize(d, stats, pooled) if d is not None else None
          for name, d in (("train", train), ("dev", dev), ("test", test))}
    x_tr, y_tr = xs["train"]
    if pooled:
        x_tr, y_tr = x_tr.to(device), y_tr.to(device)
    opt = getattr(torch.optim, cfg["optimizer"].get("name", "Adam"))(model.parameters(), lr=cfg["optimizer"]["lr"])
    accum, bs, total = int(rn["gradient_accumulate_steps"]), int(dr["train_batch_size"]), int(rn["total_steps"])
    stopper = EarlyStop(int(rn["patience"]) if rn.get("patience") is not None and dev is not None else None)
    bf16 = bool(rn.get("bf16")) and torch.device(device).type == "cuda"
    batches = (s3prl_batches(len(train), bs) if schedule == "s3prl"
               else microbatch_schedule(len(train), bs, torch.Generator().manual_seed(seed)))
    save_steps = set(int(s) for s in save_steps)
    split = lambda name: name if tag is None else f"{name}/{tag}"  # noqa: E731

    best = {"score": -math.inf, "step": total, "state": None, "dev": {}, "path": None, "seconds": None}
    t0, run_loss, step, stopped = time.perf_counter(), [], 0, "cap"
    for step in range(1, total + 1):
        model.train()
        mbs = [next(batches) for _ in range(accum)]
        if pooled:
            idx = torch.cat(mbs).to(device)
            w = torch.cat([torch.full((len(m),), 1.0 / (accum * len(m))) for m in mbs]).to(device)
            loss = (F.cross_entropy(model.forward_pooled(x_tr[idx]), y_tr[idx], reduction="none") * w).sum()
            loss.backward()
            run_loss.append(loss.item())
        else:
            step_loss = 0.0
            for m in mbs:
                feats, lengths = pad([x_tr[i].to(device, non_blocking=True) for i in m.tolist()])
                with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(model(feats, lengths).float(), y_tr[m].to(device)) / accum
                loss.backward()
                step_loss += loss.item()
            run_loss.append(step_loss)
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), rn["gradient_clipping"])
        if torch.isfinite(gnorm):  # s3prl skips the update on a NaN gradient norm
            opt.step()
        opt.zero_grad(set_to_none=True)

        if step % rn["log_step"] == 0:
            log(step, split("train"), {"loss": float(np.mean(run_loss)), "grad_norm": float(gnorm)})
            run_loss = []
        evaluating = dev is not None and (step % rn["eval_step"] == 0 or step in save_steps)
        scores = {}
        if evaluating:
            scores = _scores(predict(model, xs["dev"][0], pooled, dr["eval_batch_size"], device, bf16), xs["dev"][1])
            log(step, split("dev"), scores)
            if schedule == "s3prl" and step % rn["eval_step"] == 0:
                _s3prl_eval_reseed(seed)
        if step in save_steps and out is not None:
            save_checkpoint(model, out / f"er-{step}.pt", input_space=space, **ckpt_meta, step=step,
                            dev_acc=scores.get("acc"), dev_uar=scores.get("uar"))
        if evaluating and step % rn["eval_step"] == 0 and stopper.update(step, scores[metric]):
            best.update(score=scores[metric], step=step, dev=scores, seconds=time.perf_counter() - t0,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
            if out is not None:
                path = out / f"er-{step}.pt"
                if step not in save_steps:
                    save_checkpoint(model, path, input_space=space, **ckpt_meta, step=step, dev_acc=scores["acc"],
                                    dev_uar=scores["uar"], best=True)
                old = best["path"]
                best["path"] = path
                if old is not None and old != path and int(old.stem.split("-")[1]) not in save_steps:
                    old.unlink(missing_ok=True)  # keep one best checkpoint, like max_keep: 1
        if stopper.done(step):
            stopped = "patience"
            break
    seconds = time.perf_counter() - t0
    if best["state"] is None:  # no dev: the last step is the model
        best.update(step=step, seconds=seconds, state=model.state_dict())
    return {"model": model, "best": best, "xs": xs, "space": space, "pooled": pooled,
            "bf16": bf16, "steps": step, "stopped": stopped, "seconds": seconds, "meta": ckpt_meta}


def train_er_on_store(store, fold, cfg: dict | None = None, **kwargs) -> dict:
    """``train_er`` on a real store's fold (train/dev/test as s3prl cuts them), standardised with
    the fold's train statistics; checkpoints carry the store's representation."""
    cfg = cfg or er_config()
    probe = ERModel(store.dim, len(store.label_map), cfg["modelrc"])
    pooled = _use_pooled(probe, cfg)
    data = {p: ERData.from_store(store, store.split(fold, p), pooled) for p in ("train", "dev", "test")}
    meta = {"representation": store.representation, "dim": store.dim, "fold": str(fold),
            "upstream": store.meta.get("upstream")}
    meta.update(kwargs.pop("meta", {}) or {})
    return train_er(data["train"], data["dev"], data["test"], cfg, stats=store.stats(fold), meta=meta,
                    n_classes=len(store.label_map), **kwargs)


def main(argv=None) -> None:
    """``python -m s3prl_dd.er.train STORE --fold 1 [--profile fast] [-o a.b=v] [--runs runs/er]``"""
    import argparse

    from ..features.store import FeatureStore
    from ..utils import new_run_dir

    p = argparse.ArgumentParser(description="SUPERB ER on a feature store (one fold, one seed)")
    p.add_argument("store")
    p.add_argument("--fold", default="1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help=f"default: built-in, = {CONFIG_PATH.name}")
    p.add_argument("--profile")
    p.add_argument("-o", "--override")
    p.add_argument("--runs", default="runs/er")
    p.add_argument("--device")
    a = p.parse_args(argv)
    try:
        store = FeatureStore.open(a.store)
        cfg = er_config(a.config, a.profile, a.override)
        out = new_run_dir(a.runs, f"fold{a.fold}-seed{a.seed}")
        r = train_er_on_store(store, a.fold, cfg, out_dir=out, seed=a.seed, device=a.device)
    except UserError as e:
        raise SystemExit(f"error: {e}")
    print(f"{out}: test UAR {100 * r['test_uar']:.2f}  acc {100 * r['test_acc']:.2f}  "
          f"(dev UAR {100 * r['dev_uar']:.2f} at step {r['best_step']})")


if __name__ == "__main__":
    main()
