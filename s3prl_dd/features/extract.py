"""One pass of an s3prl upstream over a corpus, into a feature store (see store.py).

Every utterance is extracted once, whatever the fold; the folds only index into the store.
Utterances are sorted by length and cut into shards; batches never cross a shard, so each shard
is a deterministic function of the plan and a resumed run equals an uninterrupted one. Under
torchrun, rank r extracts shards r::world and rank 0 merges the index after a barrier.

CLI: ``python -m s3prl_dd.features.extract CORPUS_DIR OUT_DIR -u fbank_no_cmvn``
(``torchrun --nproc_per_node N -m s3prl_dd.features.extract ...`` for several GPUs)."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..corpus.audio import audio_info, load_audio
from ..protocol import SAMPLE_RATE
from ..utils import UserError, atomic_write_json, pick_device
from . import store as st
from .upstream import downsample_rate, frame_counter, load_upstream, representation_from, select


# ---------------------------------------------------------------------------- corpus
def read_corpus(corpus_dir: str | os.PathLike) -> tuple[Path, list[dict], dict, dict]:
    """(audio root, items, folds, labels) of an imported corpus (``s3prl_dd.corpus.meta``).
    ``items`` hold each utterance once (id = its meta ``path``); ``folds`` keeps each fold's
    train/test id lists in file order, which is what s3prl's dev split depends on."""
    from ..corpus.meta import load_corpus, load_fold_meta

    corpus = load_corpus(corpus_dir)
    items, folds = {}, {}
    for k in range(1, int(corpus["n_sessions"]) + 1):
        folds[f"fold{k}"] = {}
        for part in ("train", "test"):
            entries = load_fold_meta(corpus, k, part)
            folds[f"fold{k}"][part] = [e["path"] for e in entries]
            for e in entries:
                items.setdefault(e["path"], {"id": e["path"], "path": e["path"], "label": e["label"],
                                             "speaker": e.get("speaker"), "session": e.get("session")})
    return Path(corpus["root"]), list(items.values()), folds, dict(corpus["labels"])


def corpus_fingerprint(items: list[dict], folds: dict) -> str:
    """A hash of what the corpus is (its utterances, labels, speakers, sessions and folds), so
    that a store can tell whether it was extracted from the corpus it is asked about."""
    import hashlib

    rows = sorted((it["id"], it["label"], str(it.get("speaker")), str(it.get("session"))) for it in items)
    text = json.dumps({"items": rows, "folds": folds}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _what(meta: dict) -> str:
    return f"upstream '{meta.get('upstream')}', {st.describe_representation(meta.get('representation', {}))}"


FORCE = "extract into a new directory, or add --force to rebuild it"


def check_existing(out: Path, upstream_name: str, rep: dict, fingerprint: str, corpus_dir, remedy: str = FORCE) -> bool:
    """True when the complete store at ``out`` holds what is asked for (nothing to do); a store
    of another upstream, representation or corpus -> one-line UserError (``--force`` rebuilds)."""
    old = json.loads((out / "meta.json").read_text())
    want = {"upstream": upstream_name, "representation": rep}
    if old.get("upstream") != upstream_name or not st.same_representation(old.get("representation", {}), rep):
        raise UserError(f"store {out} holds {_what(old)}, but {_what(want)} is asked for; {remedy}")
    same_corpus = (old["corpus_fingerprint"] == fingerprint if "corpus_fingerprint" in old
                   else old.get("corpus") == str(Path(corpus_dir).resolve()))
    if not same_corpus:
        raise UserError(f"store {out} was extracted from another corpus ({old.get('corpus')}) than "
                        f"{corpus_dir}; {remedy}")
    return True


STORE_FILES = ("meta.json", "plan.json", "index.json", "folds.json", "stats.json", "throughput.json")


def clear_store(out: Path) -> None:
    """Delete a store's own files (never anything else a user keeps in the directory)."""
    for name in STORE_FILES:
        (out / name).unlink(missing_ok=True)
    for p in [*out.glob("shard-*.npy"), *out.glob("shard-*.done"), *out.glob(".*.tmp")]:
        p.unlink(missing_ok=True)


def n_samples_16k(path: Path) -> int:
    sr, _, frames = audio_info(path)
    return int(np.ceil(frames * SAMPLE_RATE / sr))


def plan_shards(items: list[dict], lengths: list[int], shard_size: int) -> list[list[str]]:
    """Ids per shard, sorted by (length, id) so that batches pad little."""
    order = sorted(range(len(items)), key=lambda i: (lengths[i], items[i]["id"]))
    ids = [items[i]["id"] for i in order]
    return [ids[s: s + shard_size] for s in range(0, len(ids), shard_size)]


def shards_for_rank(n_shards: int, rank: int, world: int) -> list[int]:
    """Interleaved (r::world) rather than blocks: shards are length-sorted, so blocks would give
    the last rank all the long utterances."""
    return list(range(rank, n_shards, world))


def length_batches(lengths: list[int], batch_size: int, max_batch_seconds: float | None) -> list[list[int]]:
    """Consecutive (already length-sorted) positions, cut by count and by padded audio seconds."""
    batches, cur = [], []
    for i, n in enumerate(lengths):
        padded = max([n] + [lengths[j] for j in cur]) * (len(cur) + 1) / SAMPLE_RATE
        if cur and (len(cur) == batch_size or (max_batch_seconds and padded > max_batch_seconds)):
            batches.append(cur)
            cur = []
        cur.append(i)
    return batches + ([cur] if cur else [])


def check_finite(feats: torch.Tensor, path: Path, upstream: str) -> None:
    if not torch.isfinite(feats).all():
        raise UserError(f"upstream '{upstream}' gave non-finite features (NaN or inf) for {path}; "
                        "check that file, or run without --amp")


class _Audio(Dataset):
    def __init__(self, root: Path, items: list[dict]):
        self.root, self.items = root, items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return torch.from_numpy(load_audio(self.root / self.items[i]["path"]))


# ---------------------------------------------------------------------------- distributed
def _dist_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _init_dist(world: int, device: str) -> bool:
    if world <= 1 or torch.distributed.is_initialized():
        return False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    # extraction of a big corpus outlasts the default 30 min barrier timeout
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(hours=24))
    return True


