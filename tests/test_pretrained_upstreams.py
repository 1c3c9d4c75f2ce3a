"""The pretrained upstreams (-u ge2e, -u wakehubert): weights from the installed packages, shapes
and rates, causality, padding invariance, the runner and extraction into a store."""
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
from s3prl_dd.features.upstream import frame_counter, load_upstream  # noqa: E402
from s3prl_dd.upstream.packaged import package_file  # noqa: E402
from s3prl_dd.utils import UserError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "downstream_configs" / "emotion_distilled.yaml"
FAST = "config.runner.eval_step=4,,config.runner.save_step=4,,config.runner.log_step=2,,config.runner.gradient_accumulate_steps=1"
# name: (number of hidden states, width, samples per frame, L -> frames)
SPEC = {
    # both keep s3prl's Featurizer's round(L / hop) frames (ties up)
    "ge2e": (3, 256, 160, lambda n: (n + 80) // 160),
    "wakehubert": (8, 256, 320, lambda n: (n + 160) // 320),
}


@pytest.fixture(scope="module", params=sorted(SPEC))
def upstream(request):
    torch.set_num_threads(1)
    return request.param, load_upstream(request.param).eval()


def _wavs(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=g) for n in lengths]


def test_shapes_rates_and_frame_rule(upstream):
    name, up = upstream
    n_states, width, hop, frames = SPEC[name]
    lengths = [16000, 12345, 24017, 3001]
    with torch.no_grad():
        out = up(_wavs(lengths))
    hs = out["hidden_states"]
    assert len(hs) == n_states and up.get_downsample_rates("hidden_states") == hop
    assert all(h.shape == (4, frames(max(lengths)), width) for h in hs)
    assert torch.equal(out["last_hidden_state"], hs[-1])
    # the store trims each utterance to this count: it must be the model's own
    count = frame_counter(up, hop)
    assert count is not None and [count(n) for n in lengths] == [frames(n) for n in lengths]


def test_padded_batch_gives_each_utterance_its_own_frames(upstream):
    _, up = upstream
    wavs = _wavs([24017, 5000, 16000, 12345], seed=1)
    with torch.no_grad():
        batch = up(wavs)["hidden_states"]
        for i, w in enumerate(wavs):
            alone = up([w])["hidden_states"]
            t = alone[0].shape[1]
            for b, a in zip(batch, alone):
                torch.testing.assert_close(b[i, :t], a[0], atol=1e-4, rtol=1e-4)


def test_causal_a_prefix_gives_the_same_frames(upstream):
    name, up = upstream
    wav = _wavs([32000], seed=2)[0]
    # GE2E's centred 400-sample window reads 200 samples past a frame's centre; WakeHuBERT's
    # last frame is completed with zeros
    lookahead = 2 if name == "ge2e" else 1
    with torch.no_grad():
        full = up([wav])["hidden_states"]
        prefix = up([wav[:16000]])["hidden_states"]
        changed = up([torch.cat([wav[:16000], -wav[16000:]])])["hidden_states"]
    t = prefix[0].shape[1] - lookahead
    for f, p, c in zip(full, prefix, changed):
        torch.testing.assert_close(p[0, :t], f[0, :t], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(c[0, :t], f[0, :t], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(changed[-1][0, t + 5:], full[-1][0, t + 5:])  # the future does matter later


def test_ge2e_holds_resemblyzers_weights():
    up = load_upstream("ge2e")
    path = package_file("resemblyzer", "pretrained.pt", "resemblyzer==0.1.4")
    state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]

    def digest(t):
        return hashlib.sha256(t.detach().float().contiguous().numpy().tobytes()).hexdigest()

    for i, lstm in enumerate(up.layers):
        assert digest(lstm.weight_hh_l0) == digest(state[f"lstm.weight_hh_l{i}"])
    # per-layer LSTMs compute what Resemblyzer's one 3-layer nn.LSTM computes
    ref = torch.nn.LSTM(40, 256, 3, batch_first=True)
    ref.load_state_dict({k[len("lstm."):]: v for k, v in state.items() if k.startswith("lstm.")})
    wav = _wavs([8000], seed=3)[0]
    with torch.no_grad():
        mel = up.mel(wav)[None]
        torch.testing.assert_close(up([wav])["hidden_states"][-1], ref(mel)[0], atol=1e-5, rtol=1e-5)


def test_ge2e_mel_is_librosas_slaney_filterbank():
    import s3prl_dd.compat

    s3prl_dd.compat.apply()
    import torchaudio.functional as AF

    from s3prl_dd.upstream.ge2e import slaney_mel_filterbank

    ref = AF.melscale_fbanks(201, 0.0, 8000.0, 40, 16000, norm="slaney", mel_scale="slaney").T.numpy()
    np.testing.assert_allclose(slaney_mel_filterbank(), ref, rtol=1e-4, atol=1e-7)


def test_wakehubert_runs_the_packaged_onnx():
    from s3prl_dd.upstream.wakehubert import ONNX_FILE, WakeHubertUpstream

    path = package_file("ovos_ww_plugin_wakeforge", ONNX_FILE, "ovos-ww-plugin-wakeforge==0.3.0")
    # the sha256 the package's NOTICE gives for this file
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith("7c08cdb068f16bee")
    up = WakeHubertUpstream()
    wav = _wavs([16000], seed=4)
    with torch.no_grad():
        out = up(wav)
    assert out["projection"].shape == (1, 50, 128)
    # a real (trained) network: the blocks are sparse ReLU maps, not all-zero, not constant
    h = out["hidden_states"][3]
    assert 0.05 < (h > 0).float().mean() < 0.95 and h.std(dim=1).mean() > 1e-3
    proj = load_upstream("wakehubert_proj")
    with torch.no_grad():
        torch.testing.assert_close(proj(wav)["hidden_states"][0], out["projection"])


def test_a_missing_package_says_how_to_install_it():
    with pytest.raises(UserError, match=r"pip install resemblyzer==0.1.4 --no-deps"):
        package_file("no_such_package_s3prl_dd", "pretrained.pt", "resemblyzer==0.1.4")
    with pytest.raises(UserError, match="no missing.onnx"):
        package_file("s3prl_dd", "missing.onnx", "ovos-ww-plugin-wakeforge==0.3.0")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from s3prl_dd.corpus import build_corpus

    d = tmp_path_factory.mktemp("pretrained")
    build_corpus({"type": "builtin", "n_per_speaker": 4, "seed": 0}, d / "corpus")
    return d / "corpus"


@pytest.mark.parametrize("name, layer", [("ge2e", 1), ("wakehubert", 5)])
def test_extraction_into_a_store(corpus, tmp_path, name, layer):
    from s3prl_dd.corpus.audio import load_audio
    from s3prl_dd.features.extract import extract
    from s3prl_dd.features.store import FeatureStore

    r = extract(corpus, tmp_path / "store", upstream=name, layer=layer, progress=False, device="cpu", batch_size=4)
    assert r["complete"]
    s = FeatureStore.open(tmp_path / "store")
    n_states, width, hop, frames = SPEC[name]
    assert s.meta["upstream"] == name and s.dim == width and s.meta["downsample_rate"] == hop
    assert s.representation == {"kind": "hidden_state", "layer": layer}
    up = load_upstream(name).eval()
    for i in (0, len(s) - 1):
        wav = torch.from_numpy(load_audio(corpus / s.index[i]["path"]))
        assert s.index[i]["length"] == frames(len(wav))
        with torch.no_grad():
            alone = up([wav])["hidden_states"][layer][0].numpy()
        np.testing.assert_allclose(s.features(i), alone, atol=1e-4, rtol=1e-4)


def _runner(args, cwd):
    return subprocess.run([sys.executable, "-m", "s3prl_dd.run_downstream", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(SPEC))
def test_runner_trains_and_evaluates(corpus, tmp_path, name):
    exp = tmp_path / "exp"
    over = f"config.downstream_expert.datarc.corpus='{corpus}',,{FAST},,config.runner.total_steps=4"
    r = _runner(["-m", "train", "-u", name, "-d", "emotion_distilled", "-c", str(CONFIG), "-p", str(exp),
                 "--device", "cpu", "-o", over], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (exp / "states-4.ckpt").is_file() and (exp / "dev-best.ckpt").is_file()
    r = _runner(["-m", "evaluate", "-e", str(exp / "dev-best.ckpt"), "--device", "cpu"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test acc:" in r.stdout and "uar:" in r.stdout
