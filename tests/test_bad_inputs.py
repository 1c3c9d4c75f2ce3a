"""Every bad input of the README's "Bad input and what it gets" table: exit status 2, one error
line naming the file and what is wrong, no traceback, and nothing written or changed."""
import errno
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from gan_fixtures import gan_cfg, tiny_store
from test_corpus_manifest import make_ravdess, write_wav
from test_pipeline import TINY

from s3prl_dd.cli import main
from s3prl_dd.run_downstream import main as runner_main
from s3prl_dd.runlock import run_lock


# ---------------------------------------------------------------------------- inputs
def _manifest(tmp):
    return make_ravdess(tmp / "r", session=True)


def _corpus(tmp, replace=None):
    """A manifest corpus whose file Actor_03/03-01-02-03.wav is replaced by ``replace(path)``."""
    csv = _manifest(tmp)
    if replace:
        replace(tmp / "r/Actor_03/03-01-02-03.wav")
    main(["corpus", "manifest", "--source", str(csv), "--out", str(tmp / "c")])
    return tmp / "c"


def _float_wav(samples):
    return lambda p: sf.write(p, np.asarray(samples, np.float32), 16000, subtype="FLOAT")


def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _pipeline_cfg(tmp, **over):
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump({**TINY, **over}))
    return path


class Payload:  # a pickle that would run code when loaded unsafely
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('PWNED', '/nonexistent/PWNED')}",))


def _generator_file(tmp, kind):
    path = tmp / "generator.pt"
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    elif kind == "unsafe":
        torch.save({"format": "s3prl-dd-generator", "x": Payload()}, path)
    elif kind == "other":
        torch.save({"state_dict": {}, "meta": {"dim": 8}}, path)  # an ER checkpoint, say
    return path


def _store(tmp, edit=None):
    store = tiny_store(tmp / "store")
    if edit:
        edit(store.path)
    return store.path


def _wrong_dim(path):
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "dim": meta["dim"] + 1}))


def _nan_features(path):
    """A NaN in a dev-only frame of a finished store: its statistics (train parts) stay finite."""
    shard = np.load(path / "shard-00000.npy")
    shard[3, 2] = np.nan
    np.save(path / "shard-00000.npy", shard)


def _runner_ckpt_garbage(tmp):
    (tmp / "dev-best.ckpt").write_bytes(b"\x80\x02garbage")
    return str(tmp / "dev-best.ckpt")


