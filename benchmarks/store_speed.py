"""What the feature store buys: ER training steps on the fly vs on cached features.

    python benchmarks/store_speed.py --manifest /work/shared/data/emodb/er4.csv \
        --out benchmarks/results/store_speed.json

Same model, batch (4 x accumulation 8) and number of optimiser steps everywhere; no evaluation
during the timed runs. Per-step times are marginal: (t(N steps) - t(N0 steps)) / (N - N0), so
process start, imports and audio pre-loading cancel out.

  fbank_no_cmvn (240-dim, real EmoDB fold 1):
    runner    s3prl's runner (python -m s3prl_dd.run_downstream -d emotion_distilled), upstream
              on the fly, as a user would run it
    runner_cached  the same runner with -u cached -k <the store> (+ runner_ratio: on the fly / cached)
    emulated  the same in-process: upstream forward on each mini-batch, then the ER step
    frames    train_er on the store's frames;   pooled: on its time-means (linear model)
    + extraction throughput (utterances/s, real-time factor)
  random HuBERT Base (13 x 768, built offline): extraction throughput on a few utterances, the
    emulated on-the-fly step, and store steps on 768-dim features of the same shape."""
from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_uar import default_work, import_corpus  # noqa: E402

from s3prl_dd.corpus.audio import load_audio  # noqa: E402
from s3prl_dd.er.data import ERData  # noqa: E402
from s3prl_dd.er.model import ERModel, pad  # noqa: E402
from s3prl_dd.er.train import er_config, microbatch_schedule, train_er  # noqa: E402
from s3prl_dd.features.extract import extract, read_corpus  # noqa: E402
from s3prl_dd.features.store import FeatureStore  # noqa: E402
from s3prl_dd.features.upstream import load_upstream, random_hubert_base, select  # noqa: E402
from s3prl_dd.utils import atomic_write_json  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REP = {"kind": "hidden_state", "layer": -1}


def cfg_for(steps: int, pooled) -> dict:
    # s3prl's recipe (lr does not change the cost); evaluation pushed past the end
    return er_config(overrides=[f"runner.total_steps={steps}", f"runner.eval_step={10 ** 9}",
                                f"runner.log_step={10 ** 9}", f"datarc.pooled={pooled}"])


def marginal(fn, n0: int, n1: int) -> dict:
    t0, t1 = fn(n0), fn(n1)
    return {"steps": [n0, n1], "seconds": [t0, t1], "s_per_step": (t1 - t0) / (n1 - n0)}


def store_steps(train: ERData, steps: int, pooled: bool) -> float:
    return train_er(train, None, None, cfg_for(steps, pooled), device="cpu")["train_seconds"]


def runner_steps(corpus_dir: Path, steps: int, work: Path, upstream: str = "fbank_no_cmvn", store=None) -> float:
    """s3prl's runner, upstream on the fly, or ``upstream="cached"`` reading ``store``."""
    exp = work / f"runner-{upstream}-{steps}"
    over = (f"config.downstream_expert.datarc.corpus='{corpus_dir}',,config.runner.total_steps={steps},,"
            f"config.runner.eval_step={10 ** 9},,config.runner.save_step={10 ** 9},,config.runner.log_step={10 ** 9},,"
            "config.downstream_expert.datarc.test_fold='fold1'")
    cmd = [sys.executable, "-m", "s3prl_dd.run_downstream", "-m", "train", "-u", upstream,
           *(["-k", str(store)] if store is not None else []), "-d", "emotion_distilled", "-c", str(ROOT / "downstream_configs" / "emotion_distilled.yaml"),
           "-p", str(exp), "-o", over]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t


def emulated_steps(upstream, wavs: list[torch.Tensor], labels: np.ndarray, ds: int, steps: int) -> float:
    """s3prl's training loop without the runner: upstream forward per mini-batch, then the step."""
    torch.manual_seed(0)
    model = ERModel(select(upstream([wavs[0]])["hidden_states"], REP).shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = microbatch_schedule(len(wavs), 4, torch.Generator().manual_seed(0))
    y = torch.from_numpy(labels)
    t = time.perf_counter()
    for _ in range(steps):
        for _ in range(8):
            m = next(batches).tolist()
            with torch.no_grad():
                f = select(upstream([wavs[i] for i in m])["hidden_states"], REP)
            feats = [f[j, : round(len(wavs[i]) / ds)] for j, i in enumerate(m)]
            loss = torch.nn.functional.cross_entropy(model(*pad(feats)), y[m]) / 8
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1)
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - t


