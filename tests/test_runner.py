"""s3prl's runner with the plugin: train, kill + auto-resume, evaluate, and input errors."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "downstream_configs" / "emotion_distilled.yaml"
FAST = "config.runner.eval_step=4,,config.runner.save_step=4,,config.runner.log_step=2,,config.runner.gradient_accumulate_steps=1"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from s3prl_dd.corpus.builtin import make_builtin_corpus

    out = tmp_path_factory.mktemp("corpus")
    make_builtin_corpus(out, n_per_speaker=4, seed=0)
    return out


def run(args, cwd, entry=("-m", "s3prl_dd.run_downstream")):
    return subprocess.run([sys.executable, *entry, *args], cwd=cwd, capture_output=True, text=True, timeout=240)


def test_train_resume_evaluate(corpus, tmp_path):
    base = ["-u", "fbank_no_cmvn", "-d", "emotion_distilled", "-c", str(CONFIG), "-p", str(tmp_path / "exp")]
    over = f"config.downstream_expert.datarc.corpus='{corpus}',,{FAST}"
    r = run(["-m", "train", *base, "-o", f"{over},,config.runner.total_steps=8"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "exp" / "states-8.ckpt").is_file() and (tmp_path / "exp" / "dev-best.ckpt").is_file()
    assert (tmp_path / "exp" / "test_fold1_results.json").is_file()

    # auto-resume continues from step 8 (a killed run resumes the same way: see test_compat's atomic write)
    r = run(["-m", "train", *base, "-a", "-o", "config.runner.total_steps=12"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Resume from" in r.stdout + r.stderr
    assert (tmp_path / "exp" / "states-12.ckpt").is_file()

    r = run(["-m", "evaluate", "-e", str(tmp_path / "exp" / "dev-best.ckpt")], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test acc:" in r.stdout and "uar:" in r.stdout

    # the runner's own SUPERB ER checkpoints serve as L_SML's teacher pool, as they are
    import torch

    from s3prl_dd.er.pool import TeacherPool

    pool = TeacherPool.load(tmp_path / "exp", expect_dim=240)
    ckpts = sorted((tmp_path / "exp").glob("*.ckpt"))
    assert len(pool) == len(ckpts) and pool.info["fold"] == "fold1" and pool.info["upstream"] == "fbank_no_cmvn"
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)["Downstream"]
    assert torch.equal(pool[0].model.projector.weight, state["projector.weight"])
    x = torch.randn(3, 240)
    want = state["model.post_net.linear.weight"] @ (state["projector.weight"] @ x.T + state["projector.bias"][:, None])
    torch.testing.assert_close(pool[0].forward_pooled(x), (want + state["model.post_net.linear.bias"][:, None]).T)
    assert TeacherPool.load(",".join(map(str, ckpts[:2]))).info["checkpoints"][1]["path"] == str(ckpts[1])


def test_killed_mid_run_then_auto_resume(corpus, tmp_path):
    """SIGKILL while training (after a checkpoint exists), then ``-a`` continues from it."""
    import time

    exp = tmp_path / "exp"
    args = [sys.executable, "-m", "s3prl_dd.run_downstream", "-m", "train", "-u", "fbank_no_cmvn", "-d", "emotion_distilled",
            "-c", str(CONFIG), "-p", str(exp), "-o", f"config.downstream_expert.datarc.corpus='{corpus}',,{FAST},,"
            "config.runner.total_steps=100000,,config.runner.eval_dataloaders=['dev']"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while not list(exp.glob("states-*.ckpt")) and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        proc.kill()
        proc.wait()
    steps = sorted(int(p.stem.split("-")[1]) for p in exp.glob("states-*.ckpt"))
    assert steps, "no checkpoint was written before the kill"
    target = steps[-1] + 4
    r = run(["-m", "train", "-u", "fbank_no_cmvn", "-d", "emotion_distilled", "-p", str(exp), "-a",
             "-o", f"config.runner.total_steps={target}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"states-{steps[-1]}.ckpt" in r.stdout + r.stderr  # resumed from the newest intact checkpoint
    assert (exp / f"states-{target}.ckpt").is_file()


def test_unmodified_s3prl_runner_finds_the_plugin(corpus, tmp_path):
    """What the installed s3prl_dd.pth does at interpreter start: import s3prl_dd, then s3prl's
    own run_downstream.py, untouched."""
    code = "import s3prl_dd, runpy; runpy.run_module('s3prl.run_downstream', run_name='__main__')"
    args = ["-m", "train", "-u", "fbank_no_cmvn", "-d", "emotion_distilled", "-c", str(CONFIG), "--device", "cpu",
            "-p", str(tmp_path / "exp"),
            "-o", f"config.downstream_expert.datarc.corpus='{corpus}',,{FAST},,config.runner.total_steps=4"]
    r = run(args, tmp_path, entry=("-c", code))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "exp" / "states-4.ckpt").is_file()


def test_install_ships_the_import_hook(tmp_path):
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "s3prl_dd.pth").read_text().strip() == "import s3prl_dd"
    assert list((tmp_path / "s3prl_dd" / "patches").glob("*.patch"))


@pytest.mark.parametrize("override, message", [
    ("config.downstream_expert.datarc.corpus='/no/such/corpus'", "/no/such/corpus"),
    ("config.downstream_expert.datarc.no_such_key=1", "no_such_key"),
    ("config.downstream_expert.datarc.test_fold='fold9'", "fold9"),
])
def test_bad_input_is_one_line(corpus, tmp_path, override, message):
    base = ["-m", "train", "-u", "fbank_no_cmvn", "-d", "emotion_distilled", "-c", str(CONFIG), "-p", str(tmp_path / "x")]
    if "corpus=" not in override:
        override = f"config.downstream_expert.datarc.corpus='{corpus}',,{override}"
    r = run([*base, "-o", override], tmp_path)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("s3prl-dd: error:") and message in last and "Traceback" not in r.stderr
