import numpy as np
import pytest
import soundfile as sf
import torch

from s3prl_dd.corpus.meta import write_meta
from s3prl_dd.features import store as st
from s3prl_dd.features.extract import extract, length_batches, plan_shards, read_corpus, shards_for_rank
from s3prl_dd.features.store import FeatureStore, make_meta, write_store
from s3prl_dd.protocol import LABELS, train_dev_indices
from s3prl_dd.utils import UserError

LAB = list(LABELS)


def make_corpus(root, n_per_session=4, sessions=5, sr=16000, seed=0):
    """A tiny corpus in s3prl's IEMOCAP meta layout (corpus.json + SessionK/*_meta_data.json)."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True)
    items = []
    for s in range(1, sessions + 1):
        for j in range(n_per_session):
            n = int(rng.uniform(0.25, 0.6) * sr)
            wav = 0.1 * np.sin(2 * np.pi * (200 + 100 * j) * np.arange(n) / sr) + 0.01 * rng.standard_normal(n)
            path = f"wav/s{s}_{j}.wav"
            sf.write(root / path, wav.astype(np.float32), sr)
            items.append({"path": path, "label": LAB[j % 4], "speaker": f"spk{s}", "session": s})
    write_meta(items, root, name="tiny", source="test", root=root)
    return root


def random_items(n=20, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return [{"id": f"u{i:02d}", "path": f"wav/u{i:02d}.wav", "label": LAB[i % 4], "speaker": f"s{i % 5}",
             "session": i % 5 + 1, "features": rng.standard_normal((int(rng.integers(3, 12)), dim)).astype(np.float32)}
            for i in range(n)]


def folds_of(items):
    """s3prl's IEMOCAP folds: test = session k, train = the rest, each in path order."""
    out = {}
    for k in range(1, 6):
        tr = sorted(i["id"] for i in items if i["session"] != k)
        te = sorted(i["id"] for i in items if i["session"] == k)
        out[f"fold{k}"] = {"train": tr, "test": te}
    return out


REP = {"kind": "hidden_state", "layer": -1}


def test_round_trip_features_labels_pooled(tmp_path):
    items = random_items()
    s = write_store(tmp_path / "s", items, make_meta("up", REP, 6, shard_size=7), folds_of(items))
    assert len(s) == 20 and s.dim == 6 and len(list((tmp_path / "s").glob("shard-*.npy"))) == 3
    by_id = {it["id"]: it for it in items}
    for i in range(len(s)):
        ref = by_id[s.index[i]["id"]]
        assert np.array_equal(s.features(i), ref["features"])
        assert s.features(i).dtype == np.float32
        assert np.allclose(s.pooled([i])[0], ref["features"].mean(0), atol=1e-6)
        assert s.labels([i])[0] == LABELS[ref["label"]]
    reopened = FeatureStore.open(tmp_path / "s")
    assert reopened.index == s.index and reopened.meta["n_items"] == 20


def test_split_follows_s3prl_protocol_and_stats_use_train_only(tmp_path):
    items = random_items()
    folds = folds_of(items)
    s = write_store(tmp_path / "s", items, make_meta("up", REP, 6, shard_size=5), folds)
    for k in range(1, 6):
        train_ids = folds[f"fold{k}"]["train"]
        tr, dv = train_dev_indices(len(train_ids))
        assert s.ids(s.split(k, "train")) == [train_ids[j] for j in tr]
        assert s.ids(s.split(f"fold{k}", "dev")) == [train_ids[j] for j in dv]
        assert s.ids(s.split(k, "test")) == folds[f"fold{k}"]["test"]
        frames = np.concatenate([s.features(i) for i in s.split(k, "train")]).astype(np.float64)
        mean, std = s.stats(k)
        assert np.allclose(mean, frames.mean(0), atol=1e-5) and np.allclose(std, frames.std(0), atol=1e-5)
        everything = np.concatenate([s.features(i) for i in range(len(s))])
        assert not np.allclose(mean, everything.mean(0), atol=1e-3)  # dev/test frames left out
    with pytest.raises(UserError):
        s.split(6, "train")