def _barrier(world: int) -> None:
    if world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


# ---------------------------------------------------------------------------- extraction
def _check_resume(out: Path, meta: dict, plan: dict) -> None:
    """A directory holding another extraction must not be silently mixed with this one."""
    for name, new in (("meta.json", meta), ("plan.json", plan)):
        p = out / name
        if not p.is_file():
            continue
        with open(p) as f:
            old = json.load(f)
        keys = (["upstream", "representation", "dim", "dtype", "shard_size", "corpus_fingerprint"]
                if name == "meta.json" else ["shards"])
        diff = [k for k in keys if old.get(k) != new.get(k) and (k in old or k != "corpus_fingerprint")]
        if diff:
            raise UserError(f"{out} holds an extraction with different {', '.join(diff)}; "
                            "use a new output directory or delete it")


@torch.no_grad()
def _extract_shard(upstream, rep, ds_rate, count, root, items, device, batch_size, max_batch_seconds,
                   num_workers, amp, pbar, name="upstream") -> list[np.ndarray]:
    lengths = [it["n_samples"] for it in items]
    batches = length_batches(lengths, batch_size, max_batch_seconds)
    loader = DataLoader(_Audio(root, items), num_workers=num_workers, collate_fn=list,
                        batch_sampler=batches, pin_memory=device.startswith("cuda"))
    out = []
    for batch, wavs in zip(batches, loader):
        wavs = [w.to(device, non_blocking=True) for w in wavs]
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            feats = select(upstream(wavs)["hidden_states"], rep)
        feats = feats.float().cpu()
        for i, w, f in zip(batch, wavs, feats):
            # the utterance's own frames when the front end's rule is known (frame_counter),
            # else s3prl's Featurizer.tolist rule round(samples / downsample rate)
            n = count(len(w)) if count else max(1, round(len(w) / ds_rate))
            n = min(n, f.shape[0])
            if n < 1:  # shorter than the upstream's receptive field: no frame to keep
                raise UserError(f"audio file {root / items[i]['path']} ({len(w)} samples at 16 kHz) is shorter "
                                f"than upstream '{name}' can make one frame of")
            check_finite(f[:n], root / items[i]["path"], name)
            out.append(f[:n].numpy())
        pbar.update(len(wavs))
    return out


def extract(corpus_dir, out_dir, upstream: str | torch.nn.Module = "fbank_no_cmvn", layer: int = -1,
            featurizer: str | os.PathLike | None = None, device: str | None = None, fp16: bool = False,
            shard_size: int = 256, batch_size: int = 8, max_batch_seconds: float | None = None,
            num_workers: int = 0, amp: bool = False, upstream_name: str | None = None,
            progress: bool = True, max_shards: int | None = None, force: bool = False) -> dict:
    """Extract ``upstream`` over every utterance of the imported corpus at ``corpus_dir`` into a
    store at ``out_dir``; resume if it is partly there. ``upstream`` is an s3prl.hub name or an
    already built s3prl upstream module (then ``upstream_name`` names it in meta.json).
    ``featurizer`` (a runner checkpoint) overrides ``layer``. ``fp16`` stores float16.
    ``amp`` runs the upstream under bf16 autocast (CUDA). ``max_shards`` stops after that many
    new shards (to test resumption). A complete store of another upstream, representation or
    corpus is refused, or with ``force`` rebuilt. Returns throughput figures of this process."""
    out = Path(out_dir)
    rank, world, local_rank = _dist_env()
    device = str(pick_device(device))
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
    own_dist = _init_dist(world, device)
    try:
        return _extract(out, corpus_dir, upstream, layer, featurizer, device, fp16, shard_size,
                        batch_size, max_batch_seconds, num_workers, amp, upstream_name, progress,
                        max_shards, rank, world, force)
    finally:
        if own_dist:
            torch.distributed.destroy_process_group()


