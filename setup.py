"""s3prl-dd: dataset distillation for speech emotion recognition, as an s3prl plugin.

Installing puts ``s3prl_dd.pth`` into site-packages: it imports ``s3prl_dd`` at interpreter
start, which only registers import hooks (no torch import), so that s3prl's unmodified
``run_downstream.py`` finds ``-d emotion_distilled`` and the plugin's upstreams."""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PTH = "s3prl_dd.pth"


class build_py_with_pth(build_py):
    """Also ships the import-hook .pth, patches/ (for `s3prl-dd patch`) and downstream_configs/."""

    def run(self):
        super().run()
        (Path(self.build_lib) / PTH).write_text("import s3prl_dd\n")
        patches = Path(self.build_lib) / "s3prl_dd" / "patches"
        patches.mkdir(parents=True, exist_ok=True)
        for p in Path(__file__).parent.joinpath("patches").glob("*.patch"):
            (patches / p.name).write_text(p.read_text())
        # configs the code falls back to when run from outside a checkout (utils.config_path)
        src = Path(__file__).parent / "downstream_configs"
        for p in src.rglob("*.yaml"):
            target = Path(self.build_lib) / "s3prl_dd" / "downstream_configs" / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(p.read_text())


setup(
    name="s3prl-dd",
    version="0.1.0",
    description="Distil a speech emotion dataset into a conditional GAN, inside s3prl/SUPERB",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["s3prl_dd", "s3prl_dd.*"]),
    cmdclass={"build_py": build_py_with_pth},
    # torch is not pinned: CPU users install the CPU build first (README), GPU users keep
    # their CUDA build. s3prl 0.4.18 is pinned: the compat layer targets exactly that release.
    install_requires=[
        "torch>=2.1",
        "torchaudio>=2.1",
        "s3prl==0.4.18",
        "numpy",
        "scipy",
        "pyyaml",
        "soundfile",
        "tqdm",
        "tensorboard",
        "tensorboardX",
        "huggingface_hub",
    ],
    # "pretrained": the runtimes of -u ge2e / -u wakehubert. The packages holding their weights
    # (resemblyzer==0.1.4, ovos-ww-plugin-wakeforge==0.3.0) cannot be listed: an extra cannot say
    # --no-deps, and their dependencies pull a second torch and C builds; scripts/setup.sh
    # installs them with --no-deps.
    extras_require={"report": ["matplotlib"], "test": ["pytest"],
                    "pretrained": ["onnxruntime>=1.16", "onnx>=1.15"]},
    entry_points={"console_scripts": ["s3prl-dd=s3prl_dd.cli:main"]},
)
