"""Losses of the GAN distiller, one pure function per equation of the paper (Sec. 4).

Every function takes tensors and returns a scalar tensor; nothing here holds state, so the
trainer decides what is detached, which batches are paired and on which device things live.
Equation numbers refer to ``paper/dd-gan-ser.md``.

Pairing conventions the trainer must follow (the equations take expectations over pairs):
- Eq. 3 (FM) and Eq. 6 (SML) compare the j-th real sample with the j-th generated one; draw the
  generated labels equal to the real batch's labels so every pair shares a class (Eq. 6 says so
  explicitly, and a class-conditional generator makes it the sensible reading of Eq. 3).
- Eq. 7 (DIV) compares two generated batches built from the same labels and two noise draws.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from s3prl_dd.utils import exists

Tensor = torch.Tensor

# The combinators take the ``loss:`` section of a config as ``lambdas`` (lambda_gp = λ1,
# lambda_cls_real = λ2, lambda_cls_fake = λ3, lambda_fm = λ4, lambda_div = λ5, lambda_sml = λ6).
# λ1 is applied by ``critic_loss``, never inside ``gradient_penalty``.


# ---------------------------------------------------------------------------- Eq. 1, 2
def critic_adversarial_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Eq. 1 without the penalty: ``E[d(g(z))] - E[d(x)]`` (the critic minimises it)."""
    return d_fake.mean() - d_real.mean()


