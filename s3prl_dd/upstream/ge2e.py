"""``-u ge2e``: Resemblyzer's GE2E speaker encoder (3-layer LSTM 256 on a 40-band power mel),
rebuilt in torch from the weights in the ``resemblyzer`` package.

Hidden states are the three LSTM layers' outputs (3 x 256, 100 frames/s). The 40-d mel input is
not a hidden state: s3prl's Featurizer stacks all hidden states for its weighted sum, which needs
one width. The mel follows Resemblyzer's ``wav_to_mel_spectrogram`` (librosa's melspectrogram:
n_fft 400, hop 160, periodic Hann, centred frames, |STFT|^2, Slaney mel with Slaney area
normalisation); reflect padding is librosa < 0.10's default, the one Resemblyzer was trained
with. Resemblyzer's VAD trimming and volume normalisation are utterance-level preprocessing, not
part of the network, and are left out: they would make a frame depend on the whole utterance.

Frames: an utterance of L samples keeps the first round(L / 160) = (L + 80) // 160 of
librosa's 1 + L // 160 centred frames (ties rounded up), the count s3prl's Featurizer keeps, so
the runner on the fly and a feature store see the same frames; the one dropped is the frame
centred on the last sample, half made of reflected audio.

Causality: the LSTM is causal and the mel of frame t reads samples up to 160 t + 200, so
a frame depends only on audio up to 12.5 ms after its centre. Each utterance's mel is computed
on its own samples before padding, so padding a batch changes no valid frame."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence

from .packaged import package_file

SAMPLE_RATE, N_FFT, HOP, N_MELS, HIDDEN, LAYERS = 16000, 400, 160, 40, 256, 3
INSTALL = "resemblyzer==0.1.4"


def _hz_to_mel(f):
    """Slaney's mel scale (librosa, htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def slaney_mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangles, as ``librosa.filters.mel(sr, n_fft, n_mels)``."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    # Slaney normalisation: every triangle has unit area in Hz
    return (weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]).astype(np.float32)


class GE2EUpstream(nn.Module):
    def __init__(self, weights_path: str | None = None):
        super().__init__()
        path = weights_path or package_file("resemblyzer", "pretrained.pt", INSTALL)
        state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        # one single-layer LSTM per layer, so every layer's output sequence is a hidden state
        self.layers = nn.ModuleList(
            nn.LSTM(N_MELS if i == 0 else HIDDEN, HIDDEN, 1, batch_first=True) for i in range(LAYERS))
        for i, lstm in enumerate(self.layers):
            lstm.load_state_dict({f"{k}_l0": state[f"lstm.{k}_l{i}"]
                                  for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        self.register_buffer("mel_basis", torch.from_numpy(slaney_mel_filterbank()), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    def get_downsample_rates(self, key: str = None) -> int:
        return HOP

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """((L + 80) // 160, 40) power mel of one utterance (at least one frame)."""
        wav = wav.float()
        # torch's reflect padding needs more samples than the half window; a shorter clip is
        # zero-padded instead (librosa would refuse it)
        mode = "reflect" if wav.numel() > N_FFT // 2 else "constant"
        spec = torch.stft(wav, N_FFT, HOP, N_FFT, self.window, center=True, pad_mode=mode, return_complex=True)
        frames = max(1, (wav.numel() + HOP // 2) // HOP)
        return (self.mel_basis @ spec[:, :frames].abs().pow(2)).T

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        x = pad_sequence([self.mel(w) for w in wavs], batch_first=True)
        hidden = []
        for lstm in self.layers:
            x, _ = lstm(x)
            hidden.append(x)
        return {"hidden_states": hidden, "last_hidden_state": hidden[-1]}


def ge2e(ckpt: str = None, model_config: str = None, refresh: bool = False, **kwargs) -> GE2EUpstream:
    """s3prl hub entry: ``-u ge2e`` (``-k`` may name another GE2E ``pretrained.pt``)."""
    return GE2EUpstream(ckpt)
