"""GAN-CNN / GAN-ATT with 1-D convolutions over time (``model.conv: 1d``), beyond the paper.

The paper's models convolve the (1, T, D) feature map as an image, so a kernel mixes
neighbouring feature dimensions. For fbank that is the frequency axis, where neighbours are
alike; for the hidden units of an SSL or LSTM upstream (GE2E, HuBERT) the order of the D units
is arbitrary, and a small 2-D kernel (or the sub-pixel output layer of the CPU configs) imposes a
locality that is not there. Here the D units are the channels of the input and output layers and
the convolutions run over time only, as in speech vocoders and SSL front ends. The structure is
otherwise the paper's: transposed-conv + dilated-conv stages with BatchNorm in the generator, one
time self-attention after a chosen conv layer for GAN-ATT, and a GroupNorm critic with a critic
head and a class head on the flattened map whose layer outputs feed feature matching (Eq. 3).

The mean path (``model.g_mean_hidden`` / ``d_mean_hidden``, both empty = off; beyond the paper).
The SUPERB ER model pools a sequence to its time mean first, and the conv GAN-ATT misses the
real class means of time means by ~0.45 within-class standard deviations where GAN-MLP, which
generates the mean itself, is at the level of real crops (README, "What the GAN-ATT's time means
miss"). With the mean path the generator's time mean is the output of GAN-MLP's generator (an
MLP on the same z) and the conv stack only adds residuals with zero time mean; the critic runs
GAN-MLP's critic layers on the input's time mean beside its conv layers and reads both.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from s3prl_dd.gan.models import (LEAK, ConditionalGenerator, MLPGenerator, TimeSelfAttention, critic_forward,
                                  ints_per_layer, mlp_critic_layers)
from s3prl_dd.utils import UserError, exists


def _bn_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm1d(channels), nn.LeakyReLU(LEAK)]


class TimeTokenAttention(TimeSelfAttention):
    """TimeSelfAttention on a (B, C, T) map: each time step's token is its C channels."""

    def __init__(self, channels: int, dim: int, heads: int):
        super().__init__(channels, 1, dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(-1)).squeeze(-1)


class TimeConvGenerator(ConditionalGenerator):
    """z -> Linear -> (C0, ⌈T/Πu⌉) -> [ConvTranspose1d ×u, Conv1d (dilated)]* -> Conv1d to D;
    with ``mean_hidden``, + GAN-MLP's generator on z as the time mean of the output."""

    def __init__(self, T, D, num_classes, noise_dim, init_channels, channels, up=2, dilations=1,
                 attn_after=None, attn_dim=256, attn_heads=4, mean_hidden=()):
        super().__init__(T, D, num_classes, noise_dim)
        n = len(channels)
        ups, dils = ints_per_layer(up, n, "g_up"), ints_per_layer(dilations, n, "g_dilations")
        t = math.ceil(T / math.prod(ups))
        self.init_shape = (init_channels, t)
        self.project = nn.Linear(self.z_dim, init_channels * t)
        self.project_act = nn.Sequential(*_bn_act(init_channels))
        layers, c_in, n_conv = [], init_channels, 0
        for c_out, u, dil in zip(channels, ups, dils):
            pad = max(1, u // 2)
            layers += [nn.ConvTranspose1d(c_in, c_out, u + 2 * pad, u, pad), *_bn_act(c_out)]
            n_conv += 1
            if n_conv == attn_after:
                layers.append(TimeTokenAttention(c_out, attn_dim, attn_heads))
            layers += [nn.Conv1d(c_out, c_out, 3, padding=dil, dilation=dil), *_bn_act(c_out)]
            n_conv += 1
            if n_conv == attn_after:
                layers.append(TimeTokenAttention(c_out, attn_dim, attn_heads))
            c_in = c_out
        if exists(attn_after) and not 1 <= attn_after <= n_conv:
            raise UserError(f"model.attn_after={attn_after}: the generator has {n_conv} conv layers")
        self.body = nn.Sequential(*layers)
        self.to_features = nn.Conv1d(c_in, D, 3, padding=1)  # linear output: features are standardised
        self.mean_head = MLPGenerator(D, num_classes, noise_dim, list(mean_hidden)) if mean_hidden else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project_act(self.project(z).view(z.shape[0], *self.init_shape))
        x = self.to_features(self.body(h)).transpose(1, 2)[:, : self.T]
        if exists(self.mean_head):
            x = self.mean_head(z) + (x - x.mean(1, keepdim=True))
        return x


class TimeConvDiscriminator(nn.Module):
    """Conv1d layers over time (the D units are the first layer's input channels), each with
    GroupNorm(1, C) (per-sample, for the gradient penalty) + LeakyReLU, then the critic and class
    heads on the flattened map. Padding dilation·(k-1)/2, so a stride-s layer maps L to ⌈L/s⌉.
    With ``mean_hidden``, GAN-MLP's critic layers on the time mean too, read by both heads."""

    def __init__(self, T, D, num_classes, channels, strides=2, dilations=1, kernel_size=3, mean_hidden=()):
        super().__init__()
        self.T, self.D, n = T, D, len(channels)
        strides, dils = ints_per_layer(strides, n, "d_strides"), ints_per_layer(dilations, n, "d_dilations")
        kernels = ints_per_layer(kernel_size, n, "d_kernel_size")
        layers, c_in, t = [], D, T
        for c_out, s, k, dil in zip(channels, strides, kernels, dils):
            if k < s:
                raise UserError(f"model.d_kernel_size {k} < stride {s} skips inputs")
            pad = dil * (k - 1) // 2
            layers.append(nn.Sequential(nn.Conv1d(c_in, c_out, k, s, pad, dilation=dil),
                                        nn.GroupNorm(1, c_out), nn.LeakyReLU(LEAK)))
            t = (t + 2 * pad - dil * (k - 1) - 1) // s + 1
            if t < 1:
                raise UserError(f"model.d_strides shrink T={T} to nothing")
            c_in = c_out
        self.layers = nn.ModuleList(layers)
        self.mean_layers, mean_width = mlp_critic_layers(D, mean_hidden) if mean_hidden else (None, 0)
        self.critic = nn.Linear(c_in * t + mean_width, 1)
        self.classifier = nn.Linear(c_in * t + mean_width, num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """x (B, T, D) -> critic (B,), logits (B, C)[, the M layer outputs for Eq. 3]."""
        if tuple(x.shape[1:]) != (self.T, self.D):
            raise ValueError(f"discriminator expects (B, {self.T}, {self.D}), got {tuple(x.shape)}")
        mean = x.mean(1) if exists(self.mean_layers) else None
        return critic_forward(self, x.transpose(1, 2), return_features, mean)
