"""Reading audio the way every stage expects it: mono float32 at 16 kHz.

soundfile replaces torchaudio.load (gone in torchaudio 2.9+), and resampling uses
scipy's polyphase filter so that no stage depends on torchaudio's compiled extension."""
from __future__ import annotations

import os
import struct
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


MIN_SECONDS = 0.025  # one 25 ms analysis window: the shortest input any s3prl front end frames


def _declared_wav_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header announces in its data chunk (None: not a plain WAV, or a
    streamed one). libsndfile quietly shrinks its frame count to what a truncated file holds,
    so a cut-off copy would otherwise be used at part of its length."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None


def _check_complete(path: Path, frames: int) -> None:
    declared = _declared_wav_frames(path)
    if declared is not None and declared > frames:
        raise UserError(f"audio file {path} is truncated: its header announces {declared} frames, "
                        f"the file holds {frames}")


def _check_length(path: Path, frames: int, sr: int) -> None:
    if frames < MIN_SECONDS * sr:
        raise UserError(f"audio file {path} is {1000 * frames / sr:.1f} ms long, shorter than one "
                        f"{1000 * MIN_SECONDS:.0f} ms analysis window")


def check_samples(path, wav: np.ndarray) -> None:
    """Samples no upstream can make sense of: NaN/inf (a float wav gone wrong) would make every
    feature NaN and the model train to chance without a word; all zeros is no recording."""
    if not np.isfinite(wav).all():
        raise UserError(f"audio file {path} holds {int((~np.isfinite(wav)).sum())} non-finite samples (NaN or inf)")
    if not np.any(wav):
        raise UserError(f"audio file {path} is silent (every sample is 0)")


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
    _check_complete(path, int(info.frames))
    _check_length(path, int(info.frames), int(info.samplerate))
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
    _check_complete(path, wav.shape[0])
    _check_length(path, wav.shape[0], sr)
    check_samples(path, wav)
    wav = resample(to_mono(wav), sr, target_sr)
    return np.ascontiguousarray(wav, dtype=np.float32)
