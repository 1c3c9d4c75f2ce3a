"""Small helpers shared by every stage: config handling, atomic writes, seeding."""
from __future__ import annotations

import ast
import copy
import errno
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml


from .errors import UserError  # noqa: F401  (re-exported: most modules import it from here)


def exists(x) -> bool:
    return x is not None


def default(x, d):
    return x if exists(x) else d


def pick_device(device=None):
    """``device`` as a torch.device; None: cuda when available, else cpu."""
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


# ---------------------------------------------------------------------------- seeding
def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- atomic writes
def _atomic_write(path: str | os.PathLike, write_fn, mode: str = "wb") -> Path:
    """Write through a temp file in the same directory and rename it into place, so a crash
    mid-write leaves either the old file or none, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) and not e.filename:
            raise OSError(e.errno, e.strerror, str(path)) from None  # say which file did not fit
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    return _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return _atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", path)


def append_jsonl(record: dict, path: str | os.PathLike) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------- configs
def load_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"config {path}: YAML syntax error{where}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"config {path} is not a text (YAML) file") from None
    if not isinstance(cfg, dict):
        raise UserError(f"config {path} must hold a mapping at the top level")
    return cfg


def _parse_value(text: str):
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        if (text[:1], text[-1:]) in (("[", "]"), ("{", "}")):
            # -o gan.variants=[baseline, div_sml] or distill={gan: {truncation: 0.5}}: unquoted
            # names, as in the YAML configs
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError:
                pass
        return text


def merge_config(defaults: dict, over: dict | None, what: str | None = None) -> dict:
    """``defaults`` updated by ``over`` (nested mappings merged key by key), all copied. With
    ``what`` (a name for the message), a top-level key that ``defaults`` lacks is an error: a
    typo must not run the defaults silently."""
    out = copy.deepcopy(defaults)
    for k, v in (over or {}).items():
        if what is not None and k not in out:
            raise UserError(f"unknown {what} option '{k}' (known: {', '.join(sorted(out))})")
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def apply_overrides(config: dict, overrides: str | Iterable[str] | None, strict: bool = True) -> dict:
    """s3prl-style overrides: ``config.a.b=1,,config.c='x'`` (the ``config.`` prefix optional).

    With ``strict`` an unknown key is an error naming the key, because a typo silently adding
    a new key is the classic way to run the wrong experiment."""
    config = copy.deepcopy(config)
    if overrides is None:
        return config
    if isinstance(overrides, str):
        overrides = [o for o in overrides.split(",,")]
    for option in overrides:
        option = option.strip()
        if not option:
            continue
        if "=" not in option:
            raise UserError(f"override '{option}' is not of the form key=value")
        key, value = option.split("=", 1)
        fields = key.strip().split(".")
        if fields[0] == "config":
            fields = fields[1:]
        node = config
        for i, name in enumerate(fields):
            last = i == len(fields) - 1
            if strict and (not isinstance(node, dict) or name not in node):
                where = ".".join(fields[: i + 1])
                raise UserError(f"config key '{where}' does not exist (override '{option}')")
            if last:
                node[name] = _parse_value(value)
            else:
                node = node.setdefault(name, {})
    return config


def config_path(relative: str | os.PathLike) -> Path:
    """A file of ``downstream_configs/``: as given if it exists (relative to the working
    directory), else the checkout's ``downstream_configs/`` beside the package, else the copy
    shipped inside an installed package (setup.py puts one there)."""
    rel = Path(relative)
    if rel.exists():
        return rel.resolve()  # absolute: callers hand it to subprocesses with other cwds
    tail = rel.parts[1:] if rel.parts and rel.parts[0] == "downstream_configs" else rel.parts
    here = Path(__file__).resolve().parent
    for base in (here.parent / "downstream_configs", here / "downstream_configs"):
        if base.joinpath(*tail).exists():
            return base.joinpath(*tail)
    raise UserError(f"config not found: {relative}")


def check_output_dir(path: str | os.PathLike | None, what: str = "output") -> None:
    """Refuse, before any work, an output directory that is a file or lies under one (else the
    command fails at its first or, worse, its last write with a traceback)."""
    if path is None:
        return
    p = Path(path).absolute()
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {path} is a file, not a directory")
    if p.is_dir():
        return
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{what} {path} lies under {parent}, which is a file")
            if not os.access(parent, os.W_OK):
                raise UserError(f"{what} {path}: {parent} is not writable")
            break


def save_yaml(obj: dict, path: str | os.PathLike) -> Path:
    return atomic_write_text(yaml.safe_dump(obj, sort_keys=False), path)


def new_run_dir(root: str | os.PathLike, name: str) -> Path:
    """Run directories never overwrite: ``root/00003-name``, numbered like stylegan2-ada's."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ids = [int(p.name.split("-", 1)[0]) for p in root.iterdir() if p.name.split("-", 1)[0].isdigit()]
    run = root / f"{max(ids, default=-1) + 1:05d}-{name}"
    run.mkdir()
    return run
