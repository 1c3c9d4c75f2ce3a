"""Each compat fix, shown to matter: the broken behaviour first, then the fix."""
import argparse
import importlib
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

import s3prl_dd  # noqa: F401  (applies the shims)
from s3prl_dd import compat
from s3prl_dd.compat import audio_shims
from s3prl_dd.errors import UserError


def test_torchaudio_extension_failure_is_reported_as_absent():
    utils = types.SimpleNamespace()

    def _load_lib(lib):
        raise OSError("libc10_cuda.so: cannot open shared object file")

    utils._load_lib = _load_lib
    with pytest.raises(OSError):
        utils._load_lib("_torchaudio")
    compat.fix_torchaudio_extension(utils)
    assert utils._load_lib("_torchaudio") is False


def test_torchaudio_imports_and_s3prl_fbank_runs():
    import s3prl.hub as hub

    model = hub.fbank_no_cmvn()
    out = model([torch.randn(16000)])
    assert out["hidden_states"][0].shape[-1] == 240


def test_torchaudio_removed_api_is_served(tmp_path):
    fake = types.ModuleType("torchaudio_fake")
    fake.load = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("TorchCodec is required"))
    with pytest.raises(AttributeError):
        fake.set_audio_backend("sox_io")
    compat.fix_torchaudio_api(fake)
    fake.set_audio_backend("sox_io")
    path = tmp_path / "a.wav"
    sf.write(path, np.stack([np.linspace(-0.5, 0.5, 800)] * 2, 1), 8000)
    wav, sr = fake.load(str(path))
    assert sr == 8000 and wav.shape == (2, 800)
    meta = fake.info(str(path))
    assert (meta.sample_rate, meta.num_frames, meta.num_channels) == (8000, 800, 2)
    mono, sr16 = fake.sox_effects.apply_effects_tensor(wav, sr, [["channels", "1"], ["rate", "16000"]])
    assert sr16 == 16000 and mono.shape[0] == 1 and abs(mono.shape[1] - 1600) <= 1


def test_librosa_find_files_stand_in(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/x.wav", "a/b/y.WAV", "a/b/z.txt"]:
        (tmp_path / name).write_bytes(b"")
    found = audio_shims.find_files(str(tmp_path))
    assert [p.replace(str(tmp_path), "") for p in found] == ["/a/b/y.WAV", "/a/x.wav"]
    from librosa.util import find_files  # the stand-in when librosa is absent, else the real one

    assert len(find_files(str(tmp_path))) == 2


def test_huggingface_hub_removed_names():
    hf = types.ModuleType("hf_fake")
    assert not hasattr(hf, "HfFolder")  # what s3prl's runner imports at module level
    compat.fix_huggingface_hub(hf)
    assert hf.HfFolder and hf.Repository
    with pytest.raises(RuntimeError, match="huggingface_hub"):
        hf.Repository(local_dir="x")
    from huggingface_hub import HfFolder, Repository  # noqa: F401  (the real module, shimmed)


def test_resume_checkpoint_with_namespace_loads(tmp_path):
    path = tmp_path / "states-10.ckpt"
    torch.save({"Args": argparse.Namespace(lr=1.0), "Step": 10}, path)
    torch.serialization.clear_safe_globals()
    with pytest.raises(Exception, match="weights_only|Namespace"):
        torch.load(path, map_location="cpu")
    compat.fix_weights_only_load()
    assert torch.load(path, map_location="cpu")["Args"].lr == 1.0


def test_voxceleb1_cache_is_keyed_by_corpus(tmp_path):
    seen = []

    class SpeakerClassifiDataset:
        def __init__(self, mode, file_path, meta_data, max_timestep=None):
            seen.append(module.CACHE_PATH)

    module = types.SimpleNamespace(CACHE_PATH="/site-packages/s3prl/downstream/voxceleb1/.cache/",
                                   SpeakerClassifiDataset=SpeakerClassifiDataset)
    compat.fix_voxceleb1_cache(module)
    module.SpeakerClassifiDataset("train", str(tmp_path / "a"), str(tmp_path / "a.txt"))
    module.SpeakerClassifiDataset("train", str(tmp_path / "b"), str(tmp_path / "b.txt"))
    assert seen[0] != seen[1] and "site-packages" not in seen[0]


def test_runner_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    runner = types.SimpleNamespace(torch=torch)
    compat.fix_runner_checkpoint_writes(runner)
    path = tmp_path / "states-1.ckpt"
    runner.torch.save({"Step": 1}, str(path))

    def crash(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        runner.torch.save({"Step": 2}, str(path))
    monkeypatch.undo()
    assert torch.load(path)["Step"] == 1
    assert list(tmp_path.iterdir()) == [path]

    # max_keep rotation deletes the old checkpoint before writing the new one: the deletion
    # waits until the new checkpoint is on disk, so a kill in between still leaves one
    runner.os.remove(str(path))
    assert path.is_file()
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        runner.torch.save({"Step": 2}, str(tmp_path / "states-2.ckpt"))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states-1.ckpt"]
    runner.torch.save({"Step": 2}, str(tmp_path / "states-2.ckpt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states-2.ckpt"]


def test_user_error_prints_one_line(capsys):
    sys.excepthook(UserError, UserError("corpus path missing: /nope"), None)
    assert capsys.readouterr().err.strip() == "s3prl-dd: error: corpus path missing: /nope"


def test_downstream_and_upstream_registration():
    import s3prl.hub as hub

    expert = importlib.import_module("s3prl.downstream.emotion_distilled.expert")
    ours = importlib.import_module("s3prl_dd.downstream.emotion_distilled.expert")
    assert expert is ours and expert.__spec__.name == "s3prl_dd.downstream.emotion_distilled.expert"
    for name in ("synthetic", "ser_probe"):
        assert callable(getattr(hub, name))
