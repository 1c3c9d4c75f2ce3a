"""Built-in synthetic corpora: IEMOCAP layout read by s3prl's own preprocessing, determinism,
label proportions, VoxCeleb1 layout."""
import hashlib
import importlib.util
import json
import re
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3prl_dd.corpus import build_corpus, import_iemocap, make_builtin_corpus, make_builtin_voxceleb
from s3prl_dd.corpus.builtin import class_quota, plan_corpus
from s3prl_dd.corpus.calibrate import utterance_features
from s3prl_dd.protocol import LABELS
from s3prl_dd.utils import UserError

N = 4  # target-class utterances per speaker: 40 in the corpus, 70 files with the dropped ones


@pytest.fixture(autouse=True)
def librosa_find_files(monkeypatch):
    """s3prl's IEMOCAP preprocessing imports librosa.util.find_files; s3prl_dd.compat provides
    it when librosa is missing. Stub it here if neither is there, so this test stays about the
    corpus."""
    if "librosa.util" in sys.modules or importlib.util.find_spec("librosa") is not None:
        return
    util = types.ModuleType("librosa.util")
    util.find_files = lambda d, **kw: sorted(str(p) for p in Path(d).rglob("*.wav"))
    librosa = types.ModuleType("librosa")
    librosa.util = util
    monkeypatch.setitem(sys.modules, "librosa", librosa)
    monkeypatch.setitem(sys.modules, "librosa.util", util)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("builtin") / "corpus"
    make_builtin_corpus(out, n_per_speaker=N, seed=0)
    return out


def digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "corpus.json"}


def test_class_quota_follows_iemocap():
    assert class_quota(40) == {"neu": 12, "hap": 12, "ang": 8, "sad": 8}
    q = class_quota(5531)
    assert q == {"neu": 1708, "hap": 1636, "ang": 1103, "sad": 1084}
    assert sum(class_quota(37).values()) == 37


