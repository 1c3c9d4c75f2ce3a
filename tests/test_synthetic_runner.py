"""``-u synthetic -d emotion_distilled``: s3prl's runner trains on GAN samples, tests on real audio."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s3prl_dd.gan.checkpoint import export_generator, load_generator
from s3prl_dd.gan.models import build_gan
from s3prl_dd.protocol import LABELS
from s3prl_dd.upstream.requests import decode, encode

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "downstream_configs" / "emotion_distilled.yaml"
MODEL = {"arch": "gan_mlp", "T": 1, "D": 240, "num_classes": 4, "noise_dim": 6, "g_hidden": [16], "d_hidden": [16]}


@pytest.fixture(scope="module")
def generator_path(tmp_path_factory):
    torch.manual_seed(0)
    g, _ = build_gan(MODEL)
    path = tmp_path_factory.mktemp("gen") / "generator.pt"
    info = {"upstream": "fbank_no_cmvn", "representation": {"kind": "hidden_state", "layer": -1},
            "dim": 240, "downsample_rate": 160}
    export_generator(path, g, MODEL, torch.zeros(240), torch.ones(240), LABELS, [5, 3, 2, 2], info)
    return path


def test_request_round_trip_and_real_audio_is_not_a_request():
    wav = encode(label=2, index=7, class_total=20, seed=3, length=16, downsample_rate=160)
    assert len(wav) == 16 * 160
    assert decode(wav) == {"label": 2, "index": 7, "class_total": 20, "seed": 3, "length": 16}
    assert decode(np.random.default_rng(0).uniform(-1, 1, 16000).astype(np.float32)) is None


def test_synthetic_upstream_serves_the_sampler_s_samples(generator_path):
    from s3prl_dd.gan.sampler import generate_class
    from s3prl_dd.upstream.synthetic import synthetic

    up = synthetic(ckpt=str(generator_path))
    reqs = [torch.from_numpy(encode(1, k, 4, 0, 5, 160)) for k in range(4)]
    real = torch.randn(8000) * 0.1
    out = up([*reqs, real])["hidden_states"][0]
    assert out.shape[-1] == 240 and out.shape[0] == 5
    expected = generate_class(load_generator(generator_path), 1, 4, 0)  # (4, 1, 240), tiled to 5 frames
    assert torch.allclose(out[:4, :5], expected.expand(-1, 5, -1), atol=1e-6)
    assert out[4].abs().sum() > 0  # real audio went through fbank_no_cmvn


def test_runner_trains_on_gan_samples(generator_path, tmp_path):
    from s3prl_dd.corpus.builtin import make_builtin_corpus

    corpus = tmp_path / "corpus"
    make_builtin_corpus(corpus, n_per_speaker=4, seed=0)
    over = (f"config.downstream_expert.datarc.corpus='{corpus}',,config.downstream_expert.datarc.train_source='synthetic',,"
            "config.downstream_expert.datarc.synthetic.ppc=3,,config.runner.total_steps=4,,config.runner.eval_step=4,,"
            "config.runner.save_step=4,,config.runner.log_step=2,,config.runner.gradient_accumulate_steps=1")
    r = subprocess.run([sys.executable, "-m", "s3prl_dd.run_downstream", "-m", "train", "-u", "synthetic",
                        "-k", str(generator_path), "-d", "emotion_distilled", "-c", str(CONFIG),
                        "-p", str(tmp_path / "exp"), "-o", over], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "training on 12 GAN samples" in r.stdout
    assert (tmp_path / "exp" / "test_fold1_results.json").is_file()
