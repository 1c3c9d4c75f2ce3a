"""Orchestration: each stage's output lives under the run directory and is reused when present.

    run/corpus/          corpus.json + meta_data           (s3prl_dd.corpus.build_corpus)
    run/store/           feature store                     (s3prl_dd.features.extract)
    run/pool/foldK/      teacher pool                      (s3prl_dd.er.pool.build_pool)
    run/gans/<a>-<v>-foldK/NNNNN-*/generator.pt            (s3prl_dd.gan.trainer.train_gan)
    run/cells/<key>.json one downstream result per grid cell (run/cells/<key>/: its run)
    run/sid_probe.json   Table 4 + memorisation check       (s3prl_dd.pipeline.privacy)
    run/results.json, run/report.md, run/*.png           (s3prl_dd.pipeline.report)
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm import tqdm

from ..runlock import run_lock
from ..utils import UserError, atomic_write_json, atomic_write_text, config_path, load_yaml, merge_config, pick_device, save_yaml
from ..workers import init_worker
from .cells import GAN_SOURCES, cell_key, enumerate_cells, is_done, run_cell
from .config import gan_key, load_pipeline_config, variant_overrides, variants_for
from .layers import ensure_store, fold_layer, fold_stores, per_fold, resolve_layers


def _device(cfg) -> str:
    return str(pick_device(cfg["device"]))


def _guarded(fn, *job):
    """A failing cell must not end the grid: its error is returned, written beside the cells
    and retried on the next run. Interrupts still stop everything."""
    try:
        return fn(*job)
    except Exception as e:  # noqa: BLE001
        import traceback

        return CellError(f"{type(e).__name__}: {e}", traceback.format_exc())


class CellError:
    def __init__(self, message: str, trace: str):
        self.message, self.trace = message, trace


def _pool_map(fn, jobs: list, workers: int, desc: str, position: int = 1):
    """Run ``fn(*job)`` for each job, in ``workers`` spawned processes (1 = in this process),
    yielding (job, result) as they finish, under a progress bar."""
    bar = tqdm(total=len(jobs), desc=desc, position=position, leave=False, dynamic_ncols=True)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, fn(*job)
            bar.update()
    else:
        # init_worker ties each worker's life to this process: a SIGKILL of the driver, which runs
        # no finally, still ends them (s3prl_dd/workers.py)
        ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=init_worker,
                                 initargs=(os.getpid(), 1))
        try:
            futures = {ex.submit(fn, *job): job for job in jobs}
            for f in as_completed(futures):
                yield futures[f], f.result()
                bar.update()
        finally:
            # On a kill or Ctrl-C, workers must not outlive the pipeline: a half-done job of an
            # orphan would keep writing into a run directory a restarted pipeline also uses.
            for proc in list((ex._processes or {}).values()):
                proc.terminate()
            ex.shutdown(wait=True, cancel_futures=True)
    bar.close()


def _stage_corpus(cfg, run: Path) -> None:
    from ..corpus import build_corpus

    build_corpus(cfg["corpus"], run / "corpus")


def _stage_stores(cfg, run: Path, device: str) -> dict[int, Path]:
    """fold -> its feature store (one store per distinct layer)."""
    _stage_corpus(cfg, run)
    stores = fold_stores(run, cfg)
    for store, fold in {s: f for f, s in stores.items()}.items():  # each distinct store once
        ensure_store(cfg, store, fold_layer(cfg, fold), device)
    return stores


def _stage_pools(cfg, run: Path, stores: dict, device: str) -> dict:
    from ..er.pool import build_pool
    from ..er.train import er_config
    from ..features.store import FeatureStore

    if not any("sml" in v for a in cfg["gan"]["archs"] for v in variants_for(cfg, a)) and "gan_latent" not in cfg["sources"]:
        return {}
    pools = {}
    er = cfg["er"]
    pool_cfg = er_config(profile=er.get("profile"), overrides=er.get("overrides"))
    from ..utils import apply_overrides

    pool_cfg = apply_overrides(pool_cfg, cfg["pool"].get("overrides"))
    for fold in tqdm(cfg["folds"], desc="teacher pools", position=1, leave=False):
        pools[f"fold{fold}"] = str(build_pool(FeatureStore.open(stores[fold]), f"fold{fold}", pool_cfg, run / "pool" / f"fold{fold}",
                                              device=device, progress=False))
    return pools


def _gan_runs(gan_dir: Path) -> list[Path]:
    return sorted(p for p in gan_dir.glob("*") if (p / "config.yaml").is_file()) if gan_dir.is_dir() else []


def finished_generator(gan_dir) -> Path | None:
    """The exported generator of one grid GAN (``run/gans/<gan_key>``): its newest run's
    ``generator.pt`` once that run has finished (``result.json``), else None."""
    runs = _gan_runs(Path(gan_dir))
    done = runs and (runs[-1] / "generator.pt").is_file() and (runs[-1] / "result.json").is_file()
    return runs[-1] / "generator.pt" if done else None


def _gan_job(arch, variant, fold, gan_seed, cfg, store, pool, out, device):
    from ..gan.trainer import train_gan

    out = Path(out)
    if (done := finished_generator(out)) is not None:
        return str(done)
    runs = _gan_runs(out)
    over = ",,".join(filter(None, [variant_overrides(variant), cfg["gan"]["overrides"].get(arch),
                                   f"train.seed={gan_seed}"]))
    if runs and list(runs[-1].glob("ckpt-*.pt")):
        r = train_gan(None, None, None, resume=runs[-1], device=device)
    else:
        r = train_gan(str(config_path(cfg["gan"]["configs"][arch])), store, f"fold{fold}", pool_dir=pool,
                      out_dir=out, device=device, overrides=over, name=f"{arch}-{variant}")
    return r["generator"]


def _stage_gans(cfg, run: Path, stores: dict, pools: dict, device: str) -> dict:
    needs = set(cfg["sources"]) & GAN_SOURCES
    if not needs:
        return {}
    jobs = [(a, v, f, gs, cfg, str(stores[f]), pools.get(f"fold{f}") if "sml" in v else None,
             str(run / "gans" / gan_key(a, v, f, gs)), device)
            for f in cfg["folds"] for gs in cfg["gan_seeds"] for a in cfg["gan"]["archs"] for v in variants_for(cfg, a)]
    return {gan_key(a, v, f, gs): g for (a, v, f, gs, *_), g in _pool_map(_gan_job, jobs, cfg["workers"], "GANs")}


def build_context(cfg: dict, run: Path) -> dict:
    """What cells need, from the stages (each reuses its output when present)."""
    device = _device(cfg)
    stores = _stage_stores(cfg, run, device)
    pools = _stage_pools(cfg, run, stores, device)
    generators = _stage_gans(cfg, run, stores, pools, device)
    # "store" stays for single-layer runs: benchmarks build contexts with that key alone
    return {"cfg": cfg, "store": None if per_fold(cfg) else str(stores[cfg["folds"][0]]),
            "stores": {f: str(p) for f, p in stores.items()}, "pools": pools, "generators": generators,
            "device": device, "run": str(run)}


def failed_cells(run: str | Path) -> list[str]:
    """Keys of the run's grid cells whose last attempt failed (an ``.error`` and no result)."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        return []
    keys = [cell_key(c) for c in enumerate_cells(load_pipeline_config(run / "config.yaml"))]
    return [k for k in keys if (run / "cells" / f"{k}.error").is_file() and not (run / "cells" / f"{k}.json").is_file()]