def _extract(out, corpus_dir, upstream, layer, featurizer, device, fp16, shard_size, batch_size,
             max_batch_seconds, num_workers, amp, upstream_name, progress, max_shards, rank, world,
             force=False):
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} is a file, not a directory")
    root, items, folds, labels = read_corpus(corpus_dir)
    rep = representation_from(layer, featurizer)
    fingerprint = corpus_fingerprint(items, folds)
    name = upstream if isinstance(upstream, str) else (upstream_name or type(upstream).__name__)
    if (out / "index.json").is_file() and (out / "meta.json").is_file():
        if not force and check_existing(out, name, rep, fingerprint, corpus_dir):
            return {"skipped": True, "n_processed": 0, "store": str(out)}
    if force and rank == 0:
        clear_store(out)
    _barrier(world)
    if isinstance(upstream, str):
        upstream_name, upstream = upstream, load_upstream(upstream)
    upstream = upstream.to(device).eval()
    with torch.no_grad():
        probe = select(upstream([torch.zeros(SAMPLE_RATE, device=device)])["hidden_states"], rep)
    ds_rate = downsample_rate(upstream, SAMPLE_RATE, probe.shape[1])
    count = frame_counter(upstream, ds_rate, device)

    by_id = {it["id"]: it for it in items}
    for it in items:
        it["n_samples"] = n_samples_16k(root / it["path"])
    plan = {"shard_size": shard_size,
            "shards": plan_shards(items, [it["n_samples"] for it in items], shard_size)}
    meta = st.make_meta(upstream_name or type(upstream).__name__, rep, probe.shape[-1],
                        "float16" if fp16 else "float32", ds_rate, labels=labels, shard_size=shard_size,
                        frame_rule="own_frames" if count else "s3prl_round",
                        audio_root=str(root), corpus=str(Path(corpus_dir).resolve()),
                        corpus_fingerprint=fingerprint)
    _check_resume(out, meta, plan)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        if not (out / "meta.json").is_file():
            atomic_write_json(meta, out / "meta.json")
        if not (out / "plan.json").is_file():
            atomic_write_json(plan, out / "plan.json")
    _barrier(world)

    n_shards = len(plan["shards"])
    todo = [k for k in shards_for_rank(n_shards, rank, world) if not st.shard_done(out, k)]
    if max_shards is not None:
        todo = todo[:max_shards]
    todo_items = [[by_id[i] for i in plan["shards"][k]] for k in todo]
    n_todo = sum(len(x) for x in todo_items)
    pbar = tqdm(total=n_todo, desc=f"extract {meta['upstream']}", unit="utt",
                disable=not progress or rank != 0, dynamic_ncols=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k, shard_items in zip(todo, todo_items):
        arrays = _extract_shard(upstream, rep, ds_rate, count, root, shard_items, device, batch_size,
                                max_batch_seconds, num_workers, amp, pbar, meta["upstream"])
        st.write_shard(out, k, shard_items, arrays, meta["dtype"])
    wall = time.perf_counter() - t0
    pbar.close()
    audio_s = sum(it["n_samples"] for x in todo_items for it in x) / SAMPLE_RATE
    result = {"store": str(out), "device": _device_name(device), "world_size": world,
              "n_utterances": len(items), "n_processed": n_todo, "audio_seconds": audio_s,
              "wall_seconds": wall, "utt_per_s": n_todo / wall if wall > 0 else None,
              "rtf": wall / audio_s if audio_s > 0 else None, "complete": False}

    _barrier(world)
    if rank == 0 and all(st.shard_done(out, k) for k in range(n_shards)):
        t1 = time.perf_counter()
        st.finalize(out, n_shards, folds)
        result.update(complete=True, finalize_seconds=time.perf_counter() - t1)
        atomic_write_json(result, out / "throughput.json")
    _barrier(world)
    return result


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({torch.get_num_threads()} threads)"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus_dir")
    p.add_argument("out_dir")
    p.add_argument("-u", "--upstream", default="fbank_no_cmvn")
    p.add_argument("--layer", type=int, default=-1, help="hidden-state index (-1 = last)")
    p.add_argument("--featurizer", help="s3prl runner checkpoint whose Featurizer weights to use")
    p.add_argument("--device")
    p.add_argument("--fp16", action="store_true", help="store float16")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the upstream (CUDA)")
    p.add_argument("--shard_size", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--max_batch_seconds", type=float)
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--force", action="store_true",
                   help="rebuild OUT_DIR when it holds a store of another upstream, representation or corpus")
    a = p.parse_args(argv)
    try:
        r = extract(a.corpus_dir, a.out_dir, a.upstream, a.layer, a.featurizer, a.device, a.fp16,
                    a.shard_size, a.batch_size, a.max_batch_seconds, a.num_workers, a.amp, force=a.force)
    except UserError as e:
        raise SystemExit(f"error: {e}")
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