def gradient_penalty(
    critic_fn: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L_GP of Eq. 1 (WGAN-GP, Gulrajani et al. 2017): ``E[(||∇_x̂ d(x̂)||_2 - 1)^2]`` on
    x̂ = α·x + (1-α)·g(z), α ~ U(0,1) per sample. Unweighted: λ1 is applied by the caller.

    ``critic_fn`` maps a batch to critic values, so a conditional critic is passed as e.g.
    ``lambda x: disc(x)[0]`` or ``lambda x: critic(x, y)``. ``generator`` makes α reproducible;
    α is drawn on the generator's device and then moved, so a CPU generator serves CUDA tensors.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    device = generator.device if exists(generator) else real.device
    alpha = torch.rand(shape, generator=generator, device=device).to(real.device, real.dtype)
    # The penalty differentiates w.r.t. the interpolate only; the generator gets no gradient here.
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic_fn(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    # sqrt(·+eps) rather than .norm(): the norm's gradient is undefined at a zero gradient.
    norm = (grad.flatten(1).float().pow(2).sum(1) + 1e-12).sqrt()
    return (norm - 1).pow(2).mean()


def generator_adversarial_loss(d_fake: Tensor) -> Tensor:
    """Eq. 2: ``L_GADV = -E[d(g(z))]``."""
    return -d_fake.mean()


# ---------------------------------------------------------------------------- Eq. 3
def feature_matching_loss(feats_real: Sequence[Tensor], feats_fake: Sequence[Tensor]) -> Tensor:
    """Eq. 3: ``(1/M) Σ_l mean|d^(l)(x) - d^(l)(g(z))|`` over the M discriminator feature maps.

    Each layer contributes its mean absolute difference (averaged per layer, as MelGAN/HiFi-GAN
    do), so layers of different sizes weigh the same. Real features are targets (detached).
    Pairs are elementwise: sample j of ``feats_real[l]`` against sample j of ``feats_fake[l]``.
    """
    if len(feats_real) != len(feats_fake) or len(feats_real) == 0:
        raise ValueError(f"feature_matching_loss: got {len(feats_real)} real and {len(feats_fake)} fake layers")
    per_layer = []
    for r, f in zip(feats_real, feats_fake):
        if r.shape != f.shape:
            raise ValueError(f"feature_matching_loss: layer shapes {tuple(r.shape)} and {tuple(f.shape)} differ")
        per_layer.append((r.detach() - f).abs().mean())
    return torch.stack(per_layer).mean()


# ---------------------------------------------------------------------------- Eq. 4, 5 (CE terms)
def classification_loss(logits: Tensor, y: Tensor) -> Tensor:
    """The CE terms of Eq. 4 and 5: ``E[CE(d^class(·), y)]`` (mean over the batch)."""
    return F.cross_entropy(logits.float(), y)


# ---------------------------------------------------------------------------- Eq. 6
def softmax_matching_loss(teacher_logits_real: Tensor, teacher_logits_fake: Tensor) -> Tensor:
    """Eq. 6 (SML): ``(1/B) Σ_j Σ_i p_ij log(p_ij / q_ij)`` = mean_j KL(p_j || q_j), with
    p = softmax(f_θ(x_j)) and q = softmax(f_θ(g(z_j))) from one teacher f_θ ~ Θ.

    The real side is the target (no gradient). Computed from log-softmaxes, so a class with
    p → 0 or q → 0 gives 0·(-inf)-free, finite values instead of NaN.
    """
    if teacher_logits_real.shape != teacher_logits_fake.shape:
        raise ValueError("softmax_matching_loss: real and fake logits must have the same shape (paired)")
    log_p = F.log_softmax(teacher_logits_real.detach().float(), dim=-1)
    log_q = F.log_softmax(teacher_logits_fake.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


# ---------------------------------------------------------------------------- Eq. 7
def diversity_loss(fake1: Tensor, fake2: Tensor, z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """Eq. 7 (DSGAN, Yang et al. 2019): ``-E[min(|g(z1)-g(z2)| / ||z1-z2||, τ)]``.

    Numerator: per pair, the mean absolute difference over all elements (T·D), i.e. DSGAN's
    mean L1, so its scale does not grow with T or D. Denominator: the L2 norm of z1 - z2. The
    pairs must share a class, so the one-hot parts cancel and this is ||e1 - e2|| over the noise
    part only; passing full z or only e gives the same value. For standardised features and
    independent outputs the ratio is about (2/√π)/√(2·noise_dim) ≈ 0.08 at noise_dim=100,
    which is the natural scale for τ.
    """
    if fake1.shape != fake2.shape or z1.shape != z2.shape or fake1.shape[0] != z1.shape[0]:
        raise ValueError("diversity_loss: fake1/fake2 and z1/z2 must be paired batches of equal shape")
    num = (fake1 - fake2).abs().flatten(1).mean(1)
    den = (z1 - z2).flatten(1).norm(dim=1).clamp_min(1e-8)
    return -torch.clamp(num / den, max=tau).mean()


# ---------------------------------------------------------------------------- beyond the paper
def moment_matching_loss(fake: Tensor, y: Tensor, mean: Tensor, std: Tensor, scale: Tensor | float) -> Tensor:
    """L_MM (not in the paper): per class c of the batch, the squared gap between the generated
    time means' mean and ``mean[c]`` plus that between their standard deviation and ``std[c]``
    (the latter only where the batch holds ≥ 2 samples of c), averaged over dimensions, weighted
    by the class's share of the batch, divided by ``scale`` (the real time means' variance, so the
    value does not depend on the upstream layer).

    The SUPERB ER models read a pooled utterance, and a frame-level critic lets the time mean
    drift: on EmoDB GE2E the 1-D GAN-ATT's class means of time means sat 0.45 within-class
    standard deviations from the real ones and spread ~40 % less than the real crops it trains on
    (README "What the GAN-ATT's time means miss"). ``fake``: (B, T, D) in GAN space, or (B, D)
    already pooled; ``mean``/``std``: (C, D) targets, from the real batch
    or from the whole train split (``class_moments``).
    """
    if fake.shape[0] != y.shape[0] or mean.shape != std.shape or mean.shape[-1] != fake.shape[-1]:
        raise ValueError("moment_matching_loss: fake and y must be paired, mean and std (C, D) of fake's width")
    m_fake = (fake.mean(1) if fake.dim() == 3 else fake).float()
    total = m_fake.new_zeros(())
    for c in torch.unique(y):
        f = m_fake[y == c]
        gap = (f.mean(0) - mean[c]).pow(2).mean()
        if len(f) > 1:  # a lone sample has no spread to match
            gap = gap + (f.std(0) - std[c]).pow(2).mean()
        total = total + gap * (len(f) / len(y))
    return total / scale


def class_moments(means: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """L_MM's targets from real time means ``means`` (N, D): per class their mean and standard
    deviation (NaN for a class with fewer rows than each needs) and their variance over all rows.
    The rows are a real batch's time means (``mm_targets: batch``) or the train split's crops'
    (``RealData.crop_time_means``, ``mm_targets: train``)."""
    m = means.detach().float()
    mean = m.new_full((num_classes, m.shape[1]), float("nan"))
    std = mean.clone()
    for c in torch.unique(labels):
        r = m[labels == c]
        mean[c] = r.mean(0)
        if len(r) > 1:
            std[c] = r.std(0)
    return mean, std, m.var(0, unbiased=False).mean().clamp_min(1e-8)


# ---------------------------------------------------------------------------- Eq. 4, 5, 8
def _weighted_sum(terms: Mapping[str, Tensor | None], weights: Mapping[str, float], where: str):
    total, logged = None, {}
    for name, weight in weights.items():
        term = terms[name]
        if not weight:
            continue  # a zero weight switches an ablation term off; it need not be computed
        if not exists(term):
            raise ValueError(f"{where}: term '{name}' has weight {weight} but was not computed")
        total = weight * term if total is None else total + weight * term
        logged[name] = term.detach()
    if total is None:
        raise ValueError(f"{where}: every term has weight 0")
    logged["total"] = total.detach()
    return total, logged


def critic_fake_class_weight(lambdas: Mapping[str, float]) -> float:
    """The critic's weight on CE(fake): λ3 (Eq. 4) unless ``lambda_cls_fake_critic`` is set."""
    w = lambdas.get("lambda_cls_fake_critic")
    return lambdas["lambda_cls_fake"] if w is None else w


def critic_loss(
    adv: Tensor,
    gp: Tensor | None,
    cls_real: Tensor | None,
    cls_fake: Tensor | None,
    lambdas: Mapping[str, float],
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 4 (with Eq. 1 inside): ``adv + λ1·gp + λ2·cls_real + λ3·cls_fake``.

    ``lambda_cls_fake_critic``, when given, replaces λ3 here only (0 = the class head learns from
    real data alone, so G cannot satisfy it with class cues that real data lacks).
    Returns the total and the unweighted terms (detached, plus ``total``) for logging.
    """
    weights = {
        "adv": 1.0,
        "gp": lambdas["lambda_gp"],
        "cls_real": lambdas["lambda_cls_real"],
        "cls_fake": critic_fake_class_weight(lambdas),
    }
    return _weighted_sum(dict(adv=adv, gp=gp, cls_real=cls_real, cls_fake=cls_fake), weights, "critic_loss")


def generator_loss(
    adv: Tensor,
    cls_fake: Tensor | None,
    fm: Tensor | None,
    lambdas: Mapping[str, float],
    div: Tensor | None = None,
    sml: Tensor | None = None,
    mm: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 5 ``adv + λ3·cls_fake + λ4·fm``, extended to Eq. 8 by ``+ λ5·div + λ6·sml`` (and,
    beyond the paper, ``+ lambda_mm·mm``, off by default).

    The baseline of Table 2 is λ5 = λ6 = 0 (``div``/``sml`` may then be None). Returns the
    total and the unweighted terms (detached, plus ``total``) for logging.
    """
    weights = {
        "adv": 1.0,
        "cls_fake": lambdas["lambda_cls_fake"],
        "fm": lambdas["lambda_fm"],
        "div": lambdas.get("lambda_div", 0.0),
        "sml": lambdas.get("lambda_sml", 0.0),
        "mm": lambdas.get("lambda_mm", 0.0),
    }
    terms = dict(adv=adv, cls_fake=cls_fake, fm=fm, div=div, sml=sml, mm=mm)
    return _weighted_sum(terms, weights, "generator_loss")