def _sigterm_to_interrupt(*_):
    raise KeyboardInterrupt("terminated")


def run_pipeline(config_path, overrides=None, out: str | Path | None = None, report: bool = True) -> Path:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    cfg = load_pipeline_config(config_path, overrides)
    run = Path(out or Path("runs") / cfg["name"])
    run.mkdir(parents=True, exist_ok=True)
    # one pipeline per run directory: a second one would train the same GANs and write the same cells
    with run_lock(run, "a pipeline"):
        return _run_locked(cfg, run, report)


FEATURE_KEYS = ("corpus", "upstream", "layer")  # what the store, and so everything after it, is made of


def _check_same_features(cfg: dict, run: Path) -> None:
    """A run directory serves one corpus, upstream and layer: cells are keyed without them, so a
    rerun with another upstream would reuse the old store and cells under the new name."""
    saved = run / "config.yaml"
    if not saved.is_file():
        return
    old = load_yaml(saved)
    changed = [k for k in FEATURE_KEYS if k in old and old[k] != cfg[k]]
    if changed:
        was = ", ".join(f"{k} {old[k]!r} (now {cfg[k]!r})" for k in changed)
        raise UserError(f"{run} was made with {was}: its store and everything built on it are of that; "
                        "use a new --out, or delete the run directory")


