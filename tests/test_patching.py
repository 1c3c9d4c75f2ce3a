"""``s3prl-dd patch``: status, apply and revert on a copy of s3prl's run_downstream.py."""
import shutil
from pathlib import Path

import s3prl

from s3prl_dd.patching import apply_patches, status

NAME = "0001-run_downstream-device-and-torchrun.patch"


def test_apply_and_revert_on_a_copy(tmp_path):
    src = Path(s3prl.__file__).resolve().parent / "run_downstream.py"
    (tmp_path / "s3prl").mkdir()
    target = tmp_path / "s3prl" / "run_downstream.py"
    shutil.copy(src, target)
    if "'--local-rank'" in target.read_text():  # the installed copy is already patched: start clean
        apply_patches(tmp_path, revert=True)
    assert status(tmp_path)[NAME] == "not applied"
    assert apply_patches(tmp_path)[NAME] == "applied"
    assert "'--local-rank'" in target.read_text()
    assert apply_patches(tmp_path)[NAME] == "applied"  # idempotent
    assert apply_patches(tmp_path, revert=True)[NAME] == "not applied"
    assert "'--local-rank'" not in target.read_text()
