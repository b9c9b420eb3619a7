"""Data-parallel training: torchrun with 2 gloo processes on CPU, identical weights, single-process resume."""
import json
import re
import subprocess
import sys

import pytest
import torch
from test_training import _train_cmd

from lwgen.checkpoint import load_checkpoint, module_state
from lwgen.cli import main
from lwgen.training.distributed import Dist, backend_for, from_env, rank_batch, state_digest


def test_rank_slices_partition_the_single_process_draw():
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    whole = torch.multinomial(weights, 12, replacement=True, generator=torch.Generator().manual_seed(7))
    parts = [rank_batch(weights, 4, Dist(rank, 3, rank), torch.Generator().manual_seed(7)) for rank in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    single = torch.multinomial(weights, 4, replacement=True, generator=torch.Generator().manual_seed(7))
    assert torch.equal(rank_batch(weights, 4, Dist(), torch.Generator().manual_seed(7)), single)


def test_environment_and_backend():
    assert from_env({}) == Dist(0, 1, 0) and not from_env({}).enabled
    env = from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert env == Dist(3, 4, 1) and env.enabled and not env.is_main
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        from_env({"WORLD_SIZE": "two"})
    assert backend_for("cpu") == "gloo" and backend_for("cuda:0") == "nccl"


def test_torchrun_two_processes_then_single_process_resume(shapes_dir, tmp_path, capsys):
    out = tmp_path / "ddp"
    cmd = _train_cmd(shapes_dir, out, 4, "--batch", "4")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lwgen"]
    run = subprocess.run(torchrun + cmd[3:], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 processes (torchrun): 4 images per process and step, effective batch 8" in run.stdout
    found = re.search(r"weights identical on all 2 processes \(sha256 ([0-9a-f]{16})\)", run.stdout)
    assert found, run.stdout + run.stderr
    config, tensors = load_checkpoint(out)
    assert state_digest(module_state(tensors, "model")) == found.group(1)  # rank 0 saved what both ranks hold
    assert config["progress"]["processes"] == 2 and config["progress"]["images_seen"] == 4 * 8
    assert run.stdout.count("saved ") == 1  # only rank 0 reports and writes
    assert len(list((out / "tb").iterdir())) == 1

    assert main(_train_cmd(shapes_dir, out, 6, "--batch", "4", "--resume")[3:]) == 0  # one process, in-process
    assert "resumed from" in capsys.readouterr().out
    progress = json.loads((out / "config.json").read_text())["progress"]
    assert progress["step"] == 6 and progress["images_seen"] == 4 * 8 + 2 * 4 and progress["processes"] == 1
