"""One safe way to open a checkpoint given by the user, and one line when it is not ours.

Every ``.pt``/``.ckpt`` a user hands to a command goes through :func:`safe_load`:
``torch.load(weights_only=True)`` (no pickle code ever runs), with torch's multi-paragraph
"Weights only load failed ..." message (which even suggests ``weights_only=False``, i.e. running
the file's code) replaced by one line that says what the file is not and which files are
accepted. Callers then check the loaded object's format and call :func:`not_a` when it is some
other (safe) torch file.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import UserError

# what each kind of file is, for the "accepted: ..." part of the message
KINDS = {
    "generator": "an s3prl-dd generator export (generator.pt / best.pt of a distill run)",
    "gan_checkpoint": "an s3prl-dd GAN training checkpoint (ckpt-<step>.pt)",
    "er": "an s3prl-dd ER checkpoint (er-<step>.pt)",
    "runner": "an s3prl runner checkpoint (dev-best.ckpt / states-<step>.ckpt)",
    "distilled_set": "an s3prl-dd distilled set (set.pt of distill-set)",
}


NAMES = {"generator": "generator", "gan_checkpoint": "GAN training", "er": "ER", "runner": "s3prl runner",
         "distilled_set": "distilled-set"}


def accepted(kinds) -> str:
    return "; ".join(KINDS.get(k, k) for k in kinds)


def not_a(path, kinds, why: str = "") -> UserError:
    """The one-line error for ``path`` not being any of ``kinds`` (``why``: what it is instead)."""
    names = " or ".join(NAMES.get(k, k) for k in kinds)
    return UserError(f"{path} is not {_article(names)}{names} checkpoint{f' ({why})' if why else ''}; "
                     f"accepted: {accepted(kinds)}")


def _article(word: str) -> str:
    return "an " if word[:1].lower() in "aeiou" or word.startswith("s3prl") else "a "


def _why(path: Path, e: BaseException) -> str:
    """A short reason from torch's exception, never its advice to load unsafely."""
    import re

    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "an empty file"
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    if found:  # a real pickle that names code: what a malicious or foreign file does
        return f"it holds Python objects ({found.group(1)}) that a safe (weights-only) load refuses"
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        return "not a torch file"
    return "not a torch file, or a damaged or truncated one"


def safe_load(path, kinds, safe_globals=()):
    """``torch.load(path, weights_only=True)`` on CPU; a missing file, an unreadable one or one a
    safe load refuses -> one-line UserError naming ``path`` and the accepted ``kinds``.
    ``safe_globals``: classes a known format legitimately pickles (s3prl's argparse.Namespace)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found (expected {accepted(kinds)})")
    if not path.is_file():
        raise UserError(f"{path} is a directory, not a checkpoint file (expected {accepted(kinds)})")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: permission denied (cannot read it)")
    # only what is not allowed yet: leaving torch.serialization.safe_globals removes its classes
    # even when they were allowed before (compat allows argparse.Namespace for s3prl's runner)
    extra = [g for g in safe_globals if g not in torch.serialization.get_safe_globals()]
    try:
        with torch.serialization.safe_globals(extra) if extra else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001  (torch raises RuntimeError/UnpicklingError/EOFError/...)
        raise not_a(path, kinds, _why(path, e)) from None
