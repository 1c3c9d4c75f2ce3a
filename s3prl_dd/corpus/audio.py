"""Reading audio the way every stage expects it: mono float32 at 16 kHz.

soundfile replaces torchaudio.load (gone in torchaudio 2.9+), and resampling uses
scipy's polyphase filter so that no stage depends on torchaudio's compiled extension."""
from __future__ import annotations

import os
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from ..protocol import SAMPLE_RATE
from ..utils import UserError


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"audio file not found: {path}")
    if not path.is_file():
        raise UserError(f"audio path is not a file: {path}")


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(sample_rate, channels, frames)`` from the header, without decoding the samples."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:  # libsndfile says "format not recognised" etc.
        raise UserError(f"cannot read audio file {path}: {e}") from None
    if info.frames <= 0:
        raise UserError(f"audio file {path} is empty (0 frames)")
    return int(info.samplerate), int(info.channels), int(info.frames)


def to_mono(wav: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,). Averaging, not taking channel 0, because a corpus may
    put the talker on either side."""
    return wav.mean(axis=1) if wav.ndim == 2 else wav


def resample(wav: np.ndarray, sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling; output length is ``ceil(len * target_sr / sr)``."""
    if sr == target_sr:
        return wav
    g = gcd(int(sr), int(target_sr))
    return resample_poly(wav, target_sr // g, sr // g)


def load_audio(path: str | os.PathLike, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """1-D float32 waveform in [-1, 1] at ``target_sr``, mixed to mono."""
    path = Path(path)
    _check_file(path)
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise UserError(f"cannot read audio file {path}: {e}") from None
    if wav.shape[0] == 0:
        raise UserError(f"audio file {path} is empty (0 frames)")
    wav = resample(to_mono(wav), sr, target_sr)
    return np.ascontiguousarray(wav, dtype=np.float32)
