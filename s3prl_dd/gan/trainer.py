"""GAN distillation training (paper Sec. 4 and 5.1): one loop, stylegan2-ada style.

Per generator step: ``n_critic`` critic updates on Eq. 4 (WGAN critic loss + λ1·GP + λ2·CE(real)
+ λ3·CE(fake)), then one generator update on Eq. 8 (Eq. 5's adversarial + λ3·CE(fake) + λ4·FM,
+ λ5·L_DIV + λ6·L_SML). Every critic and generator update draws a fresh real batch from the
fold's TRAIN part; fakes are generated for that batch's labels, so the class prior of the fakes
is the real one and the j-th fake pairs with the j-th real sample of the same class (Eq. 3, 6).

Randomness is counter-based (``realdata.step_generator``): a run resumed from ``ckpt-<s>.pt``
reproduces the uninterrupted run bit for bit, lr schedule (``lr_schedule``) and the generator's
moving average (``ema``; what is evaluated and exported when ``train.ema_decay`` is set)
included. Under torchrun, G and D are wrapped in DDP, every rank takes its share of each
epoch, and only rank 0 logs, evaluates and writes files.

``python -m s3prl_dd.cli distill -c downstream_configs/gan/<cfg>.yaml --store S --fold fold1 ...``
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .. import utils
from ..er.data import ERData
from ..utils import UserError, pick_device
from ..runlog import RunLog
from . import checkpoint as ck
from .config import load_pool, prepare
from . import losses as L
from .ema import GeneratorEMA
from .lr_schedule import LRSchedule
from .models import build_gan
from .realdata import RealData, ShardedStream, step_generator, teacher_logits

# Random crops per train utterance behind L_MM's train-split targets: a crop's time mean is one
# draw of what the critic sees, and 8 draws of ~50 utterances per class pin its moments down
# far better than the ~8 of a real batch.
MM_CROPS = 8

def _dist_env(device):
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    device = pick_device(device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    own = world > 1 and not dist.is_initialized()
    if own:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device, own


class GANTrainer:
    def __init__(self, cfg: dict, store, fold, pool, device, rank: int = 0, world: int = 1):
        self.cfg, self.store, self.fold, self.rank, self.world = cfg, store, fold, rank, world
        self.device, opt, tr = device, cfg["optim"], cfg["train"]
        self.lam, self.seed, self.n_critic = cfg["loss"], int(tr["seed"]), int(opt["n_critic"])
        if int(opt["batch_size"]) % world:
            raise UserError(f"optim.batch_size={opt['batch_size']} must divide by the {world} processes")
        self.batch = int(opt["batch_size"]) // world
        self.bf16 = bool(tr["bf16"]) and device.type == "cuda"
        utils.seed_everything(self.seed)
        self.G, self.D = build_gan(cfg["model"])
        if device.type == "cuda" and world > 1:  # global-batch BatchNorm statistics, as in 1 process
            self.G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
        self.G, self.D = self.G.to(device), self.D.to(device)
        betas = tuple(float(b) for b in opt["betas"])  # torch's Adam rejects (0, 0.9) as ints
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=float(opt["lr_g"]), betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=float(opt["lr_d"]), betas=betas)
        self.lr_schedule = LRSchedule.from_config(cfg, [self.opt_g, self.opt_d])
        decay = tr["ema_decay"]
        self.ema = GeneratorEMA(self.G, float(decay)) if decay is not None else None
        self.data = RealData(store, fold, cfg["model"], device, tr["real_fit"], tr["standardize"])
        self.stream = ShardedStream(len(self.data), self.seed, rank, world)
        self.mm_targets = None  # L_MM against the train split's moments: computed once, here
        if self.lam.get("lambda_mm") and self.lam["mm_targets"] == "train":
            self.mm_targets = L.class_moments(*self.data.crop_time_means(MM_CROPS, self.seed),
                                              int(cfg["model"]["num_classes"]))
        self.pool = pool
        self.step, self.best = 0, {"score": None, "step": None}
        self.g, self.d = self.G, self.D  # what forward passes go through (DDP wrappers if any)

    def wrap_ddp(self):
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        self.g = DDP(self.G, device_ids=ids)
        # The class head gets no gradient when λ2 = λ3 = 0 (the pure WGAN-GP ablation).
        unused = not (self.lam["lambda_cls_real"] or L.critic_fake_class_weight(self.lam))
        self.d = DDP(self.D, device_ids=ids, find_unused_parameters=unused)

    # -------------------------------------------------------------------- one step
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _real(self, k: int, gen: torch.Generator):
        """The k-th real batch of the current step (k = 0..n_critic; the last feeds G)."""
        start = ((self.step - 1) * (self.n_critic + 1) + k) * self.batch
        return self.data.batch(self.stream.take(start, self.batch), gen)

    def critic_step(self, x, y, gen) -> dict:
        lam = self.lam
        with torch.no_grad(), self._autocast():
            fake = self.g(self.G.sample_noise(y, gen))
        with self._autocast():
            # One pass over real and fake together: the critic's norms are per sample, so this
            # equals two passes, and DDP sees one forward per backward.
            score, logits = self.d(torch.cat([x, fake.to(x.dtype)]))
            d_real, d_fake = score.float().split(len(y))
            l_real, l_fake = logits.split(len(y))
            adv = L.critic_adversarial_loss(d_real, d_fake)
            # The penalty's extra forward bypasses the DDP wrapper: its parameter gradients join
            # the same backward and are reduced with the rest.
            gp = L.gradient_penalty(lambda h: self.D(h)[0].float(), x, fake, gen) if lam["lambda_gp"] else None
            cls_real = L.classification_loss(l_real, y) if lam["lambda_cls_real"] else None
            cls_fake = L.classification_loss(l_fake, y) if L.critic_fake_class_weight(lam) else None
            total, logged = L.critic_loss(adv, gp, cls_real, cls_fake, lam)
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()
        logged["wasserstein"] = (d_real.mean() - d_fake.mean()).detach()
        return logged

    def generator_step(self, x, y, gen, teacher) -> dict:
        lam, B = self.lam, len(y)
        div_on = bool(lam.get("lambda_div"))
        # L_DIV's two draws share one forward, so both see the same BatchNorm batch statistics
        # and differ only through their noise (Eq. 7 attributes the difference to z1 - z2).
        z = self.G.sample_noise(torch.cat([y, y]) if div_on else y, gen)
        self.D.requires_grad_(False)  # D is a fixed function here; its forward skips DDP
        try:
            with self._autocast():
                fakes = self.g(z)
                fake = fakes[:B]
                d_fake, logits, feats_fake = self.D(fake, return_features=True)
                fm = sml = div = mm = None
                if lam["lambda_fm"]:
                    with torch.no_grad():
                        feats_real = self.D(x, return_features=True)[2]
                    fm = L.feature_matching_loss(feats_real, feats_fake)
                if div_on:
                    div = L.diversity_loss(fake.float(), fakes[B:].float(), z[:B], z[B:], float(lam["tau"]))
                if lam.get("lambda_sml"):
                    with torch.no_grad():
                        p_real = teacher_logits(teacher, x, self.data)
                    sml = L.softmax_matching_loss(p_real, teacher_logits(teacher, fake, self.data))
                if lam.get("lambda_mm"):
                    targets = self.mm_targets or L.class_moments(x.mean(1), y, int(self.cfg["model"]["num_classes"]))
                    mm = L.moment_matching_loss(fake, y, *targets)
                adv = L.generator_adversarial_loss(d_fake.float())
                cls = L.classification_loss(logits, y) if lam["lambda_cls_fake"] else None
                total, logged = L.generator_loss(adv, cls, fm, lam, div, sml, mm)
            self.opt_g.zero_grad(set_to_none=True)
            total.backward()
            self.opt_g.step()
        finally:
            self.D.requires_grad_(True)
        return logged

    def train_step(self) -> dict[str, torch.Tensor]:
        """One generator step (with its critic steps); returns the logged terms, averaged over
        the critic steps and, under DDP, over ranks (so every rank sees a NaN on any rank)."""
        self.lr_schedule.set_step(self.step)
        self.step += 1
        gen = step_generator(self.seed, "noise", self.step, self.rank)
        critic = [self.critic_step(*self._real(k, gen), gen) for k in range(self.n_critic)]
        # One teacher per step for all ranks: the step's global batch meets one f_θ ~ Θ.
        teacher = self.pool.sample(step_generator(self.seed, "teacher", self.step)) if self.pool else None
        gen_terms = self.generator_step(*self._real(self.n_critic, gen), gen, teacher)
        if self.ema is not None:
            self.ema.update(self.G)
        terms = {f"critic/{k}": torch.stack([c[k] for c in critic]).float().mean() for k in critic[0]}
        terms.update({f"generator/{k}": v.float() for k, v in gen_terms.items()})
        if self.world > 1:
            vec = torch.stack(list(terms.values()))
            dist.all_reduce(vec)
            terms = dict(zip(terms, vec / self.world))
        return terms

    def check_finite(self, terms: dict) -> None:
        vec = torch.stack(list(terms.values()))
        if not bool(torch.isfinite(vec).all()):
            name = next(k for k, v in terms.items() if not torch.isfinite(v))
            raise UserError(f"step {self.step}: loss term '{name}' is {float(terms[name])}; "
                            "training stopped (the last checkpoint is intact). Lower optim.lr_g/lr_d "
                            "or that term's lambda, or check the features for NaN/inf")

    # -------------------------------------------------------------------- evaluation, state
    @property
    def eval_generator(self) -> torch.nn.Module:
        """What is evaluated, exported and sampled: the EMA generator when on, else the live one."""
        return self.G if self.ema is None else self.ema.model

    @torch.no_grad()
    def sample_balanced(self, ppc: int, seed_purpose: str = "eval0") -> tuple[torch.Tensor, torch.Tensor]:
        """``ppc`` raw-scale samples per class from the generator in eval mode (the same noise at
        every evaluation, so scores of different steps differ by the generator only)."""
        C, G = int(self.cfg["model"]["num_classes"]), self.eval_generator
        y = torch.arange(C).repeat_interleave(ppc)
        e = torch.randn(len(y), G.noise_dim, generator=step_generator(self.seed, seed_purpose, 0))
        was_training = G.training
        G.eval()
        try:
            x = G.generate(y.to(self.device), e.to(self.device)).float()
        finally:
            G.train(was_training)
        return self.data.destandardize(x).cpu(), y

    def quick_eval(self, dev: ERData) -> dict:
        """Dev UAR of the SUPERB ER model trained on ``eval.ppc`` samples per class, averaged
        over ``eval.repeats`` (noise draw, ER seed) pairs: dev has a few dozen utterances here,
        and one draw's score moves by several points between otherwise equal generators."""
        from ..er.train import er_config, train_er

        ev = self.cfg["eval"]
        er_cfg = er_config(profile=ev.get("er_profile") or None, overrides=ev.get("er_overrides"))
        stats = (self.data.mean.cpu().numpy(), self.data.std.cpu().numpy())
        scores = []
        for r in range(int(ev.get("repeats", 1))):
            x, y = self.sample_balanced(int(ev["ppc"]), f"eval{r}")
            train = ERData(x[:, 0].numpy() if x.shape[1] == 1 else list(x.numpy()), y.numpy())
            res = train_er(train, dev, None, er_cfg, stats=stats, seed=self.seed + r, device=self.device,
                           n_classes=int(self.cfg["model"]["num_classes"]))
            scores.append((res["dev_uar"], res["dev_acc"], res["train_seconds"]))
        uar, acc, secs = (float(v) for v in np.mean(scores, axis=0))
        return {"dev_uar": uar, "dev_acc": acc, "er_seconds": secs * len(scores)}

    def state(self) -> dict:
        return {"generator": ck.cpu_state(self.G), "discriminator": ck.cpu_state(self.D),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": ck.rng_state(),
                "best": dict(self.best), "world_size": self.world, "config": self.cfg,
                "ema": self.ema.state_dict() if self.ema is not None else None}

    def load_state(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["generator"])
        self.D.load_state_dict(ckpt["discriminator"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        ck.set_rng_state(ckpt["rng"])
        self.step, self.best = int(ckpt["step"]), dict(ckpt["best"])
        if self.ema is not None:
            if ckpt.get("ema") is None:  # EMA switched on at this resume: it averages from here on
                self.ema = GeneratorEMA(self.G, self.ema.decay)
            else:
                self.ema.load_state_dict(ckpt["ema"])

    def export(self, path) -> Path:
        s = self.store
        info = {"representation": s.representation, "dim": s.dim, "upstream": s.meta.get("upstream"),
                "downsample_rate": s.meta.get("downsample_rate"), "fold": str(self.fold),
                "store": str(s.path), "step": self.step, "dev_uar": self.best["score"],
                "real_fit": self.cfg["train"]["real_fit"], "standardize": self.cfg["train"]["standardize"],
                "ema_decay": self.ema.decay if self.ema is not None else None}
        return ck.export_generator(path, self.eval_generator, self.cfg["model"], self.data.mean, self.data.std,
                                   s.label_map, self.data.class_counts(len(s.label_map)), info)


# ------------------------------------------------------------------------ entry point
def train_gan(cfg, store_path, fold, pool_dir=None, out_dir="runs", resume=False, *, device=None,
              overrides=None, name: str | None = None) -> dict:
    """Train a GAN distiller on ``fold``'s train part; returns the run summary.

    ``cfg``: config path or dict (ignored on resume: the run's config.yaml is used, with
    ``overrides`` on top). ``resume``: True (``out_dir`` is the run) or a run directory; the
    newest ``ckpt-<step>.pt`` there is continued. ``store_path`` may be an open FeatureStore."""
    rank, world, device, own = _dist_env(device)
    try:
        cfg, store, fold, pool_dir, run_dir = prepare(cfg, store_path, fold, pool_dir, resume, out_dir, overrides)
        if run_dir is None:
            box = [str(utils.new_run_dir(out_dir, name or f"{cfg['model']['arch']}-{fold}")) if rank == 0 else None]
            if world > 1:
                dist.broadcast_object_list(box)
            run_dir = Path(box[0])
        return _run(cfg, store, fold, pool_dir, run_dir, bool(resume), device, rank, world)
    finally:
        if own:
            dist.destroy_process_group()


def _run(cfg, store, fold, pool_dir, run_dir, resume, device, rank, world) -> dict:
    tr = cfg["train"]
    pool = load_pool(pool_dir, store, fold, device) if cfg["loss"].get("lambda_sml") else None
    t = GANTrainer(cfg, store, fold, pool, device, rank, world)
    resume_step = None
    if resume:
        path = ck.latest_checkpoint(run_dir)
        if path is None:
            raise UserError(f"--resume {run_dir}: no ckpt-<step>.pt to continue from")
        t.load_state(ck.load_checkpoint(path))
        resume_step = t.step
    if world > 1:
        t.wrap_ddp()
    main = rank == 0
    log = RunLog(run_dir, resume_step, flush=True) if main else None
    if main:
        utils.save_yaml(cfg, run_dir / "config.yaml")
        print(f"[distill] {run_dir}: {cfg['model']['arch']} on {store.path} {fold} "
              f"({len(t.data)} train utterances), {world} process(es) on {device}, from step {t.step}", flush=True)
    dev = ERData.from_store(store, store.split(fold, "dev"), pooled=False) if main and tr["eval_every"] else None
    steps, acc, n_acc, t_train, t_other = int(tr["steps"]), None, 0, 0.0, 0.0
    tick = time.perf_counter()
    while t.step < steps:
        terms = t.train_step()
        t.check_finite(terms)
        acc = {k: v.detach() for k, v in terms.items()} if acc is None else {k: acc[k] + v for k, v in terms.items()}
        n_acc += 1
        step, now = t.step, time.perf_counter()
        t_train, tick = t_train + (now - tick), now
        if main and (step % int(tr["log_every"]) == 0 or step == steps):
            rec = {k: float(v) / n_acc for k, v in acc.items()}
            rec["steps_per_s"] = (step - (resume_step or 0)) / t_train
            log(step, "train", rec)
            print(f"[distill] step {step}: W {rec['critic/wasserstein']:.3f}  GP {rec.get('critic/gp', 0):.3f}  "
                  f"G {rec['generator/total']:.3f}", flush=True)
            acc, n_acc = None, 0
        evaluating = bool(tr["eval_every"]) and (step % int(tr["eval_every"]) == 0 or step == steps)
        saving = step % int(tr["save_every"]) == 0 or step == steps
        if main and evaluating:
            scores = t.quick_eval(dev)
            log(step, "eval", {**scores, "train_seconds": t_train, "lr_g": t.opt_g.param_groups[0]["lr"]})
            print(f"[distill] step {step}: quick-eval dev UAR {scores['dev_uar']:.4f}", flush=True)
            if t.best["score"] is None or scores["dev_uar"] > t.best["score"]:
                t.best = {"score": scores["dev_uar"], "step": step}
                t.export(run_dir / "best.pt")
        if main and saving:
            ck.save_checkpoint(run_dir, step, t.state(), int(tr["keep_last"]))
        if world > 1 and (evaluating or saving):
            dist.barrier()  # the other ranks wait for rank 0's evaluation/saving here
        tick_end = time.perf_counter()
        t_other, tick = t_other + (tick_end - tick), tick_end
    result = {"run_dir": str(run_dir), "step": t.step, "best_step": t.best["step"],
              "best_dev_uar": t.best["score"], "train_seconds": t_train, "other_seconds": t_other,
              "steps_per_s": (t.step - (resume_step or 0)) / t_train if t_train else None, "world_size": world}
    if main:
        # The export is the best generator by quick-eval dev UAR; the last one without evaluation.
        final = run_dir / "generator.pt"
        if t.best["step"] is not None and (run_dir / "best.pt").is_file():
            tmp = run_dir / ".generator.pt.tmp"
            shutil.copyfile(run_dir / "best.pt", tmp)
            os.replace(tmp, final)
        else:
            t.export(final)
        result["generator"] = str(final)
        utils.atomic_write_json(result, run_dir / "result.json")
        log.close()
    result["trainer"] = t
    return result
