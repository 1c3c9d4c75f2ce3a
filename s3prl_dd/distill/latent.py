"""``gan_latent``: latent distillation on a frozen generator (in the spirit of IT-GAN, Zhao et
al. 2022, and GLaD, Cazenavette et al. 2023): the generator stays fixed and the noise vectors e
of the ppc synthetic points of each class are learned.

Initialisation: the ``gan`` source's noise (the sampler's (seed, "sample", class) stream, i.e.
e ~ N(0, I)), so iteration 0 is the i.i.d. GAN set. Objective, minimised with Adam on e::

    L = λ_dm    Σ_c ||mean φ(real_c) - mean φ(g(c, e_c))||²     φ: RandomEmbedder, redrawn each step
      + λ_pool  Σ_c ||mean ψ(real_c) - mean ψ(g(c, e_c))||² / v_c   ψ: the teacher pool's projectors
      + λ_gm    Σ_c D_DC(∇_θ CE(f_θ(real_c), c), ∇_θ CE(f_θ(g(c, e_c)), c))
      + λ_prior mean_i (||e_i|| / sqrt(d) - 1)²

with v_c the real class's mean squared distance to its mean in ψ-space (so the pool term is
scale-free: trained projectors can have any scale, and an unnormalised term would swamp the
others and the prior; 1 = the synthetic mean sits one within-class radius away), f_θ the linear
SUPERB ER model (projector + post-net), θ freshly initialised every step
(``gm_model: random``, as DC) or a teacher drawn from the pool (``gm_model: pool``), and D_DC
DC's layer-wise 1 - cos. Everything acts on standardised TIME-MEANS of real and generated
features: exact for the linear embedders (pool projectors, the ER model); for ReLU random
embedders it embeds the utterance mean rather than averaging frame embeddings.
The artifact is the generator + the learned latents (``TrainingSet.save`` keeps the latents;
``TrainingSet.load`` regenerates the same features)."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..gan.realdata import step_generator
from ..gan.sampler import class_noise
from ..utils import UserError, pick_device
from .common import (TrainingSet, check_generator, fold_train, generate_from_latents,
                     generator_bytes, merge, resolve_generator, resolve_pool)
from .embed import PoolEmbedder, RandomEmbedder, _linear_init
from .herding import _ids
from .objectives import distribution_matching_loss, gradient_distance, latent_norm_prior

# == downstream_configs/distill/latent.yaml (a test keeps them equal)
LATENT_DEFAULTS = {
    "iterations": 300, "lr": 0.05, "lambda_dm": 1.0, "lambda_pool": 1.0, "lambda_gm": 0.01,
    "lambda_prior": 0.1, "embed_width": 256, "embed_depth": 1, "embed_relu": True,
    "real_batch": 256, "gm_model": "random", "eval_embedders": 16, "log_every": 50, "device": None,
}


def real_batches(ft, classes, real_batch: int, gen: torch.Generator | None):
    """{class: (n, D) standardised real time-means}: all of the class's train items, or a random
    ``real_batch`` of them (DM's batch_real) when it has more."""
    out = {}
    for c in classes:
        rows = ft.of_class(c)
        if gen is not None and len(rows) > real_batch:
            rows = [rows[j] for j in torch.randperm(len(rows), generator=gen)[:real_batch].tolist()]
        out[c] = ft.x[rows]
    return out


def linear_er_params(dim: int, n_classes: int, gen: torch.Generator, width: int = 256, device="cpu"):
    """Fresh parameters of the SUPERB linear ER model, nn.Linear's default init:
    [projector.weight, projector.bias, post_net.weight, post_net.bias]."""
    w1, b1 = _linear_init(dim, width, gen, device)
    w2, b2 = _linear_init(width, n_classes, gen, device)
    return [p.requires_grad_(True) for p in (w1, b1, w2, b2)]


def teacher_params(teacher, ft_mean: torch.Tensor, ft_std: torch.Tensor):
    """A pool teacher's linear ER model as parameters acting on the STORE's standardised space
    (its own standardisation folded into the projector), so one code path serves both."""
    m = teacher.model
    if not m.supports_pooled:
        raise UserError("gm_model=pool needs a pool of linear (UtteranceLevel + MeanPooling) ER models")
    w, b = m.projector.weight.detach(), m.projector.bias.detach()
    scale, shift = ft_std / teacher.std, (ft_mean - teacher.mean) / teacher.std
    lin = m.model.post_net.linear
    return [p.clone().requires_grad_(True) for p in
            (w * scale[None], w @ shift + b, lin.weight.detach(), lin.bias.detach())]


def _er_logits(params, x):
    w1, b1, w2, b2 = params
    return F.linear(F.linear(x, w1, b1), w2, b2)


def gradient_matching_loss(params, real: dict, syn_x: torch.Tensor, syn_y: torch.Tensor) -> torch.Tensor:
    """Σ_c DC distance between CE gradients on the real class batch and the synthetic class set."""
    total = syn_x.new_zeros(())
    for c, xr in real.items():
        yr = torch.full((len(xr),), int(c), dtype=torch.long, device=xr.device)
        gr = torch.autograd.grad(F.cross_entropy(_er_logits(params, xr), yr), params)
        gr = [g.detach() for g in gr]
        m = syn_y == int(c)
        gs = torch.autograd.grad(F.cross_entropy(_er_logits(params, syn_x[m]), syn_y[m]), params,
                                 create_graph=True)
        total = total + gradient_distance(gr, gs)
    return total


def random_dm_loss(emb, real: dict, syn_x, syn_y) -> torch.Tensor:
    xr = torch.cat(list(real.values()))
    yr = torch.cat([torch.full((len(v),), int(c), dtype=torch.long, device=v.device) for c, v in real.items()])
    return distribution_matching_loss(emb(xr), yr, emb(syn_x), syn_y, classes=list(real))


@torch.no_grad()
def eval_dm_objective(syn_x: torch.Tensor, syn_y: torch.Tensor, ft, cfg: dict, seed: int) -> float:
    """The random-embedder DM objective averaged over ``eval_embedders`` FIXED embedders (seeded
    by (seed, "dm-eval", k)) and all real train items: a noise-free before/after measure."""
    real = real_batches(ft, ft.classes, 0, None)
    real = {c: v.to(syn_x.device) for c, v in real.items()}
    vals = []
    for k in range(int(cfg["eval_embedders"])):
        emb = RandomEmbedder(syn_x.shape[1], step_generator(int(seed), "dm-eval", k), cfg["embed_width"],
                             cfg["embed_depth"], cfg["embed_relu"], syn_x.device)
        vals.append(float(random_dm_loss(emb, real, syn_x, syn_y)))
    return float(np.mean(vals))


def gan_latent(store, fold, ppc: int, seed: int, generator, pool=None, cfg: dict | None = None,
               progress: bool = False) -> TrainingSet:
    cfg = merge(LATENT_DEFAULTS, cfg)
    dev = pick_device(cfg["device"])
    g, gpath = resolve_generator(generator, dev)
    g = g.to(dev).eval().requires_grad_(False)
    check_generator(g, store, fold)
    ft = fold_train(store, fold)
    pool = resolve_pool(pool, store, fold, dev)
    use_pool = float(cfg["lambda_pool"]) > 0 and pool is not None
    if cfg["gm_model"] not in ("random", "pool"):
        raise UserError(f"gm_model must be 'random' or 'pool', got {cfg['gm_model']!r}")
    if float(cfg["lambda_gm"]) > 0 and cfg["gm_model"] == "pool" and pool is None:
        raise UserError("gan_latent with gm_model=pool needs a teacher pool (--pool)")
    mean, std = torch.from_numpy(ft.mean).to(dev), torch.from_numpy(ft.std).to(dev)
    classes = ft.classes
    labels = np.repeat(np.asarray(classes, np.int64), ppc)
    y = torch.from_numpy(labels).to(dev)
    e0 = torch.cat([class_noise(g.noise_dim, c, ppc, seed) for c in classes])
    e = e0.clone().to(dev).requires_grad_(True)
    opt = torch.optim.Adam([e], lr=float(cfg["lr"]))
    ft.x = ft.x.to(dev)
    pool_emb = PoolEmbedder(pool, mean, std).to(dev) if use_pool else None
    if use_pool:
        with torch.no_grad():
            real_all = {c: pool_emb(v) for c, v in real_batches(ft, classes, 0, None).items()}
            pool_real = torch.stack([real_all[c].mean(0) for c in classes])
            # each class's mean squared distance to its mean in pool space: the term's unit
            pool_scale = torch.stack([(real_all[c] - real_all[c].mean(0)).pow(2).sum(1).mean()
                                      for c in classes]).clamp_min(1e-8)

    def syn_std(lat):  # standardised (store stats) time-means of the generated set
        return (g(y, lat).float().mean(1) - mean) / std

    def pool_loss(xs):
        zs = pool_emb(xs)
        return sum((pool_real[k] - zs[y == c].mean(0)).pow(2).sum() / pool_scale[k] for k, c in enumerate(classes))

    with torch.no_grad():
        before = {"dm_eval": eval_dm_objective(syn_std(e), y, ft, cfg, seed),
                  "pool": float(pool_loss(syn_std(e))) if use_pool else None}
    weights = {"dm": cfg["lambda_dm"], "pool": cfg["lambda_pool"], "gm": cfg["lambda_gm"], "prior": cfg["lambda_prior"]}
    uses_real = float(cfg["lambda_dm"]) > 0 or float(cfg["lambda_gm"]) > 0
    history, t0 = [], time.perf_counter()
    for it in range(int(cfg["iterations"])):
        xs = syn_std(e)
        terms = {}
        # one real batch per iteration, shared by the DM and gradient-matching terms
        real = real_batches(ft, classes, int(cfg["real_batch"]), step_generator(int(seed), "latent-real", it)) if uses_real else None
        if float(cfg["lambda_dm"]) > 0:
            emb = RandomEmbedder(g.D, step_generator(int(seed), "latent-embed", it), cfg["embed_width"],
                                 cfg["embed_depth"], cfg["embed_relu"], dev)
            terms["dm"] = random_dm_loss(emb, real, xs, y)
        if use_pool:
            terms["pool"] = pool_loss(xs)
        if float(cfg["lambda_gm"]) > 0:
            gen = step_generator(int(seed), "latent-gm", it)
            if cfg["gm_model"] == "pool":
                params = teacher_params(pool.sample(gen), mean, std)
            else:
                params = linear_er_params(g.D, len(classes), gen, int(cfg["embed_width"]), dev)
            terms["gm"] = gradient_matching_loss(params, real, xs, y)
        terms["prior"] = latent_norm_prior(e)
        loss = sum(float(weights[k]) * v for k, v in terms.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % int(cfg["log_every"]) == 0 or it == int(cfg["iterations"]) - 1:
            rec = {"it": it, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
            history.append(rec)
            if progress:
                print(f"[gan_latent] {rec}", flush=True)
        if not math.isfinite(float(loss.detach())):
            raise UserError(f"gan_latent: the loss became {float(loss)} at iteration {it}; lower lr")
    lat = e.detach().cpu()
    with torch.no_grad():
        after = {"dm_eval": eval_dm_objective(syn_std(e), y, ft, cfg, seed),
                 "pool": float(pool_loss(syn_std(e))) if use_pool else None}
    feats = generate_from_latents(g, labels, lat)
    norms = lat.norm(dim=1) / math.sqrt(g.noise_dim)
    info = {"seed": int(seed), "config": cfg, "terms": sorted(k for k in ("dm", "pool", "gm") if
                                                              (k != "pool" or use_pool) and float(cfg[f"lambda_{k}"]) > 0),
            "pool_used": use_pool, "objective_before": before, "objective_after": after,
            "history": history, "seconds": time.perf_counter() - t0,
            "latent_norm_ratio": [float(norms.min()), float(norms.max())],
            "latent_shift": float((lat - e0).norm(dim=1).mean())}
    return TrainingSet("gan_latent", feats, labels, _ids("gan_latent", ft.names, labels),
                       generator_bytes(g, gpath) + 4 * lat.numel(), info, lat.numpy(), gpath)
