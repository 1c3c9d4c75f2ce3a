"""Everything that makes s3prl 0.4.18 run on today's torch / torchaudio / huggingface_hub.

One function per incompatibility; each names the s3prl code it covers and has a test in
``tests/test_compat.py`` that fails without it. All fixes are runtime shims installed with
post-import hooks: nothing in site-packages is edited. ``apply()`` is idempotent and cheap
(it imports nothing heavy itself), so the ``.pth`` import hook can call it in every process.
What cannot be shimmed lives in ``patches/`` (see ``s3prl-dd patch``)."""
from __future__ import annotations

import os

from .hooks import alias_package, when_imported
from . import audio_shims

_APPLIED = False


def fix_torchaudio_extension(utils_module) -> None:
    """torchaudio 2.11 wheels link CUDA (libc10_cuda.so); beside a CPU torch,
    ``torchaudio/_extension/__init__.py`` raises while importing, so every ``import torchaudio``
    in s3prl (hub.py, runner.py, upstream/baseline/extracter.py) fails. The pure-Python parts
    s3prl uses (compliance.kaldi, transforms, functional) need no extension: report it absent."""
    original = utils_module._load_lib

    def _load_lib(lib: str) -> bool:
        try:
            return original(lib)
        except OSError:
            return False

    utils_module._load_lib = _load_lib


def fix_torchaudio_api(torchaudio) -> None:
    """``torchaudio.set_audio_backend`` (s3prl/run_downstream.py main(),
    s3prl/dataio/dataset/load_audio.py at import), ``torchaudio.info`` (s3prl/util/audio_info.py),
    ``torchaudio.sox_effects`` (upstream/mos_prediction/expert.py at import, sv_voxceleb1) are gone
    in torchaudio 2.9+, and ``load``/``save`` now need TorchCodec: served by soundfile instead."""
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = audio_shims.set_audio_backend
    if not hasattr(torchaudio, "info"):
        torchaudio.info = audio_shims.info
    if not audio_shims.has_torchcodec():
        torchaudio.load = audio_shims.load
        torchaudio.save = audio_shims.save
    audio_shims.install_sox_effects(torchaudio)


def fix_librosa_find_files() -> None:
    """``librosa.util.find_files`` is s3prl's only use of librosa on our paths
    (downstream/emotion/IEMOCAP_preprocess.py, downstream/voxceleb1/dataset.py); librosa pulls
    numba/llvmlite, so when it is absent a module with just that function is provided."""
    import importlib.util

    if importlib.util.find_spec("librosa") is None:
        audio_shims.install_librosa_find_files()


def fix_huggingface_hub(hf) -> None:
    """s3prl/run_downstream.py and downstream/runner.py import ``HfFolder`` and ``Repository``
    at module level; huggingface_hub 1.0 removed both. They are only used by ``--hub huggingface``
    and ``--push_to_hf_hub``: stand-ins that raise a clear error if those paths are taken."""
    for name in ("HfFolder", "Repository"):
        if not hasattr(hf, name):
            setattr(hf, name, audio_shims.removed_hf_api(name))


def fix_weights_only_load() -> None:
    """torch >= 2.6 loads with ``weights_only=True``; s3prl's runner checkpoints hold
    ``'Args': argparse.Namespace`` (run_downstream.py ``-e``/``-a`` resume, runner.py
    ``Runner.__init__`` init_ckpt), so resuming fails. Allow exactly that class."""
    import argparse

    import torch.serialization

    torch.serialization.add_safe_globals([argparse.Namespace])


def fix_voxceleb1_cache(dataset_module) -> None:
    """downstream/voxceleb1/dataset.py caches its file lists in ``CACHE_PATH`` inside
    site-packages, keyed only by split: a second corpus silently reuses the first one's list.
    Key the cache by corpus root in the user's cache dir instead."""
    cls = dataset_module.SpeakerClassifiDataset
    original_init = cls.__init__

    def __init__(self, mode, file_path, meta_data, max_timestep=None):
        import hashlib

        key = hashlib.sha1(f"{os.path.abspath(file_path)}|{os.path.abspath(meta_data)}".encode()).hexdigest()[:12]
        dataset_module.CACHE_PATH = os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "s3prl_dd", "voxceleb1", key, ""
        )
        original_init(self, mode, file_path, meta_data, max_timestep)

    cls.__init__ = __init__


def fix_runner_checkpoint_writes(runner_module) -> None:
    """downstream/runner.py ``Runner.train`` writes ``states-*.ckpt`` with ``torch.save`` in
    place, and rotates (``max_keep``) by deleting the old checkpoint *before* writing the new
    one: a run killed mid-write leaves a truncated file that ``-a`` (auto-resume) then picks as
    the newest checkpoint, or no checkpoint at all. Route the runner's saves through a temp file
    + rename, and hold its deletions of ``states-*.ckpt`` until the next one is on disk."""
    import fnmatch
    import types

    import torch

    from ..utils import atomic_torch_save

    pending: list[str] = []

    def remove(path, *a, **k):
        if fnmatch.fnmatch(os.path.basename(path), "states-*.ckpt"):
            pending.append(os.fspath(path))
        else:
            os.remove(path, *a, **k)

    def save(obj, f, *a, **k):
        if not isinstance(f, (str, os.PathLike)):
            return torch.save(obj, f, *a, **k)
        atomic_torch_save(obj, f)
        if fnmatch.fnmatch(os.path.basename(f), "states-*.ckpt"):
            for old in [p for p in pending if os.path.abspath(p) != os.path.abspath(f)]:
                if os.path.exists(old):
                    os.remove(old)
            pending.clear()

    proxy = types.ModuleType("torch")
    proxy.__dict__.update({k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    proxy.save = save
    os_proxy = types.ModuleType("os")
    os_proxy.__dict__.update({k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    os_proxy.remove = remove
    runner_module.torch, runner_module.os = proxy, os_proxy


def install_user_error_hook() -> None:
    """Input errors raised by our experts inside s3prl's own runner script print one line
    (what and where) instead of a traceback through s3prl."""
    import sys

    from ..errors import UserError

    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, UserError):
            print(f"s3prl-dd: error: {exc}", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    sys.excepthook = hook


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    when_imported("torchaudio._extension.utils", fix_torchaudio_extension)
    when_imported("torchaudio", fix_torchaudio_api)
    when_imported("huggingface_hub", fix_huggingface_hub)
    when_imported("s3prl.downstream.voxceleb1.dataset", fix_voxceleb1_cache)
    when_imported("torch", lambda _: fix_weights_only_load())
    when_imported("s3prl.downstream.runner", fix_runner_checkpoint_writes)
    install_user_error_hook()
    fix_librosa_find_files()
    # s3prl's runner resolves ``-d NAME`` through s3prl.downstream and ``-u NAME`` via s3prl.hub.
    from .. import registry

    for name, package in registry.DOWNSTREAMS.items():
        alias_package(f"s3prl.downstream.{name}", package)
    when_imported("s3prl.hub", registry.register_upstreams)
