"""A pipeline with a failed cell still writes its report, then exits 1 with one line."""
import pytest

from test_pipeline import write_cfg

from s3prl_dd.cli import main
from s3prl_dd.pipeline import run as run_mod
from s3prl_dd.pipeline.config import load_pipeline_config
from s3prl_dd.utils import save_yaml


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


def test_rerun_with_another_upstream_is_refused_before_any_work(tmp_path, capsys):
    cfg, out = write_cfg(tmp_path), tmp_path / "run"
    (out / "store").mkdir(parents=True)
    save_yaml(load_pipeline_config(cfg), out / "config.yaml")  # a run made with fbank_no_cmvn (the default)
    with pytest.raises(SystemExit) as e:
        main(["pipeline", "-c", str(cfg), "--out", str(out), "-o", "upstream=fbank"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert "was made with upstream 'fbank_no_cmvn' (now 'fbank')" in err[0]
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.yaml", "store"]  # nothing built