# Each row: (id, setup(tmp) -> (entry, argv), pattern of the one error line, files a failing
# command may leave, relative to tmp). The README table lists the same rows.
ROWS = [
    ("nan_audio", lambda t: ("cli", ["extract", str(_corpus(t, _float_wav([0.1, np.nan, np.inf] * 800))), str(t / "s")]),
     r"03-01-02-03\.wav holds 1600 non-finite samples \(NaN or inf\)", {"s/meta.json", "s/plan.json"}),
    ("silent_audio", lambda t: ("cli", ["extract", str(_corpus(t, _float_wav(np.zeros(4800)))), str(t / "s")]),
     r"03-01-02-03\.wav is silent \(every sample is 0\)", {"s/meta.json", "s/plan.json"}),
    ("short_audio", lambda t: (_manifest(t), write_wav(t / "r/Actor_03/03-01-02-03.wav", 480))
     and ("cli", ["corpus", "manifest", "--source", str(t / "r/manifest.csv"), "--out", str(t / "c")]),
     r"03-01-02-03\.wav is 10\.0 ms long, shorter than one 25 ms analysis window", set()),
    ("truncated_wav", lambda t: (_manifest(t), _truncate(t / "r/Actor_03/03-01-02-03.wav"))
     and ("cli", ["corpus", "manifest", "--source", str(t / "r/manifest.csv"), "--out", str(t / "c")]),
     r"03-01-02-03\.wav is truncated: its header announces \d+ frames, the file holds \d+", set()),
    ("generator_garbage", lambda t: ("cli", ["sample", "--generator", str(_generator_file(t, "garbage")),
                                             "--out", str(t / "o"), "--ppc", "2"]),
     r"generator\.pt is not a generator checkpoint \(not a torch file.*accepted: an s3prl-dd generator", set()),
    ("generator_unsafe_pickle", lambda t: ("cli", ["sample", "--generator", str(_generator_file(t, "unsafe")),
                                                   "--out", str(t / "o"), "--ppc", "2"]),
     r"generator\.pt is not a generator checkpoint \(it holds Python objects \(posix\.system\) that a safe", set()),
    ("generator_other_checkpoint", lambda t: ("cli", ["distill-set", "--source", "gan", "--store", str(_store(t)),
                                                      "--fold", "1", "--ppc", "2", "--out", str(t / "o"),
                                                      "--generator", str(_generator_file(t, "other"))]),
     r"generator\.pt is not a generator checkpoint; accepted", set()),
    ("generator_missing", lambda t: ("cli", ["sample", "--generator", str(t / "nope.pt"), "--out", str(t / "o"),
                                             "--ppc", "2"]),
     r"nope\.pt: file not found \(expected an s3prl-dd generator", set()),
    ("yaml_syntax", lambda t: ((t / "bad.yaml").write_text("name: [unclosed\nfolds: [1]\n"),)
     and ("cli", ["pipeline", "-c", str(t / "bad.yaml"), "--out", str(t / "run")]),
     r"bad\.yaml: YAML syntax error at line \d+, column \d+", set()),
    ("scalar_for_list", lambda t: ("cli", ["pipeline", "-c", str(_pipeline_cfg(t)), "-o", "budgets=5",
                                           "--out", str(t / "run")]),
     r"budgets: expected a list, got 5 \(e\.g\. budgets=\[5\]\)", set()),
    ("unknown_source", lambda t: ("cli", ["pipeline", "-c", str(_pipeline_cfg(t, sources=["real", "gann"])),
                                          "--out", str(t / "run")]),
     r"sources: unknown 'gann'", set()),
    ("nested_typo_gan", lambda t: ("cli", ["pipeline", "-c", str(_pipeline_cfg(t, gan={**TINY["gan"], "archz": ["x"]})),
                                           "--out", str(t / "run")]),
     r"gan: unknown keys \['archz'\]", set()),
    ("nested_typo_er", lambda t: ("cli", ["pipeline", "-c", str(_pipeline_cfg(t, er={"profle": "fast"})),
                                          "--out", str(t / "run")]),
     r"er: unknown keys \['profle'\]", set()),
    ("negative_workers", lambda t: ("cli", ["pipeline", "-c", str(_pipeline_cfg(t, workers=-3)), "--out", str(t / "run")]),
     r"workers: -3 is not a positive integer", set()),
    ("run_dir_in_use", lambda t: ("cli", ["pipeline", "-c", str(_pipeline_cfg(t)), "--out", str(t / "locked")]),
     r"locked is in use by a pipeline \(pid \d+\)", set()),
    ("output_is_a_file", lambda t: ((t / "taken").write_text("x"),)
     and ("cli", ["sample", "--generator", str(_generator_file(t, "garbage")), "--out", str(t / "taken"), "--ppc", "2"]),
     r"--out .*taken is a file, not a directory", set()),
    ("output_is_a_file_pipeline", lambda t: ((t / "taken").write_text("x"),)
     and ("cli", ["pipeline", "-c", str(_pipeline_cfg(t)), "--out", str(t / "taken")]),
     r"--out .*taken is a file, not a directory", set()),
    ("output_is_a_file_extract", lambda t: ((t / "taken").write_text("x"),)
     and ("cli", ["extract", str(_corpus(t)), str(t / "taken")]),
     r"output .*taken is a file, not a directory", set()),
    ("output_under_a_file_train_er", lambda t: ((t / "taken").write_text("x"),)
     and ("cli", ["train-er", str(_store(t)), "--runs", str(t / "taken" / "er")]),
     r"--runs .*taken/er lies under .*taken, which is a file", set()),
    ("store_dim_mismatch", lambda t: ("cli", ["train-er", str(_store(t, _wrong_dim)), "--runs", str(t / "er")]),
     r"meta\.json says dim 9, but shard-00000\.npy holds arrays of shape \(\d+, 8\)", set()),
    ("store_nan_features", lambda t: ("cli", ["train-er", str(_store(t, _nan_features)), "--runs", str(t / "er")]),
     r"store .* holds non-finite features \(NaN or inf\) in shard-00000\.npy \(utterance s1/u0\.wav\)", set()),
    ("featurizer_garbage", lambda t: ("cli", ["extract", str(_corpus(t)), str(t / "s"), "--featurizer",
                                              _runner_ckpt_garbage(t)]),
     r"dev-best\.ckpt is not an s3prl runner checkpoint \(not a torch file, or a damaged", set()),
    ("runner_e_missing", lambda t: ("runner", ["-m", "evaluate", "-e", str(t / "result/dev-best.ckpt")]),
     r"dev-best\.ckpt: file not found \(expected an s3prl runner checkpoint", set()),
    ("runner_i_garbage", lambda t: ("runner", ["-m", "evaluate", "-d", "emotion_distilled", "-i", _runner_ckpt_garbage(t)]),
     r"dev-best\.ckpt is not an s3prl runner checkpoint \(not a torch file, or a damaged", set()),
    ("runner_k_missing", lambda t: ("runner", ["-m", "train", "-u", "synthetic", "-k", str(t / "g.pt"),
                                               "-d", "emotion_distilled", "-n", "x"]),
     r"-k .*g\.pt: file not found", set()),
]


