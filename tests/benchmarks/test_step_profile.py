"""The step profile's sorting: kernels by name, matmuls into base and LoRA by the shapes of
the operator that launched them, idle as wall time with no kernel running."""

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import DeviceType

from benchmarks.step_profile import REPORT_ORDER, breakdown, busy_us, kernel_part, markdown
from tests.conftest import REPO

RANK = 16


def kernel(name, start, end):
    return SimpleNamespace(
        name=name, device_type=DeviceType.CUDA, time_range=SimpleNamespace(start=start, end=end)
    )


def op(name, shapes, launched, cpu_us=0.0):
    kernels = [SimpleNamespace(name=n, duration=d) for n, d in launched]
    return SimpleNamespace(
        name=name, device_type=DeviceType.CPU, kernels=kernels, input_shapes=shapes, cpu_time_total=cpu_us
    )


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("void kDequantizeBlockwise<__nv_bfloat16, 512, 64, 8, 2>(float*, ...)", "4-bit dequantization"),
        ("nvjet_tst_192x192_64x3_2x1_v_bz_coopB_TNN", "matmul"),
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matmul"),
        ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128>>", "attention"),
        ("fmha_cutlassF_bf16_aligned_64x128_rf_sm80", "attention"),
        ("void kOptimizer8bit2StateBlockwise<__nv_bfloat16, 2, 2048, 8>", "optimizer"),
        ("_rms_norm_forward_kernel", "norms"),
        ("_triton_rope", "rope"),
        ("liger_cross_entropy_kernel", "loss"),
        ("Memcpy DtoH (Device -> Pinned)", "copies"),
        ("void at::native::vectorized_elementwise_kernel<4, ...>", "elementwise and other"),
    ],
)
def test_kernels_are_sorted_by_name(name, part):
    assert kernel_part(name) == part


def test_overlapping_kernels_count_once():
    assert busy_us([(0, 10), (5, 12), (20, 25), (21, 22)]) == 17


def test_breakdown_splits_matmuls_by_rank_and_counts_idle_time():
    events = [
        kernel("nvjet_base", 0, 600_000),  # base product, 0.6 s
        kernel("nvjet_lora", 600_000, 700_000),  # LoRA product, 0.1 s
        kernel("kDequantizeBlockwise", 700_000, 900_000),  # 0.2 s
        kernel("flash_fwd_kernel", 900_000, 950_000),  # 0.05 s
        op("aten::mm", [[8192, 4096], [4096, 14336]], [("nvjet_base", 600_000)]),
        op("aten::addmm_", [[8192, 14336], [8192, RANK], [RANK, 14336]], [("nvjet_lora", 100_000)]),
        op("cudaStreamSynchronize", [], [], cpu_us=30_000),
    ]
    result = breakdown(events, RANK, wall_s=1.0)
    seconds = result["seconds"]
    assert seconds["base matmuls"] == pytest.approx(0.6)
    assert seconds["LoRA matmuls"] == pytest.approx(0.1)
    assert seconds["4-bit dequantization"] == pytest.approx(0.2)
    assert seconds["attention"] == pytest.approx(0.05)
    assert seconds["idle (no kernel running)"] == pytest.approx(0.05)
    assert result["host_syncs"] == {"calls": 1, "cpu_seconds": 0.03}
    assert result["share_of_wall"]["base matmuls"] == pytest.approx(0.6)
    assert "| LoRA matmuls | 0.100 | 10.0% |" in markdown(result)


def test_a_profiled_recipe_row_writes_where_its_steps_went(tmp_path, tiny_llama3, shared_data):
    """The whole path on CPU: the meter profiles steps 1 and 2 of 5, counts step 3's syncs by
    call site (none on a CPU), leaves those steps out of the speed and writes both beside the
    row's record."""
    shutil.copytree(tiny_llama3, tmp_path / "model")  # a copy: the benchmark names the pad token in it
    cmd = [sys.executable, "-m", "benchmarks.train_throughput", "all", "--model", str(tmp_path / "model")]
    cmd += ["--data-dir", str(shared_data), "--out", str(tmp_path), "--steps", "5", "--warmup", "1"]
    cmd += ["--skip-baseline", "--variant", "default:", "--profile", "default=1:3", "--timeout", "600"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "recipe_default.json").read_text())
    assert record["rc"] == 0, (tmp_path / "recipe_default.log").read_text()[-3000:]
    assert [s["profiled"] for s in record["steps"]] == [False, True, True, True, False]
    profile = json.loads((tmp_path / "recipe_default.json.profile.json").read_text())
    assert list(profile["seconds"]) == list(REPORT_ORDER)
    profiled = sum(s["seconds"] for s in record["steps"][1:3])
    assert profile["wall_seconds"] == pytest.approx(profiled)
    assert 0 < sum(profile["seconds"].values()) <= 1.05 * profiled  # parts of the profiled time
    assert "| wall time of the profiled steps |" in (tmp_path / "recipe_default.json.profile.md").read_text()
    syncs = (tmp_path / "recipe_default.json.syncs.md").read_text()
    assert syncs.startswith("0 synchronizing calls in the step")  # a CPU has nothing to wait for


def test_the_packing_check_runs_on_the_first_micro_batch_of_the_run_only(monkeypatch, tmp_path):
    """Its eval passes belong to no step's time: one check, in the warm-up step, not one a step."""
    from benchmarks import train_meter

    monkeypatch.setenv("BENCH_JSON", str(tmp_path / "row.json"))
    checks = []
    monkeypatch.setattr(train_meter, "packing_check", lambda model, inputs, pad: checks.append(1) or {})
    model = torch.nn.Module()
    model.get_input_embeddings = lambda: torch.nn.Embedding(8, 2)
    callbacks = []
    trainer = SimpleNamespace(
        processing_class=type("Tok", (), {"pad_token_id": 0, "__len__": lambda self: 8})(),
        model=model,
        training_step=lambda model, inputs: 0.0,
        add_callback=callbacks.append,
    )
    train_meter.BenchMeter().post_trainer_create({}, trainer)
    meter = callbacks[0]
    inputs = {"input_ids": torch.tensor([[3, 4, 5, 0]]), "position_ids": torch.tensor([[0, 1, 0, 1]])}
    meter.on_train_begin(None, None, None)
    for _ in range(3):
        meter.on_step_begin(None, None, None)
        for _ in range(2):  # two micro-batches a step
            trainer.training_step(model, inputs)
        meter.on_step_end(None, None, None)
    record = json.loads((tmp_path / "row.json.partial").read_text())
    assert [s["micro_batches"] for s in record["steps"]] == [2, 2, 2]
    assert [s["real"] for s in record["steps"]] == [6, 6, 6]
    assert len(checks) == 1
