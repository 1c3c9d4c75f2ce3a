"""A quick proxy of the benchmark the built-in corpus is calibrated for.

SUPERB's ER model (Linear -> mean pooling -> Linear) on ``fbank_no_cmvn`` is a linear
classifier on the time-mean of 240-d features (80 log-mel + delta + delta-delta, 25/10 ms).
Here: Kaldi-style log-mel fbank in numpy, time-mean of the three streams, standardised with
the training split, multinomial logistic regression, leave-one-session-out UAR. A speaker
classifier on the same features (random 75/25 split per speaker) checks that voices differ.

    python -m s3prl_dd.corpus.calibrate [--n 40] [--seed 0] [--separation 1.0] [--spread 1.0]"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ..protocol import LABELS, SAMPLE_RATE

N_MELS, FRAME, SHIFT, NFFT = 80, 400, 160, 512


def _mel_bank() -> np.ndarray:
    # Kaldi's mel scale and triangles (low 20 Hz, high Nyquist), as torchaudio.compliance.kaldi
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    lo, hi = mel(20.0), mel(SAMPLE_RATE / 2)
    centres = np.linspace(lo, hi, N_MELS + 2)
    fft_mel = mel(np.arange(NFFT // 2) * SAMPLE_RATE / NFFT)
    bank = np.zeros((N_MELS, NFFT // 2 + 1))
    for m in range(N_MELS):
        left, c, right = centres[m:m + 3]
        up = (fft_mel - left) / (c - left)
        down = (right - fft_mel) / (right - c)
        bank[m, : NFFT // 2] = np.maximum(0, np.minimum(up, down))
    return bank


_BANK = _mel_bank()


def log_mel(wav: np.ndarray) -> np.ndarray:
    """(frames, 80) log-mel energies like kaldi.fbank with its defaults (dither 0, povey
    window, pre-emphasis 0.97, DC removal, snip edges)."""
    wav = np.asarray(wav, dtype=np.float64)
    n = 1 + max(0, (len(wav) - FRAME) // SHIFT)
    idx = np.arange(FRAME)[None, :] + SHIFT * np.arange(n)[:, None]
    frames = wav[np.minimum(idx, len(wav) - 1)]
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], axis=1)
    frames = frames * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / (FRAME - 1))) ** 0.85
    power = np.abs(np.fft.rfft(frames, NFFT)) ** 2
    return np.log(np.maximum(power @ _BANK.T, np.finfo(np.float32).eps))


def deltas(x: np.ndarray, n: int = 2) -> np.ndarray:
    """torchaudio's ComputeDeltas(win_length=5) along time, edges replicated."""
    pad = np.concatenate([np.repeat(x[:1], n, 0), x, np.repeat(x[-1:], n, 0)])
    num = sum(k * (pad[n + k: n + k + len(x)] - pad[n - k: n - k + len(x)]) for k in range(1, n + 1))
    return num / (2 * sum(k * k for k in range(1, n + 1)))


def utterance_features(wav: np.ndarray) -> np.ndarray:
    """240-d time-mean of [log-mel, delta, delta-delta]: what the linear ER model sees."""
    f = log_mel(wav)
    d = deltas(f)
    return np.concatenate([f.mean(0), d.mean(0), deltas(d).mean(0)])


def fit_predict(x_tr, y_tr, x_te, n_classes: int, steps: int = 300, l2: float = 1e-3) -> np.ndarray:
    """Standardise with train statistics; multinomial logistic regression by full-batch Adam."""
    import torch

    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.tensor((x_tr - mu) / sd, dtype=torch.float32)
    xe = torch.tensor((x_te - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y_tr)
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(xt.shape[1], n_classes)
    with torch.no_grad():
        lin.weight.normal_(0, 0.01, generator=g)
        lin.bias.zero_()
    opt = torch.optim.Adam(lin.parameters(), lr=0.05, weight_decay=l2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(xt), yt).backward()
        opt.step()
    with torch.no_grad():
        return lin(xe).argmax(1).numpy()


def uar(y_true, y_pred, n_classes: int) -> float:
    recalls = [np.mean(y_pred[y_true == c] == c) for c in range(n_classes) if np.any(y_true == c)]
    return float(np.mean(recalls))


def loso_uar(x: np.ndarray, y: np.ndarray, sessions: np.ndarray) -> list[float]:
    return [uar(y[sessions == k], fit_predict(x[sessions != k], y[sessions != k], x[sessions == k],
                                              len(LABELS)), len(LABELS))
            for k in np.unique(sessions)]


def speaker_accuracy(x: np.ndarray, speakers: list[str], seed: int = 0) -> float:
    names = sorted(set(speakers))
    s = np.array([names.index(v) for v in speakers])
    rng = np.random.default_rng(seed)
    test = np.zeros(len(s), bool)
    for c in range(len(names)):
        idx = np.flatnonzero(s == c)
        test[rng.choice(idx, max(1, len(idx) // 4), replace=False)] = True
    pred = fit_predict(x[~test], s[~test], x[test], len(names))
    return float(np.mean(pred == s[test]))


def builtin_features(n_per_speaker: int = 40, seed: int = 0, separation: float | None = None,
                     spread: float | None = None):
    """Features of the built-in corpus rendered in memory (no files): x, y, sessions, speakers."""
    from . import builtin

    kw = {k: v for k, v in (("separation", separation), ("spread", spread)) if v is not None}
    utts = [u for u in builtin.plan_corpus(n_per_speaker, seed) if u.label is not None]
    vt, ct = builtin.voices(seed), builtin.channels(seed)
    x = np.stack([utterance_features(builtin.render_utt(u, seed, vt, ct, **kw)) for u in utts])
    y = np.array([LABELS[u.label] for u in utts])
    return x, y, np.array([u.session for u in utts]), [u.speaker for u in utts]


def corpus_features(corpus: dict):
    """The same for any corpus on disk (builtin, manifest, IEMOCAP)."""
    from .audio import load_audio
    from .meta import read_all_rows, resolve

    rows = read_all_rows(corpus)
    x = np.stack([utterance_features(load_audio(resolve(corpus, r["path"]))) for r in rows])
    y = np.array([LABELS[r["label"]] for r in rows])
    return x, y, np.array([r["session"] for r in rows]), [r["speaker"] for r in rows]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="utterances per speaker (built-in corpus)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--separation", type=float)
    ap.add_argument("--spread", type=float)
    ap.add_argument("--corpus", help="a built corpus directory instead of the built-in generator")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.corpus:
        from .meta import load_corpus

        x, y, sess, spk = corpus_features(load_corpus(args.corpus))
    else:
        x, y, sess, spk = builtin_features(args.n, args.seed, args.separation, args.spread)
    t1 = time.time()
    folds = loso_uar(x, y, sess)
    print(f"features: {len(y)} utterances in {t1 - t0:.1f} s")
    print("ER proxy UAR per fold: " + " ".join(f"{100 * u:.1f}" for u in folds)
          + f"  mean {100 * np.mean(folds):.1f} +- {100 * np.std(folds):.1f}")
    print(f"speaker-ID proxy accuracy ({len(set(spk))} speakers): {100 * speaker_accuracy(x, spk):.1f}")


if __name__ == "__main__":
    main()
