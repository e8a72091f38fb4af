"""The SLURM batch file (scripts/slurm/train.sbatch), run with stand-in `scontrol`, `srun` and
`make` on PATH: it sets the environment up once, then starts one `make train` per node, with
that node's rank and the first node of the allocation as the main address."""

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO

SBATCH = REPO / "scripts" / "slurm" / "train.sbatch"

FAKES = {
    # scontrol show hostnames <nodelist>: one host per line (the stand-in ignores the list's syntax).
    # The pause lets the reader close the pipe before the second host, as it may when a long
    # list outgrows the pipe: a reader that stops at the first line then kills scontrol (SIGPIPE).
    "scontrol": 'echo "scontrol $*" >> "$CALLS"; echo gpu-07; sleep 0.5; echo gpu-12',
    # srun: the command once per node, as SLURM does with --ntasks-per-node=1
    "srun": 'options=(); while [[ $1 == --* ]]; do options+=("$1"); shift; done\n'
    'echo "srun ${options[*]} $1" >> "$CALLS"\n'
    'for node in 0 1; do SLURM_NODEID=$node SLURM_PROCID=$node "$@"; done',
    "make": 'echo "$PWD: make $*" >> "$CALLS"',
}


def fake_slurm(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls.txt"),
        "SLURM_JOB_NODELIST": "gpu-[07,12]",
        "SLURM_NNODES": "2",
        "SLURM_SUBMIT_DIR": str(REPO),
    }


def test_the_batch_file_starts_one_make_train_per_node_with_its_rank(tmp_path):
    env = {**fake_slurm(tmp_path), "RECIPE": "llama2-dolly-full", "GPUS": "4"}
    env.pop("MAIN_PORT", None)
    done = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls.txt").read_text().splitlines() == [
        "scontrol show hostnames gpu-[07,12]",
        f"{REPO}: make env-train model",
        "srun --kill-on-bad-exit=1 bash",
        f"{REPO}: make train RECIPE=llama2-dolly-full GPUS=4 MACHINES=2 MACHINE_RANK=0 MAIN_IP=gpu-07 MAIN_PORT=29500",
        f"{REPO}: make train RECIPE=llama2-dolly-full GPUS=4 MACHINES=2 MACHINE_RANK=1 MAIN_IP=gpu-07 MAIN_PORT=29500",
    ]


def test_the_batch_file_asks_for_one_task_per_node():
    header = {
        line.split()[1].split("=")[0]: line.split("=", 1)[1]
        for line in SBATCH.read_text().splitlines()
        if line.startswith("#SBATCH --")
    }
    assert header["--ntasks-per-node"] == "1" and header["--nodes"] == "2"
