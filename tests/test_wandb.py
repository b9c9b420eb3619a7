"""Optional Weights & Biases logging: a clear error without the package, an offline run with it."""
import importlib.util
import os
import subprocess
import sys

import pytest
from test_training import _train_cmd

from lwgen.cli import main


def test_wandb_flag_without_the_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails as if it were not installed
    with pytest.raises(SystemExit) as e:
        main(["train", "diffusion", "--data", str(tmp_path / "no-data"), "--attributes", "a", "--out",
              str(tmp_path / "out"), "--steps", "1", "--wandb"])
    message = str(e.value)
    assert "pip install wandb" in message and "WANDB_MODE=offline" in message
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (it is optional)")
def test_offline_wandb_run(shapes_dir, tmp_path):
    out = tmp_path / "ck"
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    run = subprocess.run(_train_cmd(shapes_dir, out, 3, "--wandb", "--wandb-project", "lwgen-test"), env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert (out / "wandb_run_id.txt").read_text().strip() in runs[0].name
