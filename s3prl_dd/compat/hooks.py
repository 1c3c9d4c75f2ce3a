"""Post-import hooks: run a function on a module right after it executes, before anyone uses it.

Shims for s3prl have to act *inside* an import (torchaudio fails while importing itself) or
right after one (names s3prl binds at import time), without editing site-packages."""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Callable

_HOOKS: dict[str, list[Callable]] = {}


class _HookedLoader(importlib.abc.Loader):
    def __init__(self, loader, hooks):
        self._loader = loader
        self._hooks = hooks

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        for hook in self._hooks:
            hook(module)

    def __getattr__(self, name):  # resources, get_code, ... stay the original loader's
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        hooks = _HOOKS.get(fullname)
        if not hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _HookedLoader(spec.loader, hooks)
                return spec
        return None


_FINDER = _PostImportFinder()


def when_imported(name: str, hook: Callable) -> None:
    """Call ``hook(module)`` once ``name`` has executed; at once if it already has."""
    if name in sys.modules and getattr(sys.modules[name], "__spec__", None) is not None:
        hook(sys.modules[name])
        return
    _HOOKS.setdefault(name, [])
    if hook not in _HOOKS[name]:
        _HOOKS[name].append(hook)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Serves ``s3prl.downstream.<ours>`` and its submodules from ``s3prl_dd``'s own package, so
    s3prl's ``importlib.import_module(f"s3prl.downstream.{name}.expert")`` finds our experts."""

    def __init__(self):
        self.aliases: dict[str, str] = {}

    def find_spec(self, fullname, path, target=None):
        for prefix, target_pkg in self.aliases.items():
            if fullname == prefix or fullname.startswith(prefix + "."):
                real = target_pkg + fullname[len(prefix):]
                spec = importlib.util.find_spec(real)
                if spec is None:
                    return None
                return importlib.util.spec_from_loader(fullname, _AliasLoader(real), is_package=spec.submodule_search_locations is not None)
        return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, real: str):
        self.real = real

    def create_module(self, spec):
        module = importlib.import_module(self.real)
        self._identity = (module.__name__, module.__spec__, module.__loader__)
        return module

    def exec_module(self, module):
        # importlib stamped the alias's name and spec onto the real module; give its own back.
        module.__name__, module.__spec__, module.__loader__ = self._identity


_ALIASES = _AliasFinder()


def alias_package(alias: str, real: str) -> None:
    """Make ``import alias[.sub]`` return the module ``real[.sub]`` (the very same object)."""
    _ALIASES.aliases[alias] = real
    if _ALIASES not in sys.meta_path:
        sys.meta_path.insert(0, _ALIASES)
