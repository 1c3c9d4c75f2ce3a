"""Manifest import (RAVDESS-like: 48 kHz, some stereo), meta data format, build_corpus caching,
and every bad-input error naming the file or field."""
import json
import math

import numpy as np
import pytest
import soundfile as sf

from s3prl_dd.corpus import build_corpus, import_manifest, load_audio, load_corpus, write_meta
from s3prl_dd.corpus.meta import validate_rows
from s3prl_dd.protocol import LABELS
from s3prl_dd.utils import UserError

LABELS_RAW = ["neutral", "happy", "angry", "sad", "calm", "fearful"]


def write_wav(path, n, sr=48000, channels=1, seed=0):
    x = np.random.default_rng(seed).uniform(-0.3, 0.3, (n, channels)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x if channels > 1 else x[:, 0], sr, subtype="PCM_16")


def make_ravdess(root, n_speakers=5, session=False, rows_extra=()):
    """Tiny RAVDESS-like corpus: Actor_XX/<n>.wav at 48 kHz, every other speaker stereo."""
    lines = ["path,label,speaker" + (",session" if session else "")]
    for s in range(1, n_speakers + 1):
        for j, label in enumerate(LABELS_RAW):
            rel = f"Actor_{s:02d}/03-01-{j:02d}-{s:02d}.wav"
            write_wav(root / rel, 4800 + 480 * j + s, channels=2 if s % 2 == 0 else 1, seed=s * 10 + j)
            lines.append(f"{rel},{label},Actor_{s:02d}" + (f",{s}" if session else ""))
    lines += list(rows_extra)
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def test_ravdess_like_import(tmp_path):
    csv = make_ravdess(tmp_path / "ravdess")
    corpus = import_manifest(csv, tmp_path / "out")
    assert corpus["source"] == "manifest" and corpus["n_sessions"] == 5
    assert corpus["root"] == str((tmp_path / "ravdess").resolve())
    assert corpus["n_utterances"] == 20
    assert corpus["dropped"] == {"calm": 5, "fearful": 5}
    assert any("dropped 10 rows" in n for n in corpus["notes"])
    # only rows that are kept are scanned: 20 at 48 kHz, speakers 2 and 4 in stereo
    assert corpus["audio"]["n_resampled"] == 20 and corpus["audio"]["n_multichannel"] == 8
    assert any("mixed to mono" in n for n in corpus["notes"])
    # speakers sorted, dealt round-robin: Actor_0k -> session k
    for k in range(1, 6):
        assert corpus["counts"][f"Session{k}"] == {lab: 1 for lab in LABELS}
    assert load_corpus(tmp_path / "out") == corpus

    test = json.loads((tmp_path / "out/meta_data/Session2/test_meta_data.json").read_text())
    train = json.loads((tmp_path / "out/meta_data/Session2/train_meta_data.json").read_text())
    assert test["labels"] == {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
    assert {r["speaker"] for r in test["meta_data"]} == {"Actor_02"}
    assert len(train["meta_data"]) == 16 and all(r["session"] != 2 for r in train["meta_data"])
    paths = [r["path"] for r in train["meta_data"]]
    assert paths == sorted(paths)
    row = test["meta_data"][0]
    assert set(row) == {"path", "label", "speaker", "session"}
    # stereo 48 kHz -> mono 16 kHz of the right length
    wav = load_audio(tmp_path / "ravdess" / row["path"])
    n48 = sf.info(str(tmp_path / "ravdess" / row["path"])).frames
    assert wav.ndim == 1 and wav.dtype == np.float32 and len(wav) == math.ceil(n48 / 3)


def test_label_map_and_session_column(tmp_path):
    root = tmp_path / "c"
    lines = ["path,label,speaker,session"]
    for s in range(1, 6):
        for code in ("01", "03", "05", "04", "08"):
            rel = f"{s}_{code}.wav"
            write_wav(root / rel, 1600, sr=16000)
            lines.append(f"{rel},{code},spk{s},{s}")
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    corpus = import_manifest(root / "m.csv", tmp_path / "out",
                             label_map={"01": "neutral", "03": "hap", "05": "ang", "04": "sad", "08": None})
    assert corpus["n_utterances"] == 20 and corpus["dropped"] == {"08": 5}
    assert corpus["audio"]["n_resampled"] == 0
    assert corpus["counts"]["Session3"] == {lab: 1 for lab in LABELS}


def test_build_corpus_reuses_and_rebuilds(tmp_path):
    csv = make_ravdess(tmp_path / "r", session=True)
    spec = {"type": "manifest", "csv": str(csv)}
    first = build_corpus(spec, tmp_path / "out")
    stamp = (tmp_path / "out/corpus.json").stat().st_mtime_ns
    assert build_corpus(spec, tmp_path / "out") == first
    assert (tmp_path / "out/corpus.json").stat().st_mtime_ns == stamp
    csv.write_text(csv.read_text().replace("Actor_01/03-01-00-01.wav,neutral", "Actor_01/03-01-00-01.wav,calm"))
    assert build_corpus(spec, tmp_path / "out")["n_utterances"] == first["n_utterances"] - 1
    with pytest.raises(UserError, match="another spec"):
        build_corpus({**spec, "label_map": {"calm": "neu"}}, tmp_path / "out")
    with pytest.raises(UserError, match="corpus type 'nope'"):
        build_corpus({"type": "nope"}, tmp_path / "x")
    with pytest.raises(UserError, match="needs field 'csv'"):
        build_corpus({"type": "manifest"}, tmp_path / "x")
    with pytest.raises(UserError, match="field 'sede'"):
        build_corpus({"type": "builtin", "sede": 1}, tmp_path / "x")


# ----------------------------------------------------------------------------- bad input
def test_missing_manifest_and_corpus(tmp_path):
    with pytest.raises(UserError, match="manifest not found: .*none.csv"):
        import_manifest(tmp_path / "none.csv", tmp_path / "out")
    with pytest.raises(UserError, match="no corpus.json in .*nowhere"):
        load_corpus(tmp_path / "nowhere")


def test_missing_column(tmp_path):
    (tmp_path / "m.csv").write_text("file,speaker,emotion\na.wav,03,anger\n")
    with pytest.raises(UserError, match="m.csv: missing column 'path'"):
        import_manifest(tmp_path / "m.csv", tmp_path / "out")
    (tmp_path / "n.csv").write_text("path,label\na.wav,ang\n")
    with pytest.raises(UserError, match="n.csv: missing column 'speaker'"):
        import_manifest(tmp_path / "n.csv", tmp_path / "out")


def test_no_usable_rows_and_bad_label_map(tmp_path):
    (tmp_path / "m.csv").write_text("path,label,speaker\na.wav,boredom,03\nb.wav,disgust,04\n")
    with pytest.raises(UserError, match=r"no row has a usable label.*boredom"):
        import_manifest(tmp_path / "m.csv", tmp_path / "out")
    with pytest.raises(UserError, match=r"label_map\['boredom'\] = 'bored'"):
        import_manifest(tmp_path / "m.csv", tmp_path / "out", label_map={"boredom": "bored"})


def test_unknown_label_in_rows_names_row():
    rows = [{"path": "x.wav", "label": "fear", "speaker": "a", "session": 1, "_where": "m.csv line 7"}]
    with pytest.raises(UserError, match="m.csv line 7: unknown label 'fear'"):
        validate_rows(rows)


def test_bad_session_values(tmp_path):
    csv = make_ravdess(tmp_path / "r", session=True, rows_extra=["Actor_01/03-01-00-01.wav,neutral,Actor_01,one"])
    with pytest.raises(UserError, match="manifest.csv line 32: session 'one' is not an integer"):
        import_manifest(csv, tmp_path / "out")


def test_session_with_no_utterances(tmp_path):
    csv = make_ravdess(tmp_path / "r", session=True)
    csv.write_text(csv.read_text().replace(",Actor_03,3", ",Actor_03,2"))
    with pytest.raises(UserError, match="session 3 has no utterances"):
        import_manifest(csv, tmp_path / "out")


def test_too_few_speakers(tmp_path):
    csv = make_ravdess(tmp_path / "r", n_speakers=3)
    with pytest.raises(UserError, match="only 3 speakers"):
        import_manifest(csv, tmp_path / "out")


def test_class_missing_from_a_fold(tmp_path):
    csv = make_ravdess(tmp_path / "r", session=True)
    # 'sad' only in session 1: fold1 has no sad training utterance
    text = "\n".join(line for line in csv.read_text().splitlines()
                     if not (",sad," in line and "Actor_01" not in line))
    csv.write_text(text + "\n")
    with pytest.raises(UserError, match="fold1 .* no training utterances of class 'sad'"):
        import_manifest(csv, tmp_path / "out")


def test_missing_unreadable_and_empty_audio(tmp_path):
    csv = make_ravdess(tmp_path / "r", session=True)
    (tmp_path / "r/Actor_02/03-01-01-02.wav").unlink()
    with pytest.raises(UserError, match="manifest.csv line 9: audio file not found: .*03-01-01-02.wav"):
        import_manifest(csv, tmp_path / "out")
    write_wav(tmp_path / "r/Actor_02/03-01-01-02.wav", 4800)
    (tmp_path / "r/Actor_03/03-01-02-03.wav").write_bytes(b"garbage" * 20)
    with pytest.raises(UserError, match="cannot read audio file .*03-01-02-03.wav"):
        import_manifest(csv, tmp_path / "out")
    sf.write(tmp_path / "r/Actor_03/03-01-02-03.wav", np.zeros(0, np.float32), 48000)
    with pytest.raises(UserError, match="03-01-02-03.wav is empty"):
        import_manifest(csv, tmp_path / "out")


def test_empty_cell_and_duplicate_path(tmp_path):
    csv = make_ravdess(tmp_path / "r", session=True, rows_extra=["Actor_01/03-01-00-01.wav,neutral,,1"])
    with pytest.raises(UserError, match="line 32: column 'speaker' is empty"):
        import_manifest(csv, tmp_path / "out")
    csv = make_ravdess(tmp_path / "r", session=True, rows_extra=["Actor_01/03-01-00-01.wav,sad,Actor_01,1"])
    with pytest.raises(UserError, match="listed more than once"):
        import_manifest(csv, tmp_path / "out")


def test_write_meta_rejects_empty_corpus(tmp_path):
    with pytest.raises(UserError, match="no utterances"):
        write_meta([], tmp_path, name="x", source="manifest", root=tmp_path)