def _run_locked(cfg: dict, run: Path, report: bool) -> Path:
    if cfg["layer"] == "dev":
        _stage_corpus(cfg, run)
        device = _device(cfg)
        cfg = resolve_layers(cfg, run, device)
    _check_same_features(cfg, run)
    saved = run / "config.yaml"
    if saved.is_file() and load_yaml(saved) != cfg:
        print(f"[pipeline] {saved} differs from the requested config: cells whose recipe is unchanged are kept; "
              "delete the run directory to start over")
    save_yaml(cfg, saved)

    cells = enumerate_cells(cfg)
    cell_dir = run / "cells"
    cell_dir.mkdir(exist_ok=True)
    todo = [c for c in cells if not is_done(c, cfg, cell_dir)]  # missing, or made with another recipe
    grid = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="grid (cells)", position=0, dynamic_ncols=True)
    ctx = None
    if todo:
        ctx = build_context(cfg, run)
        failed = 0
        for (_, cell, _), record in _pool_map(_guarded, [(run_cell, c, ctx) for c in todo], cfg["workers"], "cells"):
            key = cell_key(cell)
            if isinstance(record, CellError):
                failed += 1
                try:  # atomic: under a full disk the marker is absent, never an empty file
                    atomic_write_text(record.trace, cell_dir / f"{key}.error")
                except OSError as e:
                    tqdm.write(f"[pipeline] could not write cells/{key}.error: {e}")
                tqdm.write(f"[pipeline] cell {key} failed: {record.message} (see cells/{key}.error; rerun retries it)")
                continue
            (cell_dir / f"{key}.error").unlink(missing_ok=True)
            atomic_write_json(record, cell_dir / f"{key}.json")
            grid.update()
        if failed:
            tqdm.write(f"[pipeline] {failed} cell(s) failed; the report covers the rest")
    grid.close()
    if cfg["probe"].get("enabled"):
        from .privacy import finished_probe, privacy_stage

        # a finished probe needs no context: building one would re-enter every stage (and spawn
        # the GAN workers) only to find their outputs on disk
        if ctx is not None or finished_probe(cfg, run) is None:
            privacy_stage(cfg, ctx or build_context(cfg, run))
    if report:
        from .report import write_report

        write_report(run, cfg, cells)
    return run


def probe_pipeline_run(run_dir, seeds=None, speaker: dict | None = None, memo: dict | None = None) -> dict:
    """Table 4 for a pipeline run directory from its saved config, with the cells' own ER
    models (s3prl_dd.pipeline.privacy); results.json and report.md are rewritten with it."""
    from .config import validate
    from .privacy import privacy_stage
    from .report import write_report

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise UserError(f"--run {run}: not a pipeline run directory (no config.yaml)")
    cfg = load_pipeline_config(run / "config.yaml")
    cfg["probe"]["enabled"] = True
    if seeds is not None:
        cfg["probe"]["seeds"] = list(seeds)
    cfg["probe"]["speaker"] = merge_config(cfg["probe"]["speaker"], speaker)
    cfg["probe"]["memo"] = merge_config(cfg["probe"]["memo"], memo)
    validate(cfg)
    with run_lock(run, "s3prl-dd probe --run"):  # it may run missing cells and rewrites the report
        block = privacy_stage(cfg, build_context(cfg, run))
        write_report(run, cfg, enumerate_cells(cfg))
    return block