def test_float16_store_reads_float32(tmp_path):
    items = random_items(n=6)
    s = write_store(tmp_path / "s", items, make_meta("up", REP, 6, dtype="float16"))
    assert np.load(tmp_path / "s" / "shard-00000.npy", mmap_mode="r").dtype == np.float16
    assert s.features(0).dtype == np.float32
    assert np.allclose(s.features(0), items[0]["features"], atol=1e-2)


def test_synthetic_store_has_everything_in_train(tmp_path):
    items = [{"id": f"g{i}", "label": LAB[i % 4], "features": np.ones((4, 3), np.float32) * i} for i in range(9)]
    s = write_store(tmp_path / "g", items, make_meta("up", REP, 3, shard_size=4))
    assert s.split(1, "train") == list(range(9)) and s.split(3, "test") == []
    assert s.index[0]["session"] == 0 and s.index[0]["split"] == "train"
    assert np.allclose(s.stats(1)[0], np.arange(9).mean())


def test_compatibility_check_refuses_other_dim_or_representation(tmp_path):
    s = write_store(tmp_path / "s", random_items(n=4), make_meta("up", REP, 6))
    s.check_compatible(dim=6, representation={"kind": "hidden_state", "layer": -1})
    with pytest.raises(UserError, match="768-dim"):
        s.check_compatible(dim=768)
    with pytest.raises(UserError, match="hidden state 9"):
        s.check_compatible(representation={"kind": "hidden_state", "layer": 9})
    with pytest.raises(UserError, match="featurizer"):
        s.check_compatible(representation={"kind": "featurizer", "weights": [1.0]})
    with pytest.raises(UserError, match="dim 7"):
        write_store(tmp_path / "t", random_items(n=2), make_meta("up", REP, 7))


def test_shard_assignment_is_a_partition():
    for n, world in [(10, 3), (2, 4), (7, 1)]:
        got = [shards_for_rank(n, r, world) for r in range(world)]
        assert sorted(k for g in got for k in g) == list(range(n))
        assert got[0][:2] == [0, world][: len(got[0][:2])]