def test_layout_and_labels(corpus_dir):
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    assert corpus["source"] == "builtin" and corpus["root"] == str(corpus_dir.resolve())
    assert corpus["n_sessions"] == 5 and corpus["n_utterances"] == 10 * N
    assert corpus["spec"] == {"type": "builtin", "n_per_speaker": N, "seed": 0}
    for k in range(1, 6):
        assert corpus["counts"][f"Session{k}"] == {"neu": 2, "hap": 2, "ang": 2, "sad": 2}
    wavs = sorted((corpus_dir / "Session1/sentences/wav").rglob("*.wav"))
    assert len(wavs) == 2 * (N + 3)
    assert re.fullmatch(r"Ses01[FM]_impro\d\d_[FM]\d{3}\.wav", wavs[0].name)
    info = sf.info(str(wavs[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert 1.0 <= info.duration <= 3.0

    line = re.compile(r"^\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(Ses0\d[FM]_impro\d\d_[FM]\d{3})\t(\w{3})\t"
                      r"\[\d\.\d{4}, \d\.\d{4}, \d\.\d{4}\]$")
    raw = Counter()
    for txt in corpus_dir.glob("Session*/dialog/EmoEvaluation/*.txt"):
        for text in txt.read_text().splitlines():
            if text.startswith("["):
                m = line.match(text)
                assert m, text
                assert m.group(3).startswith(txt.stem) and float(m.group(2)) > float(m.group(1))
                raw[m.group(4)] += 1
    assert raw["fru"] and raw["sur"] and raw["xxx"] and raw["exc"]
    assert raw["hap"] + raw["exc"] == 10 and sum(raw.values()) == 10 * (N + 3)

    meta = json.loads((corpus_dir / "meta_data/Session3/test_meta_data.json").read_text())
    assert meta["labels"] == LABELS
    assert {r["speaker"] for r in meta["meta_data"]} == {"Ses03F", "Ses03M"}
    assert all((corpus_dir / r["path"]).is_file() and r["session"] == 3 for r in meta["meta_data"])
    assert all(r["label"] in LABELS for r in meta["meta_data"])


def test_default_size_proportions():
    counts = Counter(u.label for u in plan_corpus(40, 0))
    assert counts == {"neu": 120, "hap": 120, "ang": 80, "sad": 80, None: 40}
    raw = Counter(u.raw_label for u in plan_corpus(40, 0))
    assert raw["exc"] == 80 and raw["hap"] == 40


def test_same_seed_same_bytes_other_seed_differs(corpus_dir, tmp_path):
    make_builtin_corpus(tmp_path / "again", n_per_speaker=N, seed=0)
    assert digest(tmp_path / "again") == digest(corpus_dir)
    plan0, plan1 = plan_corpus(N, 0), plan_corpus(N, 1)
    from s3prl_dd.corpus.builtin import channels, render_utt, voices
    a = render_utt(plan0[0], 0, voices(0), channels(0))
    b = render_utt(plan1[0], 1, voices(1), channels(1))
    assert a.shape != b.shape or not np.array_equal(a, b)
    assert [u.raw_label for u in plan0] != [u.raw_label for u in plan1]


def test_s3prl_preprocessing_reads_the_same_utterances(corpus_dir, tmp_path):
    corpus = import_iemocap(corpus_dir, tmp_path / "imported")
    assert corpus["source"] == "iemocap" and corpus["n_utterances"] == 10 * N
    for k in range(1, 6):
        for split in ("train", "test"):
            ours = json.loads((corpus_dir / f"meta_data/Session{k}/{split}_meta_data.json").read_text())
            theirs = json.loads((tmp_path / f"imported/meta_data/Session{k}/{split}_meta_data.json").read_text())
            assert ours == theirs


def test_iemocap_root_with_session_in_its_path(corpus_dir, tmp_path):
    # s3prl cuts wav paths at the first "Session" of the absolute path
    link = tmp_path / "MySessionData"
    link.symlink_to(corpus_dir.resolve(), target_is_directory=True)
    corpus = import_iemocap(tmp_path / "MySessionData", tmp_path / "out")
    row = json.loads((tmp_path / "out/meta_data/Session1/test_meta_data.json").read_text())["meta_data"][0]
    assert row["path"].startswith("Session1/sentences/wav/")
    assert corpus["n_utterances"] == 10 * N


def test_iemocap_bad_roots(tmp_path):
    with pytest.raises(UserError, match="IEMOCAP root not found: .*missing"):
        import_iemocap(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no Session\\* folders in IEMOCAP root .*empty"):
        import_iemocap(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "half/Session1/sentences/wav").mkdir(parents=True)
    with pytest.raises(UserError, match="Session1: missing folder dialog/EmoEvaluation"):
        import_iemocap(tmp_path / "half", tmp_path / "out")
    (tmp_path / "half/Session1/dialog/EmoEvaluation").mkdir(parents=True)
    with pytest.raises(UserError, match="Session1: no utterance with a neu/hap/exc/ang/sad label"):
        import_iemocap(tmp_path / "half", tmp_path / "out")


def test_build_corpus_builtin_is_cached(tmp_path):
    spec = {"type": "builtin", "n_per_speaker": N, "seed": 3}
    first = build_corpus(spec, tmp_path / "c")
    stamp = (tmp_path / "c/corpus.json").stat().st_mtime_ns
    assert build_corpus(dict(spec), tmp_path / "c") == first
    assert (tmp_path / "c/corpus.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="another spec"):
        build_corpus({**spec, "seed": 4}, tmp_path / "c")
    with pytest.raises(UserError, match="n_per_speaker must be an integer >= 4"):
        build_corpus({"type": "builtin", "n_per_speaker": 2}, tmp_path / "d")
    (tmp_path / "user/Session1").mkdir(parents=True)
    with pytest.raises(UserError, match="not made by the built-in generator"):
        make_builtin_corpus(tmp_path / "user", n_per_speaker=N)


def test_voices_differ_more_than_utterances():
    """The SID probe needs speakers to be recognisable from the features."""
    from s3prl_dd.corpus.builtin import channels, render_utt, voices

    plan = [u for u in plan_corpus(N, 0) if u.session == 1 and u.label == "neu"]
    vt, ct = voices(0), channels(0)
    f = {u.sex: utterance_features(render_utt(u, 0, vt, ct)) for u in plan}
    assert f["F"].shape == (240,) and np.linalg.norm(f["F"] - f["M"]) > 1.0


def test_voxceleb_layout(tmp_path):
    out = tmp_path / "vox1"
    info = make_builtin_voxceleb(out, n_speakers=3, utts_per_speaker=3, seed=0)
    assert info["counts"] == {"train": 3, "dev": 3, "test": 3}
    assert info["s3prl_file_path"] == str(tmp_path.resolve())
    lines = (out / "iden_split.txt").read_text().splitlines()
    assert len(lines) == 9
    splits = {}
    for text in lines:
        split, rel = text.split(" ")
        assert re.fullmatch(r"id1000[1-3]/[A-Za-z0-9_-]{11}/\d{5}\.wav", rel)
        assert (out / "wav" / rel).is_file()
        splits.setdefault(rel.split("/")[0], set()).add(split)
    assert splits == {f"id1000{i}": {"1", "2", "3"} for i in (1, 2, 3)}
    assert sorted(p.name for p in (out / "wav").iterdir()) == ["id10001", "id10002", "id10003"]
    # s3prl's voxceleb1 dataset finds files as <file_path>/*/wav/<rel>
    assert list(Path(info["s3prl_file_path"]).glob("*/wav/" + lines[0].split(" ")[1]))
    stamp = (out / "voxceleb.json").stat().st_mtime_ns
    assert make_builtin_voxceleb(out, n_speakers=3, utts_per_speaker=3, seed=0) == info
    assert (out / "voxceleb.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="utts_per_speaker must be an integer >= 3"):
        make_builtin_voxceleb(out, n_speakers=3, utts_per_speaker=2)
