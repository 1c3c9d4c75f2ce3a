"""The distillation objectives and selection rules as pure functions (no state, no I/O).

Each one is tested against a hand-computed value on tiny tensors (tests/test_distill.py).

- :func:`class_means` / :func:`distribution_matching_loss`: DM (Zhao & Bilen, WACV 2023),
  ``sum_c || mean_i emb(real_c,i) - mean_j emb(syn_c,j) ||^2``.
- :func:`gradient_distance`: DC's layer-wise gradient-matching distance (Zhao, Mopuri & Bilen,
  ICLR 2021, ``distance_wb`` in their code): per layer, for every output unit (row of the weight
  gradient), ``1 - cos(g_real_row, g_syn_row)``, summed over rows and layers; 1-d gradients
  (biases) count 0, as in DC (``include_bias=True`` treats a bias as one row).
- :func:`latent_norm_prior`: keeps GAN latents on the shell where N(0, I) puts its mass.
- :func:`herding_select` (Welling 2009; iCaRL's exemplar selection, Rebuffi et al. 2017) and
  :func:`kcenter_select` (greedy k-center, Sener & Savarese 2018): index selection on
  embeddings, deterministic (ties go to the lowest index).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

EPS = 1e-6  # DC's cosine denominator guard (0.000001 in their distance_wb)


# ---------------------------------------------------------------------------- distribution matching
def class_means(emb: torch.Tensor, labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """(C, E) mean embedding of each class in ``classes`` (a class with no item is an error: its
    mean is undefined, and silently using 0 would pull the other set towards the origin)."""
    labels = labels.to(emb.device)
    rows = []
    for c in classes:
        m = labels == int(c)
        if not bool(m.any()):
            raise ValueError(f"class {c} has no items")
        rows.append(emb[m].mean(0))
    return torch.stack(rows)


def distribution_matching_loss(real_emb: torch.Tensor, real_y: torch.Tensor, syn_emb: torch.Tensor,
                               syn_y: torch.Tensor, classes: Sequence[int] | None = None) -> torch.Tensor:
    """``sum_c || mean(real_emb[real_y == c]) - mean(syn_emb[syn_y == c]) ||^2`` over ``classes``
    (default: the classes present in ``syn_y``). Scalar tensor, differentiable in both sets."""
    if classes is None:
        classes = sorted(int(c) for c in torch.unique(syn_y).tolist())
    diff = class_means(real_emb, real_y, classes) - class_means(syn_emb, syn_y, classes)
    return diff.pow(2).sum()


# ---------------------------------------------------------------------------- gradient matching
def _layer_distance(gr: torch.Tensor, gs: torch.Tensor, include_bias: bool) -> torch.Tensor:
    if gr.shape != gs.shape:
        raise ValueError(f"gradient shapes differ: {tuple(gr.shape)} vs {tuple(gs.shape)}")
    if gr.dim() == 1:
        if not include_bias:
            return gr.new_zeros(())
        gr, gs = gr[None], gs[None]
    gr, gs = gr.reshape(gr.shape[0], -1), gs.reshape(gs.shape[0], -1)
    cos = (gr * gs).sum(-1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + EPS)
    return (1 - cos).sum()


def gradient_distance(g_real: Sequence[torch.Tensor], g_syn: Sequence[torch.Tensor],
                      include_bias: bool = False) -> torch.Tensor:
    """DC's ``match_loss`` with ``dis_metric='ours'``: sum over layers of the row-wise
    ``1 - cos`` between the real and synthetic gradients of each parameter."""
    if len(g_real) != len(g_syn):
        raise ValueError(f"{len(g_real)} real gradients but {len(g_syn)} synthetic ones")
    total = None
    for gr, gs in zip(g_real, g_syn):
        d = _layer_distance(gr, gs, include_bias)
        total = d if total is None else total + d
    return total


# ---------------------------------------------------------------------------- latent prior
def latent_norm_prior(e: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``(||e_i|| / sqrt(d) - 1)^2``: zero when every latent has the norm
    sqrt(d) around which N(0, I_d) concentrates, so optimised latents stay where the generator
    was trained (in the spirit of GLaD / IT-GAN, which keep latents in-distribution)."""
    d = e.shape[-1]
    return (e.norm(dim=-1) / d ** 0.5 - 1).pow(2).mean()


# ---------------------------------------------------------------------------- selection
def herding_select(x, k: int, target=None) -> list[int]:
    """Greedy herding: ``k`` distinct rows of ``x`` (N, E) chosen one at a time so that the mean
    of the chosen rows stays as close as possible to ``target`` (default: the mean of ``x``).
    At step t (1-based) row i minimises ``|| target - (s + x_i) / t ||`` with s the sum of the
    rows already chosen (iCaRL, Alg. 4). Deterministic; ties go to the lowest index; k > N
    returns all N rows in herding order. A prefix of the k-selection is the (k-1)-selection."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(0) if target is None else np.asarray(target, dtype=np.float64)
    k = min(int(k), len(x))
    chosen: list[int] = []
    free = np.ones(len(x), dtype=bool)
    s = np.zeros(x.shape[1])
    for t in range(1, k + 1):
        dist = np.square(mu[None] - (s[None] + x) / t).sum(1)
        dist[~free] = np.inf
        i = int(np.argmin(dist))
        chosen.append(i)
        free[i] = False
        s += x[i]
    return chosen


def kcenter_select(x, k: int, first: int | None = None) -> list[int]:
    """Greedy k-center (farthest-first traversal): start at ``first`` (default: the row nearest
    the mean of ``x``, so the result is deterministic), then repeatedly add the row farthest from
    its nearest chosen row. Ties go to the lowest index; k > N returns all rows."""
    x = np.asarray(x, dtype=np.float64)
    k = min(int(k), len(x))
    if k == 0:
        return []
    if first is None:
        first = int(np.argmin(np.square(x - x.mean(0)).sum(1)))
    chosen = [int(first)]
    d = np.square(x - x[first]).sum(1)
    for _ in range(k - 1):
        d_masked = d.copy()
        d_masked[chosen] = -np.inf
        i = int(np.argmax(d_masked))
        chosen.append(i)
        d = np.minimum(d, np.square(x - x[i]).sum(1))
    return chosen