def test_plan_sorts_by_length_and_batches_respect_limits():
    items = [{"id": c} for c in "abcde"]
    assert plan_shards(items, [5, 1, 3, 1, 9], 2) == [["b", "d"], ["c", "a"], ["e"]]
    assert length_batches([1, 2, 3, 4, 5], 2, None) == [[0, 1], [2, 3], [4]]
    # 16000-sample items: at most 2 s of padded audio per batch
    assert length_batches([16000] * 3, 8, 2.0) == [[0, 1], [2]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    torch.set_num_threads(1)
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def reference_store(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "store"
    r = extract(corpus, out, "fbank_no_cmvn", shard_size=6, batch_size=4, progress=False, device="cpu")
    assert r["complete"] and r["n_processed"] == 20 and r["utt_per_s"] > 0 and r["rtf"] > 0
    return FeatureStore.open(out)


def test_extraction_covers_each_utterance_once(reference_store, corpus):
    s = reference_store
    _, items, folds, _ = read_corpus(corpus)
    assert sorted(s.ids()) == sorted(i["id"] for i in items)
    assert s.meta["dim"] == 240 and s.meta["downsample_rate"] == 160 and s.meta["upstream"] == "fbank_no_cmvn"
    assert s.ids(s.split(2, "test")) == folds["fold2"]["test"]
    # each utterance keeps exactly its own frames, whatever it was batched with
    from s3prl_dd.corpus.audio import load_audio
    from s3prl_dd.features.upstream import frame_counter, load_upstream

    up = load_upstream("fbank_no_cmvn").eval()
    count = frame_counter(up, 160)
    assert [count(n) for n in (400, 559, 560, 32000)] == [1, 1, 2, 198]  # kaldi: (n - 400) // 160 + 1
    for i in (0, 5, 19):  # shortest of a batch of 4, middle, longest
        wav = torch.from_numpy(load_audio(corpus / s.index[i]["path"]))
        with torch.no_grad():
            alone = up([wav])["hidden_states"][-1][0]
        assert s.index[i]["length"] == alone.shape[0] <= round(len(wav) / 160)
        assert np.allclose(s.features(i), alone.numpy(), atol=1e-4)


def _assert_same_store(a: FeatureStore, b: FeatureStore):
    assert a.index == b.index
    for i in range(len(a)):
        assert np.array_equal(a.features(i), b.features(i))
    assert np.array_equal(a.stats(1)[0], b.stats(1)[0])


def test_interrupted_extraction_resumes_to_the_same_store(corpus, reference_store, tmp_path, monkeypatch):
    out = tmp_path / "store"
    r = extract(corpus, out, "fbank_no_cmvn", shard_size=6, batch_size=4, progress=False, device="cpu", max_shards=1)
    assert not r["complete"] and r["n_processed"] == 6
    with pytest.raises(UserError, match="incomplete"):
        FeatureStore.open(out)
    # a crash in the middle of writing shard 1: the .npy tmp is half written, no marker
    real_save = np.save

    def dying_save(f, arr):
        f.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        extract(corpus, out, "fbank_no_cmvn", shard_size=6, batch_size=4, progress=False, device="cpu")
    monkeypatch.setattr(np, "save", real_save)
    assert not st.shard_done(out, 1) and list(out.glob(".shard-00001.npy*.tmp"))
    # and a stale shard .npy that never got its marker (killed between rename and marker)
    (out / "shard-00002.npy").write_bytes(b"garbage")
    r = extract(corpus, out, "fbank_no_cmvn", shard_size=6, batch_size=4, progress=False, device="cpu")
    assert r["complete"] and r["n_processed"] == 14  # shard 0 was not redone
    _assert_same_store(FeatureStore.open(out), reference_store)
    assert not list(out.glob(".*.tmp"))


def test_resume_refuses_a_different_extraction(corpus, tmp_path):
    out = tmp_path / "store"
    extract(corpus, out, "fbank_no_cmvn", shard_size=6, progress=False, device="cpu", max_shards=1)
    with pytest.raises(UserError, match="shard_size"):
        extract(corpus, out, "fbank_no_cmvn", shard_size=5, progress=False, device="cpu")


def test_two_ranks_write_disjoint_shards_and_rank0_merges(corpus, reference_store, tmp_path):
    """torchrun's split, without processes: rank 1 then rank 0 over the same directory (no
    process group, so the barriers are no-ops); only rank 0, last, merges the index."""
    from s3prl_dd.features import extract as ex

    out = tmp_path / "store"
    kw = dict(layer=-1, featurizer=None, device="cpu", fp16=False, shard_size=6, batch_size=4,
              max_batch_seconds=None, num_workers=0, amp=False, upstream_name=None, progress=False,
              max_shards=None)
    r1 = ex._extract(out, corpus, "fbank_no_cmvn", rank=1, world=2, **kw)
    assert sorted(p.name for p in out.glob("*.done")) == ["shard-00001.done", "shard-00003.done"]
    assert not r1["complete"] and not (out / "index.json").exists()
    r0 = ex._extract(out, corpus, "fbank_no_cmvn", rank=0, world=2, **kw)
    assert r0["complete"] and r0["n_processed"] + r1["n_processed"] == 20
    _assert_same_store(FeatureStore.open(out), reference_store)


def test_featurizer_representation_from_runner_checkpoint(tmp_path):
    import argparse

    from s3prl_dd.features.upstream import featurizer_representation, representation_from, select

    raw = torch.tensor([0.0, 1.0, 2.0])
    torch.save({"Featurizer": {"weights": raw}, "Args": argparse.Namespace(upstream_feature_normalize=False)},
               tmp_path / "states-1000.ckpt")
    rep = featurizer_representation(tmp_path / "states-1000.ckpt")
    assert rep["kind"] == "featurizer" and not rep["normalize"]
    assert np.allclose(rep["weights"], torch.softmax(raw, 0).numpy())
    hs = [torch.randn(2, 5, 3) for _ in range(3)]
    w = torch.softmax(raw, 0)
    assert torch.allclose(select(hs, rep), w[0] * hs[0] + w[1] * hs[1] + w[2] * hs[2], atol=1e-6)
    assert torch.equal(select(hs, representation_from(1)), hs[1])
    with pytest.raises(UserError, match="3 hidden states"):
        select(hs, {"kind": "hidden_state", "layer": 5})
    torch.save({"Downstream": {}}, tmp_path / "no_featurizer.ckpt")
    with pytest.raises(UserError, match="no trained Featurizer"):
        featurizer_representation(tmp_path / "no_featurizer.ckpt")
