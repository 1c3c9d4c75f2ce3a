"""Weights that ship inside package-index packages, read without importing those packages.

Resemblyzer's ``__init__`` imports webrtcvad and librosa, wakeforge's imports
ovos_plugin_manager: none of them is needed to run the networks, so we only locate the
installed package directory (``find_spec`` on a top-level name does not execute it)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..utils import UserError


def package_file(package: str, relpath: str, install: str) -> Path:
    """Path of ``relpath`` inside the installed ``package``; a one-line UserError naming the
    pip command (``install``) when the package or the file is missing."""
    hint = f"pip install {install} --no-deps"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the '{package}' package is not installed: {hint}")
    for location in spec.submodule_search_locations:
        path = Path(location) / relpath
        if path.is_file():
            return path
    raise UserError(f"'{package}' is installed but has no {relpath} (another version?): {hint}")
