"""``s3prl-dd <command>``: one entry point for every stage. Each command lives in its own
module; this file only parses arguments and turns UserError into one line on stderr."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import UserError


def _corpus(args):
    from .corpus import build_corpus

    spec = {"type": args.type}
    if args.type == "builtin":
        spec.update(n_per_speaker=args.n_per_speaker, seed=args.seed)
    elif args.type == "manifest":
        spec.update(csv=args.source)
    elif args.type == "iemocap":
        spec.update(root=args.source)
    elif args.type == "voxceleb":
        spec.update(n_speakers=args.n_speakers, seed=args.seed)
    if args.type in ("manifest", "iemocap") and not args.source:
        raise UserError(f"--source is required for a {args.type} corpus")
    info = build_corpus(spec, args.out)
    print(json.dumps({k: info[k] for k in ("name", "source", "root", "counts") if k in info}, indent=1))


def _patch(args):
    from .patching import apply_patches, status

    result = status() if args.check else apply_patches(revert=args.revert)
    for name, state in result.items():
        print(f"{name}: {state}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3prl-dd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"s3prl-dd: error: {e}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
