"""SUPERB SID (s3prl's own ``-d voxceleb1`` recipe) on the first layer of SER models: Table 4 as
the paper ran it, on a VoxCeleb1-layout corpus.

    python benchmarks/probe_sid.py [--vox VOX1_ROOT] [--er real=er-N.pt,proposed=dev-best.ckpt] \
        [--steps 200] [--eval-step 100] [--out benchmarks/results/probe_sid.json]

Rows: the plain upstream of the first SER model (``-u <its upstream>``, the SID reference) and
``-u ser_probe -k <ckpt>`` per SER model, all with ``downstream_configs/sid_probe.yaml``
(lr 1e-2) and the same budget; each row reports the test accuracy at the best dev step.
Without ``--vox`` a small built-in VoxCeleb1 layout of synthetic speakers is made (outside the
repository); without ``--er`` an SER model is trained on the EmoDB store of
``benchmarks/real_uar.py`` (fold 1, ``fast`` profile), its checkpoint carrying the fold's
statistics so that ``-u ser_probe`` needs nothing else. The full SUPERB budget (200k steps) is
for a GPU; the defaults here are a CPU smoke run, and accuracies at this budget are not
comparable to the paper's."""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from s3prl_dd.probe.run import parse_named, row_label
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.probe.ser import checkpoint_upstream
from s3prl_dd.probe.sid import run_sid, voxceleb_layout
from s3prl_dd.utils import UserError, atomic_write_json

CACHE = Path(os.environ.get("S3PRL_DD_CACHE", Path.home() / ".cache" / "s3prl_dd")) / "benchmarks"


def train_real_er(store_dir: Path, work: Path) -> Path:
    from s3prl_dd.er.train import er_config, train_er_on_store
    from s3prl_dd.features.store import FeatureStore

    if not (store_dir / "index.json").is_file():
        raise UserError(f"no feature store at {store_dir}: run benchmarks/real_uar.py first, or pass --er")
    store = FeatureStore.open(store_dir)
    out = work / "er_real_fold1"
    found = sorted(out.glob("er-*.pt"))
    if not found:
        mean, std = store.stats("fold1")
        train_er_on_store(store, "fold1", er_config(profile="fast"), out_dir=out, seed=0, device="cpu",
                          meta={"mean": mean.tolist(), "std": std.tolist()})
        found = sorted(out.glob("er-*.pt"))
    return found[-1]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vox", help="VoxCeleb1 root (with iden_split.txt); default: a built-in layout")
    p.add_argument("--n-speakers", type=int, default=10)
    p.add_argument("--n-per-speaker", type=int, default=6)
    p.add_argument("--er", help="name=checkpoint,... (default: a real-data SER model on EmoDB fold 1)")
    p.add_argument("--store", default=str(CACHE / "emodb" / "store-fbank_no_cmvn"))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-step", type=int, default=100)
    p.add_argument("--accumulate", type=int, default=1, help="gradient_accumulate_steps (SUPERB: 4)")
    p.add_argument("--work", default=str(CACHE / "probe_sid"))
    p.add_argument("--out", default="benchmarks/results/probe_sid.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    work = Path(a.work)
    t0 = time.perf_counter()
    try:
        if a.vox:
            layout = {"file_path": str(a.vox), "meta_data": str(Path(a.vox) / "iden_split.txt")}  # real VoxCeleb1
        else:
            layout = voxceleb_layout(work / f"vox-{a.n_speakers}x{a.n_per_speaker}", n_speakers=a.n_speakers,
                                     n_per_speaker=a.n_per_speaker)
        er = parse_named(a.er, "--er") or {"real": str(train_real_er(Path(a.store), work))}
        ups = {n: checkpoint_upstream(c) for n, c in er.items()}
        if len(set(ups.values())) != 1 or None in ups.values():
            raise UserError(f"the SER models must name one upstream (the reference row runs it plainly): {ups}")
        upstream = next(iter(ups.values()))
        over = (f"config.runner.total_steps={a.steps},,config.runner.eval_step={a.eval_step},,"
                f"config.runner.save_step={a.eval_step},,config.runner.log_step={a.eval_step},,"
                f"config.runner.gradient_accumulate_steps={a.accumulate}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        rows = []
        for name, (up, ckpt) in {"upstream": (upstream, None), **{n: ("ser_probe", c) for n, c in er.items()}}.items():
            t = time.perf_counter()
            r = run_sid(up, work / "exp" / f"{stamp}-{name}", layout["file_path"], layout["meta_data"], ckpt=ckpt,
                        overrides=over, device=a.device, env={"OMP_NUM_THREADS": str(torch.get_num_threads())})
            rows.append({"name": name, "label": row_label(name), "upstream": up, "ckpt": ckpt,
                         "test_acc": r["test_acc"], "dev_acc": r["dev_acc"], "best_dev_step": r["best_dev_step"],
                         "dev": r["dev"], "test": r["test"], "seconds": time.perf_counter() - t})
            print(f"{name:>10}: test acc {100 * (r['test_acc'] or 0):.2f} at best dev step {r['best_dev_step']} "
                  f"({rows[-1]['seconds']:.0f} s)")
    except UserError as e:
        raise SystemExit(f"error: {e}")
    atomic_write_json({"what": "SUPERB SID (s3prl voxceleb1 expert) on SER first layers, paper Table 4",
                       "corpus": layout, "config": "downstream_configs/sid_probe.yaml", "steps": a.steps,
                       "eval_step": a.eval_step, "gradient_accumulate_steps": a.accumulate, "device": a.device,
                       "rows": rows, "seconds": time.perf_counter() - t0,
                       "machine": platform.processor() or platform.machine(), "torch": torch.__version__}, a.out)
    print(f"{a.out}: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    run_main(main)
