"""s3prl_dd.corpus.audio: mono 16 kHz float32 from any soundfile-readable file, clear errors."""
import math

import numpy as np
import pytest
import soundfile as sf

from s3prl_dd.corpus.audio import audio_info, load_audio
from s3prl_dd.utils import UserError


def tone(n, sr, freq=440.0):
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def test_16k_mono_passes_through(tmp_path):
    x = tone(8000, 16000)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == 8000
    assert np.max(np.abs(y - x)) < 1e-4  # PCM16 quantisation only
    assert audio_info(tmp_path / "a.wav") == (16000, 1, 8000)


def test_stereo_48k_is_mixed_and_resampled(tmp_path):
    n = 48000 // 2 + 7
    left, right = tone(n, 48000, 300), tone(n, 48000, 500)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 48000, subtype="PCM_16")
    assert audio_info(tmp_path / "s.wav") == (48000, 2, n)
    y = load_audio(tmp_path / "s.wav")
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == math.ceil(n / 3)
    # the average of the two channels, resampled: compare away from the filter's edges
    ref = ((tone(len(y), 16000, 300) + tone(len(y), 16000, 500)) / 2)
    assert np.max(np.abs(y[200:-200] - ref[200:-200])) < 0.02


def test_odd_rate_resampled(tmp_path):
    sf.write(tmp_path / "b.flac", tone(22050, 22050), 22050)
    assert len(load_audio(tmp_path / "b.flac")) == 16000


def test_missing_file_names_it(tmp_path):
    for fn in (load_audio, audio_info):
        with pytest.raises(UserError, match="not found.*nope.wav"):
            fn(tmp_path / "nope.wav")


def test_corrupt_file_names_it(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file at all" * 3)
    for fn in (load_audio, audio_info):
        with pytest.raises(UserError, match="cannot read audio file .*bad.wav"):
            fn(bad)
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    with pytest.raises(UserError, match="zero.wav"):
        load_audio(zero)


def test_empty_file_names_it(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    for fn in (load_audio, audio_info):
        with pytest.raises(UserError, match="empty.wav is empty"):
            fn(tmp_path / "empty.wav")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(UserError, match="not a file"):
        load_audio(tmp_path)