def _snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_gets_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    name, setup, pattern, may_write = case
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWNED", str(tmp_path / "PWNED"))
    entry, argv = setup(tmp_path)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    with run_lock(tmp_path / "locked", "a pipeline"):  # the in-use row; a lock elsewhere is harmless
        with pytest.raises(SystemExit) as e:
            (main if entry == "cli" else runner_main)(argv)
    out = capsys.readouterr()
    assert e.value.code == 2, out.err
    errors = [line for line in out.err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in out.err, out.err
    assert re.search(pattern, errors[0]), errors[0]
    after = _snapshot(tmp_path)
    changed = {p for p in after if after[p] != before.get(p)} - set(may_write) - {"locked/.lock"}
    assert not changed, f"written despite the error: {sorted(changed)}"
    assert not (tmp_path / "PWNED").exists()


def test_disk_full_is_one_line_naming_the_file_and_free_space(tmp_path, capsys, monkeypatch):
    csv = _manifest(tmp_path)
    before = _snapshot(tmp_path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SystemExit) as e:
        main(["corpus", "manifest", "--source", str(csv), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert re.search(r"no space left on device writing .*/c/.*\.json \(\d+ MiB free on .*/c\b.*\); free some space", err[0]), err[0]
    assert _snapshot(tmp_path) == before  # no partial or empty file, no temp file


def test_extract_over_another_upstream_or_corpus_refuses_and_force_rebuilds(tmp_path, capsys):
    corpus = _corpus(tmp_path)
    main(["extract", str(corpus), str(tmp_path / "s")])
    meta = (tmp_path / "s/meta.json").read_text()
    for argv, pattern in [
        (["extract", str(corpus), str(tmp_path / "s"), "-u", "fbank"],
         r"holds upstream 'fbank_no_cmvn', hidden state -1, but upstream 'fbank', hidden state -1 is asked for"),
        (["extract", str(corpus), str(tmp_path / "s"), "--layer", "0"], r"but upstream 'fbank_no_cmvn', hidden state 0"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and re.search(pattern, capsys.readouterr().err)
    other = tmp_path / "other"
    other.mkdir()
    make_ravdess(other / "r", n_speakers=6, session=True)
    main(["corpus", "manifest", "--source", str(other / "r/manifest.csv"), "--out", str(other / "c")])
    with pytest.raises(SystemExit):
        main(["extract", str(other / "c"), str(tmp_path / "s")])
    assert "was extracted from another corpus" in capsys.readouterr().err
    assert (tmp_path / "s/meta.json").read_text() == meta  # refused, untouched
    main(["extract", str(corpus), str(tmp_path / "s"), "-u", "fbank", "--force"])
    assert json.loads((tmp_path / "s/meta.json").read_text())["upstream"] == "fbank"


def test_distill_resume_finds_the_runs_store_from_another_directory_and_respects_the_lock(tmp_path, monkeypatch, capsys):
    from s3prl_dd.gan.trainer import train_gan

    monkeypatch.chdir(tmp_path)
    tiny_store(tmp_path / "runs/demo/store")
    cfg = gan_cfg("gan_mlp", steps=2)
    cfg["loss"]["lambda_sml"] = 0.0
    first = train_gan(cfg, "runs/demo/store", "fold1", out_dir="runs/demo/gans", device="cpu")
    run_dir = tmp_path / first["run_dir"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with run_lock(run_dir, "a distill run"):
        with pytest.raises(SystemExit) as e:
            main(["distill", "--resume", str(run_dir), "-o", "train.steps=4", "--device", "cpu"])
        assert e.value.code == 2 and "in use by a distill run" in capsys.readouterr().err
    main(["distill", "--resume", str(run_dir), "-o", "train.steps=4", "--device", "cpu"])
    from s3prl_dd.gan.checkpoint import list_checkpoints

    assert list_checkpoints(run_dir)[-1][0] == 4  # continued from step 2 on the run's own store


@pytest.mark.parametrize("command", ["corpus", "patch", "distill", "sample", "pipeline", "distill-set", "probe",
                                     "extract", "train-er", "pool"])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "-h"])
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out


def test_help_of_the_runner(capsys):
    with pytest.raises(SystemExit) as e:
        runner_main(["-h"])
    assert e.value.code == 0 and "--downstream" in capsys.readouterr().out


def test_a_pool_of_another_upstream_is_refused_by_the_gan(tmp_path):
    from gan_fixtures import tiny_pool

    from s3prl_dd.gan.config import load_pool
    from s3prl_dd.utils import UserError

    store = tiny_store(tmp_path / "store")
    pool = tiny_pool(store, tmp_path / "pool")
    info = json.loads((pool / "pool.json").read_text())
    (pool / "pool.json").write_text(json.dumps({**info, "upstream": "fbank"}))  # same dim and layer
    with pytest.raises(UserError, match="teacher pool .* comes from upstream 'fbank', expected 'fbank_no_cmvn'"):
        load_pool(pool, store, "fold1", "cpu")


def test_an_upstream_that_gives_nan_or_no_frame_is_named_with_the_file(tmp_path):
    from s3prl_dd.features.extract import extract
    from s3prl_dd.utils import UserError

    class NaNUpstream(torch.nn.Module):  # 160-sample frames of NaN
        def forward(self, wavs):
            n = max(len(w) for w in wavs) // 160
            return {"hidden_states": [torch.full((len(wavs), n, 4), float("nan"))]}

    class LongWindowUpstream(NaNUpstream):  # a receptive field of 0.2 s: no frame for the 0.1 s files
        def forward(self, wavs):
            n = max(0, (max(len(w) for w in wavs) - 3200) // 160 + 1)
            return {"hidden_states": [torch.zeros((len(wavs), n, 4))]}

    corpus = _corpus(tmp_path)
    with pytest.raises(UserError, match=r"\.wav \(\d+ samples at 16 kHz\) is shorter than upstream 'long' can make one frame of"):
        extract(corpus, tmp_path / "s", upstream=LongWindowUpstream(), upstream_name="long", progress=False)
    shutil.rmtree(tmp_path / "s")
    with pytest.raises(UserError, match=r"upstream 'nan_up' gave non-finite features \(NaN or inf\) for .*\.wav"):
        extract(corpus, tmp_path / "s", upstream=NaNUpstream(), upstream_name="nan_up", progress=False)
    assert not list((tmp_path / "s").glob("shard-*"))


def test_features_beyond_float16_are_refused_not_stored_as_inf(tmp_path):
    from s3prl_dd.features.store import make_meta, write_store
    from s3prl_dd.utils import UserError

    meta = make_meta("fbank_no_cmvn", {"kind": "hidden_state", "layer": -1}, 2, dtype="float16")
    items = [{"id": "a", "label": "neu", "features": np.full((3, 2), 1e6, np.float32)}]
    with pytest.raises(UserError, match=r"features of a are not finite \(NaN or inf\) \(beyond float16's range"):
        write_store(tmp_path / "s", items, meta)
    assert not list((tmp_path / "s").glob("shard-*"))
