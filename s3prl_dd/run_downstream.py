"""``python -m s3prl_dd.run_downstream``: s3prl's runner with this plugin registered.

Same flags as s3prl's ``run_downstream.py``. Additions, all before s3prl sees the arguments:
``--device`` defaults to CUDA when available else CPU (s3prl's default is always ``cuda``);
torchrun's ``--local-rank`` / ``LOCAL_RANK`` are passed as s3prl's ``--local_rank``; every
``-o config.*`` key must exist in the config (a typo would otherwise add a key silently); and
input errors end with one line instead of a traceback."""
from __future__ import annotations

import os
import sys

from . import compat  # noqa: F401  (applies the shims; see s3prl_dd/__init__.py)
from .utils import UserError, load_yaml


def _value(argv, *flags):
    for i, a in enumerate(argv):
        for flag in flags:
            if a == flag and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
    return None


def check_overrides(argv: list[str]) -> None:
    """Refuse ``-o config.a.b=...`` when ``a.b`` is not in the ``-c`` config."""
    override, config_path = _value(argv, "-o", "--override"), _value(argv, "-c", "--config")
    if config_path and not os.path.isfile(config_path):
        raise UserError(f"-c {config_path}: config file not found")
    if not override or override.lower() == "none" or not config_path or _value(argv, "-e", "--past_exp"):
        return
    config = load_yaml(config_path)
    for option in override.split(",,"):
        key = option.split("=", 1)[0].strip()
        if not key.startswith("config."):
            continue
        node = config
        fields = key.split(".")[1:]
        for i, name in enumerate(fields):
            if not isinstance(node, dict) or name not in node:
                raise UserError(f"config key '{'.'.join(fields[:i + 1])}' does not exist in {config_path} (-o {option.strip()})")
            node = node[name]


OUR_UPSTREAMS = ("synthetic", "ser_probe", "cached")
CKPT_SUFFIXES = (".pt", ".ckpt", ".pth", ".onnx", ".bin", ".th")


def _runner_checkpoint(flag: str, path: str) -> None:
    """s3prl torch.loads -e/-i itself, where a bad file is a traceback or torch's paragraph:
    open it here first, safely, so it is one line naming the flag and the file."""
    import argparse

    from .checkpoints import not_a, safe_load

    obj = safe_load(path, ("runner",), safe_globals=[argparse.Namespace])
    if not isinstance(obj, dict) or not {"Args", "Config"} <= set(obj):
        raise not_a(f"{flag} {path}", ("runner",), "it has no Args/Config of s3prl's runner")


def check_paths(argv: list[str]) -> None:
    """-e (a runner checkpoint or an experiment directory), -i and -k exist and are readable."""
    past = _value(argv, "-e", "--past_exp")
    if past:
        if os.path.isdir(past):
            import glob

            if not glob.glob(os.path.join(past, "states-*.ckpt")):
                raise UserError(f"-e {past}: no states-*.ckpt in this directory to resume from")
        else:
            _runner_checkpoint("-e", past)
    init = _value(argv, "-i", "--init_ckpt")
    if init:
        _runner_checkpoint("-i", init)
    ckpt, upstream = _value(argv, "-k", "--upstream_ckpt"), _value(argv, "-u", "--upstream")
    # -k may also be a URL or a Google Drive id: only what names a local file must exist
    looks_local = ckpt and "://" not in ckpt and (upstream in OUR_UPSTREAMS or os.sep in ckpt
                                                   or ckpt.endswith(CKPT_SUFFIXES))
    if looks_local and not os.path.exists(ckpt):
        raise UserError(f"-k {ckpt}: file not found")
    if looks_local and not os.access(ckpt, os.R_OK):
        raise UserError(f"-k {ckpt}: permission denied (cannot read it)")


def translate_args(argv: list[str]) -> list[str]:
    import torch

    argv = [a.replace("--local-rank", "--local_rank", 1) if a.startswith("--local-rank") else a for a in argv]
    if "LOCAL_RANK" in os.environ and _value(argv, "--local_rank") is None:
        argv += ["--local_rank", os.environ["LOCAL_RANK"]]
    if _value(argv, "--device") is None:
        argv += ["--device", "cuda" if torch.cuda.is_available() else "cpu"]
    if _value(argv, "-d", "--downstream") is None and _value(argv, "-e", "--past_exp") is None and "-a" not in argv:
        raise UserError("-d/--downstream is required (e.g. -d emotion_distilled)")
    return argv


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if "-h" not in argv and "--help" not in argv:  # help needs none of the checks: s3prl prints it
            check_overrides(argv)
            check_paths(argv)
            argv = translate_args(argv)
        from s3prl import run_downstream

        sys.argv = ["run_downstream.py", *argv]
        run_downstream.main()
    except UserError as e:
        print(f"s3prl-dd: error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except OSError as e:
        from .errors import disk_full_message

        if disk_full_message(e) is None:
            raise
        print(f"s3prl-dd: error: {disk_full_message(e)}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
