"""``s3prl-dd patch``: apply ``patches/*.patch`` to the installed s3prl, idempotently."""
from __future__ import annotations

import subprocess
from pathlib import Path

from .utils import UserError

PATCH_DIR = Path(__file__).resolve().parent.parent / "patches"


def _packaged_patches() -> list[Path]:
    local = Path(__file__).resolve().parent / "patches"
    for d in (PATCH_DIR, local):
        if d.is_dir():
            return sorted(d.glob("*.patch"))
    raise UserError("no patches directory found next to s3prl_dd")


def _patch(args: list[str], patch_file: Path, root: Path) -> bool:
    # --forward, not --batch: --batch silently turns a -R dry run into a forward one, so an
    # unapplied patch would read as applied.
    cmd = ["patch", "-p1", "--forward", "--silent", "-d", str(root), *args, "-i", str(patch_file)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def site_root() -> Path:
    import s3prl

    return Path(s3prl.__file__).resolve().parent.parent


def status(root: Path | None = None) -> dict[str, str]:
    root = root or site_root()
    out = {}
    for p in _packaged_patches():
        if _patch(["--dry-run", "-R"], p, root):
            out[p.name] = "applied"
        elif _patch(["--dry-run"], p, root):
            out[p.name] = "not applied"
        else:
            out[p.name] = "does not apply (different s3prl version?)"
    return out


def apply_patches(root: Path | None = None, revert: bool = False) -> dict[str, str]:
    root = root or site_root()
    for name, state in status(root).items():
        p = next(q for q in _packaged_patches() if q.name == name)
        if state.startswith("does not"):
            raise UserError(f"{name} does not apply to {root} (s3prl 0.4.18 expected)")
        if revert and state == "applied":
            _patch(["-R"], p, root)
        elif not revert and state == "not applied":
            _patch([], p, root)
    return status(root)
