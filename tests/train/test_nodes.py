"""Two machines' worth of ranks on one CPU host, through `make train MACHINES=2
MACHINE_RANK=0|1 MAIN_IP=127.0.0.1 MAIN_PORT=P`: each rank its own launch, one run directory
they share (as a shared filesystem does on a cluster), gloo between them, the tiny random
Llama. Both ranks train together (world size 2 inside the trainer, both on record), machine 0
alone writes, and the losses are those of 2 processes on one machine with the same seed.
A rank that hangs stops the other within the recipe's ddp_timeout, with an error; after it is
killed, launching both machines again resumes from the last checkpoint."""

import contextlib
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml

from eval.serve import free_port
from tests.conftest import DEMO_DATA, REPO
from training.run_summary import newest_trainer_state
from training.runner import checkpoint_is_whole

STEPS = 10
TIMEOUT = 30  # the runs' ddp_timeout, seconds
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per rank in every layout: the same sums


def make_train(model: Path, run_dir: Path, **launch) -> list[str]:
    overrides = f"base_model={model} max_steps={STEPS} save_steps=2 logging_steps=1 ddp_timeout={TIMEOUT}"
    return [
        "make", "-s", "-C", str(REPO), "train", "RECIPE=smollm2-dialogsum", f"OVERRIDES={overrides}",
        f"DATA_DIR={DEMO_DATA}", f"RUN_DIR={run_dir}", *(f"{key}={value}" for key, value in launch.items()),
    ]  # fmt: skip


def start_machines(model: Path, run_dir: Path, logs: list[Path]) -> list[subprocess.Popen]:
    """Machine 0 and machine 1, each launched as `make train` is on its own node."""
    port = free_port()
    return [
        subprocess.Popen(
            make_train(model, run_dir, MACHINES=2, MACHINE_RANK=rank, MAIN_IP="127.0.0.1", MAIN_PORT=port),
            env=ENV,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for rank, log in enumerate(logs)
    ]


def run_machines(model: Path, run_dir: Path, logs: list[Path]) -> None:
    """Both machines to the end; each must succeed."""
    procs = start_machines(model, run_dir, logs)
    try:
        for proc, log in zip(procs, logs, strict=True):
            assert proc.wait(timeout=600) == 0, tail(log)
    finally:
        stop_all(procs)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Kill what a failed test left running: each launch and everything it started."""
    for proc in procs:
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def trainer_of(launch: subprocess.Popen) -> psutil.Process:
    """The training process torchrun started for a machine (a child of `accelerate launch`)."""
    launcher = next(
        p
        for p in psutil.Process(launch.pid).children(recursive=True)
        if "accelerate.commands.launch" in p.cmdline()
    )
    return next(p for p in launcher.children() if "training.axolotl_train" in p.cmdline())


def losses(run_dir: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in newest_trainer_state(run_dir)["log_history"] if "loss" in h}


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory, tiny_llama) -> Path:
    """The reference: 2 processes on one machine (`make train GPUS=2`), one launch."""
    run_dir = tmp_path_factory.mktemp("one-machine") / "run"
    done = subprocess.run(make_train(tiny_llama, run_dir, GPUS=2), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = yaml.safe_load((run_dir / "run.yml").read_text())["training_summary"]
    assert summary["world_size"] == 2 and len(losses(run_dir)) == STEPS
    return run_dir


@pytest.mark.slow
def test_two_machines_train_as_one_run_of_two_processes(tmp_path, tiny_llama, one_machine):
    run_dir, logs = tmp_path / "run", [tmp_path / "machine-0.log", tmp_path / "machine-1.log"]
    run_machines(tiny_llama, run_dir, logs)
    machine0, machine1 = (log.read_text() for log in logs)

    record = yaml.safe_load((run_dir / "run.yml").read_text())
    assert record["launch"]["processes"] == 2 and record["launch"]["machines"] == 2
    summary = record["training_summary"]
    assert summary["world_size"] == 2  # as the trainer saw it
    assert [(r["rank"], r["device"]) for r in summary["ranks"]] == [(0, "cpu"), (1, "cpu")]
    assert not [r for r in summary["ranks"] if "peak_gib" in r] and "peak_gib_max" not in summary  # no GPU
    assert losses(run_dir) == losses(one_machine)  # bit for bit, every step

    # machine 0 alone writes: machine 1's trainer saves nothing, its runner no record
    assert "Saving model checkpoint" not in machine1 and "Saving trained model" not in machine1
    assert "machine 1: training finished; machine 0 writes the run's record" in machine1
    assert "Saving trained model" in machine0 and (run_dir / "TRAINED").exists()
    assert sorted(int(p.name.split("-")[1]) for p in (run_dir / "adapter").glob("checkpoint-*")) == list(
        range(2, STEPS + 1, 2)
    )


@pytest.mark.slow
def test_a_hung_rank_stops_the_other_and_both_machines_resume(tmp_path, tiny_llama, one_machine):
    run_dir = tmp_path / "run"
    logs = [tmp_path / "machine-0.log", tmp_path / "machine-1.log"]
    procs = start_machines(tiny_llama, run_dir, logs)
    try:
        deadline = time.time() + 300
        while not (run_dir / "adapter" / "checkpoint-2" / "trainer_state.json").exists():
            assert all(p.poll() is None for p in procs) and time.time() < deadline, tail(logs[0])
            time.sleep(0.1)
        hung = trainer_of(procs[1])
        hung.suspend()  # a rank that hangs keeps its connections open: only the timeout ends the wait
        since = time.time()
        assert procs[0].wait(timeout=TIMEOUT + 90) != 0, tail(logs[0])
        waited = time.time() - since
        machine0 = logs[0].read_text()
        assert "Timed out waiting" in machine0  # gloo, at the recipe's ddp_timeout
        assert "training failed on machine 0 of 2 (exit 1)" in machine0
        hung.kill()
        assert procs[1].wait(timeout=120) != 0
        assert "training failed on machine 1 of 2" in logs[1].read_text()
    finally:
        stop_all(procs)
    assert waited < TIMEOUT + 90  # bounded: the timeout, plus the launchers stopping
    assert not (run_dir / "TRAINED").exists()
    whole = max(
        int(p.name.split("-")[1])
        for p in (run_dir / "adapter").glob("checkpoint-*")
        if checkpoint_is_whole(p)
    )
    assert whole < STEPS

    again = [tmp_path / "machine-0-again.log", tmp_path / "machine-1-again.log"]
    run_machines(tiny_llama, run_dir, again)
    assert f"checkpoint-{whole}" in again[0].read_text()  # Axolotl names the checkpoint it resumed
    assert losses(run_dir) == losses(one_machine)  # the steps after the resume too, bit for bit
