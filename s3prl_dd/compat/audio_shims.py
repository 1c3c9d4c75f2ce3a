"""Stand-ins for APIs that s3prl 0.4.18 calls and today's libraries removed (see __init__.py)."""
from __future__ import annotations

import glob
import importlib.util
import os
import sys
import types
from collections import namedtuple

AudioMetaData = namedtuple("AudioMetaData", "sample_rate num_frames num_channels bits_per_sample encoding")
_SUBTYPE_BITS = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "PCM_U8": 8, "PCM_S8": 8, "FLOAT": 32, "DOUBLE": 64}


def has_torchcodec() -> bool:
    return importlib.util.find_spec("torchcodec") is not None


def set_audio_backend(backend=None) -> None:
    """Backends were removed; loading goes through soundfile, so the choice is moot."""


def load(uri, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
         channels_first: bool = True, format=None, buffer_size: int = 4096, backend=None):
    import soundfile as sf
    import torch

    stop = None if num_frames < 0 else frame_offset + num_frames
    data, sr = sf.read(uri, start=frame_offset, stop=stop, dtype="float32", always_2d=True)
    wav = torch.from_numpy(data)
    return (wav.T.contiguous() if channels_first else wav), sr


def save(uri, src, sample_rate: int, channels_first: bool = True, format=None,
         encoding=None, bits_per_sample=None, **_):
    import soundfile as sf

    data = src.detach().cpu().numpy()
    sf.write(uri, data.T if channels_first else data, sample_rate,
             subtype=f"PCM_{bits_per_sample}" if bits_per_sample else None)


def info(uri, format=None, buffer_size: int = 4096, backend=None) -> AudioMetaData:
    import soundfile as sf

    i = sf.info(uri)
    return AudioMetaData(i.samplerate, i.frames, i.channels, _SUBTYPE_BITS.get(i.subtype, 0), i.subtype)


def _apply_effects(wav, sr, effects, channels_first=True):
    """The sox effects s3prl's recipes use: channels, rate, norm/gain -n. Others raise."""
    import torchaudio.functional as F

    if not channels_first:
        wav = wav.T
    for effect in effects:
        name, *args = [str(a) for a in effect]
        if name == "channels":
            n = int(args[0])
            if n == 1:
                wav = wav.mean(0, keepdim=True)
            elif wav.shape[0] != n:
                wav = wav[:1].expand(n, -1).clone()
        elif name == "rate":
            new = int(float(args[0]))
            if new != sr:
                wav, sr = F.resample(wav, sr, new), new
        elif name == "norm" or (name == "gain" and args[:1] == ["-n"]):
            peak = wav.abs().max().clamp_min(1e-12)
            target_db = float(args[1]) if name == "gain" and len(args) > 1 else (float(args[0]) if name == "norm" and args else 0.0)
            wav = wav / peak * (10 ** (target_db / 20))
        else:
            raise NotImplementedError(f"s3prl_dd's sox_effects stand-in does not implement the '{name}' effect")
    return (wav if channels_first else wav.T), sr


def install_sox_effects(torchaudio) -> None:
    if hasattr(torchaudio, "sox_effects"):
        return
    module = types.ModuleType(f"{torchaudio.__name__}.sox_effects")
    module.apply_effects_tensor = _apply_effects

    def apply_effects_file(path, effects, normalize=True, channels_first=True, format=None):
        wav, sr = load(path)
        return _apply_effects(wav, sr, effects, channels_first)

    module.apply_effects_file = apply_effects_file
    sys.modules[module.__name__] = module
    torchaudio.sox_effects = module


def find_files(directory, ext=None, recurse=True, case_sensitive=False, limit=None, offset=0):
    """librosa.util.find_files: sorted audio files under ``directory``."""
    exts = ext or ["aac", "au", "flac", "m4a", "mp3", "ogg", "wav"]
    exts = [exts] if isinstance(exts, str) else exts
    if not case_sensitive:
        exts = {e.lower() for e in exts} | {e.upper() for e in exts}
    pattern = "**" if recurse else ""
    files = set()
    for e in exts:
        files.update(glob.glob(os.path.join(directory, pattern, f"*.{e}"), recursive=recurse))
    files = sorted(files)[offset:]
    return files[:limit] if limit is not None else files


def install_librosa_find_files() -> None:
    import importlib.machinery

    librosa = types.ModuleType("librosa")
    util = types.ModuleType("librosa.util")
    # A real (loader-less) spec: find_spec() callers such as transformers' availability checks
    # must not crash on a None __spec__; they then fail to find librosa's metadata and skip it.
    librosa.__spec__ = importlib.machinery.ModuleSpec("librosa", None, is_package=True)
    util.__spec__ = importlib.machinery.ModuleSpec("librosa.util", None)
    util.find_files = find_files
    librosa.util = util
    librosa.__s3prl_dd_stub__ = True
    sys.modules.setdefault("librosa", librosa)
    sys.modules.setdefault("librosa.util", util)


def removed_hf_api(name: str):
    class _Removed:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(f"huggingface_hub.{name} was removed in huggingface_hub 1.0; s3prl's "
                               "--hub huggingface / --push_to_hf_hub paths need huggingface_hub<1.0")

        @classmethod
        def get_token(cls):
            return _Removed()

        save_token = get_token

    _Removed.__name__ = name
    return _Removed