def subset_corpus(manifest: Path, out: Path, per: int = 1) -> Path:
    """``per`` utterances of each class in sessions 1 and 2: a valid 2-session corpus."""
    from s3prl_dd.corpus.meta import write_meta

    rows, seen = [], {}
    with open(manifest, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["session"], r["label"])
            if r["session"] in ("1", "2") and seen.get(key, 0) < per:
                seen[key] = seen.get(key, 0) + 1
                rows.append({"path": r["path"], "label": r["label"], "speaker": r["speaker"], "session": int(r["session"])})
    write_meta(rows, out, name="subset", source=str(manifest), root=manifest.parent)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path)
    p.add_argument("--steps", type=int, default=100, help="N (N0 = N // 5)")
    p.add_argument("--hubert_utts", type=int, default=2, help="per class and session (x8)")
    p.add_argument("--skip_runner", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    work = a.work or default_work(a.manifest)
    tmp = Path(tempfile.mkdtemp(prefix="store_speed-"))
    corpus_dir = import_corpus(a.manifest.resolve(), work / "corpus")
    n1, n0 = a.steps, max(1, a.steps // 5)
    res = {"env": {"torch": torch.__version__, "threads": 1, "cpu": platform.processor() or platform.machine()}}

    # ---- fbank_no_cmvn
    ext = extract(corpus_dir, tmp / "fbank", "fbank_no_cmvn", device="cpu", progress=False)
    store = FeatureStore.open(tmp / "fbank")
    tr = store.split(1, "train")
    frames, pooled = ERData.from_store(store, tr, False), ERData.from_store(store, tr, True)
    up = load_upstream("fbank_no_cmvn").eval()
    root, items, _, _ = read_corpus(corpus_dir)
    by_id = {it["id"]: it for it in items}
    wavs = [torch.from_numpy(load_audio(root / by_id[i]["path"])) for i in store.ids(tr)]
    fb = {"extraction": ext, "store_bytes": store.nbytes(), "n_train": len(tr),
          "store_frames": marginal(lambda n: store_steps(frames, n, False), n0, n1),
          "store_pooled": marginal(lambda n: store_steps(pooled, n, True), n0, n1),
          "emulated_on_the_fly": marginal(lambda n: emulated_steps(up, wavs, store.labels(tr), 160, n), n0, n1)}
    if a.skip_runner:
        fb["runner"] = "skipped (--skip_runner)"
    else:
        fb["runner"] = marginal(lambda n: runner_steps(corpus_dir, n, tmp), n0, n1)
        # the same runner reading the store through -u cached: what the store buys s3prl users
        fb["runner_cached"] = marginal(lambda n: runner_steps(corpus_dir, n, tmp, "cached", tmp / "fbank"), n0, n1)
        fb["runner_ratio"] = fb["runner"]["s_per_step"] / fb["runner_cached"]["s_per_step"]
        print(f"runner s/step: on the fly {fb['runner']['s_per_step'] * 1e3:.1f} ms, -u cached "
              f"{fb['runner_cached']['s_per_step'] * 1e3:.1f} ms (x{fb['runner_ratio']:.2f})", flush=True)
    ref = fb["runner"]["s_per_step"] if isinstance(fb["runner"], dict) else fb["emulated_on_the_fly"]["s_per_step"]
    fb["speedup_frames"] = ref / fb["store_frames"]["s_per_step"]
    fb["speedup_pooled"] = ref / fb["store_pooled"]["s_per_step"]
    res["fbank_no_cmvn"] = fb
    print(f"fbank: extraction {ext['utt_per_s']:.0f} utt/s (RTF {ext['rtf']:.4f}); s/step: "
          + ", ".join(f"{k} {fb[k]['s_per_step'] * 1e3:.1f} ms" for k in
                      ("runner", "emulated_on_the_fly", "store_frames", "store_pooled") if isinstance(fb[k], dict))
          + f"; speed-up frames x{fb['speedup_frames']:.1f}, pooled x{fb['speedup_pooled']:.0f}", flush=True)

    # ---- random HuBERT Base
    hub = random_hubert_base()
    sub = subset_corpus(a.manifest.resolve(), tmp / "subset", a.hubert_utts)
    hext = extract(sub, tmp / "hubert", hub, upstream_name="hubert_base_random", device="cpu", progress=False)
    hstore = FeatureStore.open(tmp / "hubert")
    T = hstore.index[0]["length"]
    rng = np.random.default_rng(0)
    hframes = ERData([rng.standard_normal((T, 768)).astype(np.float32) for _ in tr], store.labels(tr))
    sub_wavs = wavs[:8]
    hb = {"extraction": hext, "n_layers": 13, "dim": hstore.dim, "frames_per_utt": T,
          "emulated_on_the_fly": marginal(lambda n: emulated_steps(hub, sub_wavs, store.labels(tr)[:8], 320, n), 1, 2),
          "store_frames": marginal(lambda n: store_steps(hframes, n, False), n0, n1),
          "store_pooled": marginal(lambda n: store_steps(ERData(hframes.pooled(), hframes.labels), n, True), n0, n1)}
    hb["speedup_frames"] = hb["emulated_on_the_fly"]["s_per_step"] / hb["store_frames"]["s_per_step"]
    hb["speedup_pooled"] = hb["emulated_on_the_fly"]["s_per_step"] / hb["store_pooled"]["s_per_step"]
    res["hubert_base_random"] = hb
    print(f"hubert (random): extraction {hext['utt_per_s']:.2f} utt/s (RTF {hext['rtf']:.3f}); s/step on the fly "
          f"{hb['emulated_on_the_fly']['s_per_step']:.2f}, store frames {hb['store_frames']['s_per_step'] * 1e3:.1f} ms, "
          f"pooled {hb['store_pooled']['s_per_step'] * 1e3:.2f} ms; speed-up x{hb['speedup_frames']:.0f} / "
          f"x{hb['speedup_pooled']:.0f}", flush=True)
    atomic_write_json(res, a.out)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
