"""``s3prl-dd <command>``: one entry point for every stage. Each command lives in its own
module; this file only parses arguments and turns UserError into one line on stderr."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

from .errors import UserError, disk_full_message
from .runlock import run_lock
from .utils import check_output_dir


def _corpus(args):
    from .corpus import build_corpus, make_builtin_voxceleb

    if args.type in ("manifest", "iemocap") and not args.source:
        raise UserError(f"--source is required for a {args.type} corpus")
    check_output_dir(args.out, "--out")
    if args.type == "voxceleb":
        info = make_builtin_voxceleb(args.out, n_speakers=args.n_speakers, seed=args.seed)
        print(json.dumps(info, indent=1, default=str)[:2000])
        return
    spec = {"type": args.type}
    if args.type == "builtin":
        spec.update(n_per_speaker=args.n_per_speaker, seed=args.seed)
    elif args.type == "manifest":
        spec.update(csv=args.source)
    else:
        spec.update(root=args.source)
    info = build_corpus(spec, args.out)
    print(json.dumps({k: info[k] for k in ("name", "source", "root", "counts") if k in info}, indent=1))


def _patch(args):
    from .patching import apply_patches, status

    result = status() if args.check else apply_patches(revert=args.revert)
    for name, state in result.items():
        print(f"{name}: {state}")


def _distill(args):
    from .gan.trainer import train_gan

    if not args.config and not args.resume:
        raise UserError("-c/--config is required (or --resume RUN_DIR)")
    check_output_dir(args.out, "--out")
    lock = contextlib.nullcontext()
    if args.resume and os.environ.get("RANK", "0") == "0":  # torchrun: one lock, held by rank 0
        if not os.path.isdir(args.resume):
            raise UserError(f"--resume {args.resume}: no such run directory")
        lock = run_lock(args.resume, "a distill run")
    with lock:
        r = train_gan(args.config, args.store, args.fold, pool_dir=args.pool, out_dir=args.out,
                      resume=args.resume or False, device=args.device, overrides=args.override)
    if "generator" in r:
        print(json.dumps({k: v for k, v in r.items() if k != "trainer"}, indent=1))


def _sample(args):
    from .gan.sampler import sample_to_store

    check_output_dir(args.out, "--out")
    store = sample_to_store(args.generator, args.out, ppc=args.ppc, total=args.total,
                            balance=args.balance, counts=args.counts, seed=args.seed,
                            length=args.length, device=args.device or "cpu", truncation=args.truncation,
                            standing=args.standing_stats)
    print(json.dumps({"store": str(store.path), "n_items": len(store), "counts": store.meta["counts"]}, indent=1))


def _pipeline(args):
    from .pipeline import run_pipeline
    from .pipeline.run import failed_cells

    check_output_dir(args.out, "--out")
    run = run_pipeline(args.config, args.override, out=args.out)
    report = run / "report.md"
    print(report.read_text() if report.is_file() else f"run directory: {run}")
    failed = failed_cells(run)
    if failed:  # the report covers the rest, but a script must see that the grid is incomplete
        print(f"s3prl-dd: {len(failed)} cell(s) failed (see {run / 'cells'}/*.error; a rerun retries them)",
              file=sys.stderr)
        raise SystemExit(1)


def _distill_set(args):
    from .distill.sources import distill_set

    check_output_dir(args.out, "--out")
    summary = distill_set(args.store, args.fold, args.source, args.ppc, args.seed, args.out,
                          generator=args.generator, pool=args.pool, config=args.config,
                          overrides=args.override, device=args.device)
    print(json.dumps(summary, indent=1))


def _probe(args):
    from .probe.run import probe_command, probe_options

    check_output_dir(args.out or args.run, "--out" if args.out else "--run")  # probe writes last: fail first
    if args.run:
        from .pipeline.run import probe_pipeline_run

        if args.store or args.er or args.generator:
            raise UserError("--run takes its store, ER models and generators from the run; drop --store/--er/--generator")
        block = probe_pipeline_run(args.run, *probe_options(args))
    else:
        block = probe_command(args)
    print(block["markdown"], end="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3prl-dd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    for name, (_, help_text) in PASSTHROUGH.items():
        sub.add_parser(name, help=help_text + " (see s3prl-dd " + name + " -h)", add_help=False)

    p = sub.add_parser("corpus", help="build a corpus directory (meta json per fold + corpus.json)")
    p.add_argument("type", choices=["builtin", "manifest", "iemocap", "voxceleb"])
    p.add_argument("--out", required=True, help="corpus directory to write")
    p.add_argument("--source", help="manifest CSV (path,label,speaker[,session]) or IEMOCAP root")
    p.add_argument("--n-per-speaker", type=int, default=40)
    p.add_argument("--n-speakers", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_corpus)

    p = sub.add_parser("patch", help="apply patches/ to the installed s3prl (idempotent)")
    p.add_argument("--check", action="store_true", help="only report each patch's state")
    p.add_argument("--revert", action="store_true")
    p.set_defaults(func=_patch)

    p = sub.add_parser("distill", help="train a GAN distiller on one fold (torchrun for DDP)")
    p.add_argument("-c", "--config", help="GAN config, e.g. downstream_configs/gan/gan_att_cpu.yaml")
    p.add_argument("--store", help="feature store of real features (optional with --resume)")
    p.add_argument("--fold", help="fold to distil, e.g. fold1 (its train part only)")
    p.add_argument("--pool", help="teacher pool directory (needed when loss.lambda_sml > 0)")
    p.add_argument("-o", "--override", help='config overrides: "loss.lambda_sml=0.5,,train.steps=2000"')
    p.add_argument("--out", default="runs", help="root of the numbered run directories")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its newest ckpt-<step>.pt")
    p.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    p.set_defaults(func=_distill)

    p = sub.add_parser("sample", help="sample a synthetic feature store from a generator.pt")
    p.add_argument("--generator", required=True, help="generator.pt (or best.pt) of a distill run")
    p.add_argument("--out", required=True, help="feature store directory to write")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--ppc", type=int, help="points per class (balanced)")
    budget.add_argument("--total", type=int, help="total size, split by --balance")
    budget.add_argument("--counts", help="explicit counts: neu=10,hap=5,...")
    p.add_argument("--balance", choices=["prior", "balanced"], default="prior",
                   help="with --total: follow the real train class prior, or split evenly")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--length", type=int, help="frames per sample (crop/tile the generator's T)")
    p.add_argument("--truncation", type=float, default=1.0,
                   help="noise scale psi in (0, 1]: samples from psi * N(0, I) (1 = plain i.i.d. sampling)")
    p.add_argument("--standing-stats", type=int, default=0, metavar="BATCHES",
                   help="first recompute BatchNorm statistics for the exported (EMA) weights from this many "
                        "batches of 32 samples (0 = off, the training statistics)")
    p.add_argument("--device")
    p.set_defaults(func=_sample)
    p = sub.add_parser("pipeline", help="the whole pipeline and experiment grid, resumable")
    p.add_argument("-c", "--config", required=True, help="downstream_configs/pipeline/<name>.yaml")
    p.add_argument("-o", "--override", help="a.b=v,,c=w overrides of the pipeline config")
    p.add_argument("--out", help="run directory (default runs/<config name>); rerunning continues it")
    p.set_defaults(func=_pipeline)
    p = sub.add_parser("distill-set", help="a training set for one fold and budget from one source, as a feature store")
    p.add_argument("--source", required=True,
                   choices=["random", "herding", "kcenter", "gan", "gan_herding", "gan_latent", "dm"])
    p.add_argument("--store", required=True, help="feature store of real features")
    p.add_argument("--fold", required=True, help="fold whose TRAIN part is distilled, e.g. fold1")
    p.add_argument("--ppc", type=int, required=True, help="points per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generator", help="generator.pt of a distill run on the same fold (GAN sources)")
    p.add_argument("--pool", help="teacher pool directory of the same fold (optional)")
    p.add_argument("-c", "--config", help="source options (default downstream_configs/distill/<file>.yaml)")
    p.add_argument("-o", "--override", help='source option overrides: "iterations=500,,lr=0.5"')
    p.add_argument("--out", required=True, help="feature store directory to write")
    p.add_argument("--device")
    p.set_defaults(func=_distill_set)
    p = sub.add_parser("probe", help="SID privacy probe (paper Table 4) and generator memorisation check")
    p.add_argument("--run", help="pipeline run directory: probes its own ER cells and generators and adds Table 4 to its report")
    p.add_argument("--store", help="feature store of real features with speaker labels")
    p.add_argument("--fold", help="fold whose train statistics (and train/dev parts) are used, e.g. 1")
    p.add_argument("--er", help="SER models: real=er-N.pt,baseline=dev-best.ckpt,proposed=...")
    p.add_argument("--generator", help="generators to check: baseline=generator.pt,proposed=...")
    p.add_argument("--seeds", help="probe seeds (split + init), comma-separated (default 0,1,2, or the run's probe.seeds)")
    p.add_argument("--steps", type=int, help="probe training steps (default 1000)")
    p.add_argument("--lr", type=float, help="probe learning rate (default 1e-3)")
    p.add_argument("--train-ratio", type=float, help="per-speaker training share (default 0.7)")
    p.add_argument("--n-per-class", type=int, help="generated samples per class for the memorisation check (50)")
    p.add_argument("--heldout", choices=["dev", "test"], help="held-out real part of the check (default dev)")
    p.add_argument("--out", help="where sid_probe.json / sid_probe.md go (explicit mode; --run writes into the run)")
    p.add_argument("--device")
    p.set_defaults(func=_probe)
    return parser


# Stages whose modules own a complete argparse CLI: ``s3prl-dd NAME ARGS`` == ``python -m MODULE ARGS``.
PASSTHROUGH = {
    "extract": ("s3prl_dd.features.extract", "one upstream pass over a corpus into a feature store"),
    "train-er": ("s3prl_dd.er.train", "SUPERB ER on a feature store (one fold, one seed)"),
    "pool": ("s3prl_dd.er.pool", "the teacher pool: ER checkpoints from early to converged"),
}

# their output-directory flag, checked here before the stage starts (extract checks its own)
PASSTHROUGH_OUT = {"train-er": "--runs", "pool": "--out"}


def main(argv: list[str] | None = None) -> None:
    import importlib

    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in PASSTHROUGH:
            flag = PASSTHROUGH_OUT.get(argv[0])
            if flag in argv[1:-1]:
                check_output_dir(argv[argv.index(flag) + 1], flag)
            sys.argv[0] = f"s3prl-dd {argv[0]}"
            return importlib.import_module(PASSTHROUGH[argv[0]][0]).main(argv[1:])
        args = build_parser().parse_args(argv)
        args.func(args)
    except UserError as e:
        print(f"s3prl-dd: error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except SystemExit as e:
        # the stage modules' own CLIs (PASSTHROUGH) end a UserError with SystemExit("error: ...")
        # (exit status 1): the same one line and exit status 2 as every other command
        if isinstance(e.code, str):
            print(f"s3prl-dd: {e.code}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
    except OSError as e:
        if disk_full_message(e) is None:
            raise
        print(f"s3prl-dd: error: {disk_full_message(e)}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
