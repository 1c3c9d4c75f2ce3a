"""A pipeline with a failed cell still writes its report, then exits 1 with one line."""
import pytest

from test_pipeline import write_cfg

from s3prl_dd.cli import main
from s3prl_dd.pipeline import run as run_mod


def test_failed_cell_exits_1_with_the_report_written(tmp_path, monkeypatch, capsys):
    real_run_cell = run_mod.run_cell

    def failing(cell, ctx):
        if cell["source"] == "random":
            raise RuntimeError("boom")
        return real_run_cell(cell, ctx)

    monkeypatch.setattr(run_mod, "run_cell", failing)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["pipeline", "-c", str(write_cfg(tmp_path)), "--out", str(out)])
    assert e.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("s3prl-dd:")]
    assert err == [f"s3prl-dd: 1 cell(s) failed (see {out / 'cells'}/*.error; a rerun retries them)"]
    assert (out / "report.md").is_file()
    [error] = (out / "cells").glob("*.error")
    assert "boom" in error.read_text()
    monkeypatch.setattr(run_mod, "run_cell", real_run_cell)
    main(["pipeline", "-c", str(write_cfg(tmp_path)), "--out", str(out)])  # the rerun retries it: rc 0
    assert not list((out / "cells").glob("*.error"))
