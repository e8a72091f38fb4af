"""Training-throughput benchmark: a plain QLoRA training loop against the llama3-dialogsum recipe.

Why: the recipe claims to train much faster than the plain transformers + PEFT +
bitsandbytes loop such a fine-tune usually starts from, without changing what is learned. This measures both on the same GPU, in one run, with the same tokenizer,
prompt format (``datasets_fmt``) and data, and reports real (non-pad) tokens/s, padding
share, step time, peak GPU memory and the share of the bf16 matmul ceiling.

- ``baseline``: the plain transformers + PEFT + bitsandbytes loop
  (benchmarks/plain_qlora_loop.py) in the notes' shape and, with ``--packed``, the recipe's
  (its LoRA shape and packed rows), so that the table separates what packing and batching
  give from what the recipe's kernels give.
- ``recipe``: ``scripts/train.py llama3-dialogsum`` (Axolotl) with extra overrides. The
  plugin :class:`benchmarks.train_meter.BenchMeter` (loaded by Axolotl through ``plugins:``)
  counts the non-pad tokens of every packed micro-batch, times each optimizer step, records
  the loss curve and, once, checks that packed samples do not see each other.
- ``peer``: with ``--peer``, what a practitioner would otherwise run on the same rows:
  Axolotl's stock QLoRA example and Unsloth (benchmarks/peers.py), timed by the same meter.
- ``all``: both baselines, then each recipe variant and peer (a subprocess each), then ``table``.

On a GPU machine: ``make bench-train`` (a random-weight Llama-3-8B, see
training/random_model.py), or directly:
    python -m benchmarks.train_throughput all --model .cache/models/llama3-8b-random --data-dir DIR \
        --out runs/bench-train --variant default: --variant "gc:gradient_checkpointing=true"
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks import peers
from benchmarks.plain_qlora_loop import lora_label, recipe_lora, run_baseline
from training.paths import REPO, RUNS
from training.recipe import add_plugin

PEAK_BF16_FLOPS = 790e12  # dense bf16 matmul, measured on an H100 80GB HBM3
PARAMS = 8.03e9  # Llama-3-8B
FLOPS_PER_TOKEN = 4 * PARAMS  # LoRA: forward 2N + input-gradient backward 2N (no frozen weight grads)
RECIPE = "llama3-dialogsum"
NO_EVAL = ["data.validation_split=null", "eval_steps=null"]


# -- figures ------------------------------------------------------------------------------
def summarize(steps: list[dict], warmup: int) -> dict:
    """Steady-state figures from per-step records {seconds, real, positions, loss}."""
    steady = [s for s in steps[warmup:] if not s.get("profiled")]
    secs = sum(s["seconds"] for s in steady)
    real = sum(s["real"] for s in steady)
    pos = sum(s["positions"] for s in steady)
    tps = real / secs if secs else 0.0
    return {
        "measured_steps": len(steady),
        "step_seconds": secs / len(steady) if steady else 0.0,
        "real_tokens_per_step": real / len(steady) if steady else 0.0,
        "real_tokens_per_s": tps,
        "positions_per_s": pos / secs if secs else 0.0,
        "padding_share": 1 - real / pos if pos else 0.0,
        "ceiling_share": tps * FLOPS_PER_TOKEN / PEAK_BF16_FLOPS,
    }


def fix_pad_token(model_dir: Path, pad: str) -> None:
    """Name the recipe's pad token in the model folder's tokenizer_config.json: a pad token
    missing from the vocabulary is added at load time (len 128257) and resizes embeddings."""
    cfg_file = model_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("pad_token") != pad:
        cfg["pad_token"] = pad
        cfg_file.write_text(json.dumps(cfg, indent=2))
    # A tokenizer saved after the old pad token was added carries it as id 128256: drop
    # added tokens beyond the model's vocabulary.
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    tok_file = model_dir / "tokenizer.json"
    tok = json.loads(tok_file.read_text())
    kept = [t for t in tok["added_tokens"] if t["id"] < vocab]
    if len(kept) != len(tok["added_tokens"]):
        tok["added_tokens"] = kept
        tok_file.write_text(json.dumps(tok, ensure_ascii=False))


def resolved_recipe(overrides: list[str] = ()) -> dict:
    from training.recipe import resolve

    return resolve(RECIPE, list(overrides)).config


def recipe_pad_token() -> str:
    return resolved_recipe()["special_tokens"]["pad_token"]


def plugins_override(overrides: list[str]) -> str:
    """The meter joins the plugins the variant trains with (the recipe's, or a ``plugins=``
    override's); it comes after the variant's overrides, which it would otherwise replace."""
    config = resolved_recipe(overrides)
    add_plugin(config, peers.METER)
    return f"plugins=[{','.join(config['plugins'])}]"


def run_recipe(
    name: str,
    overrides: list[str],
    model_dir: Path,
    data_dir: Path,
    steps: int,
    out: Path,
    timeout: int,
    profile: str | None = None,
) -> dict:
    json_file = out / f"recipe_{name}.json"
    args = [
        RECIPE,
        f"base_model={model_dir}",
        f"max_steps={steps}",
        "logging_steps=1",
        "save_steps=1000",
        *NO_EVAL,
        *overrides,
        plugins_override(overrides),
        "--data-dir",
        str(data_dir),
        "--overwrite",
        "--run-dir",
        str(out / "runs" / name),
    ]
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *args]
    env = {"BENCH_JSON": str(json_file), **({"BENCH_PROFILE": profile} if profile else {})}
    lora = recipe_lora(resolved_recipe(overrides))
    info = {"name": name, "lora": lora_label(lora["r"], lora["lora_alpha"]), "overrides": overrides}
    result = run_measured(cmd, env, json_file, timeout, info)
    result["changes"] = runner_choices(out / "runs" / name)
    return kept(json_file, result)


def runner_choices(run_dir: Path) -> list[str]:
    """What the runner chose on this GPU for a setting the row left to it (run.yml's
    ``memory_mode`` and ``base_mode``, without the reason): on another GPU the same row is
    another mode, so the table says which one ran."""
    run_file = run_dir / "run.yml"
    run = yaml.safe_load(run_file.read_text()) if run_file.exists() else {}
    return [run[key].split(" (")[0] for key in ("memory_mode", "base_mode") if run.get(key)]


def run_peer(name: str, model_dir: Path, data_dir: Path, steps: int, out: Path, timeout: int) -> dict:
    """One of benchmarks/peers.py's peers, on the recipe's rows and sequence length."""
    json_file = out / f"peer_{name}.json"
    run_dir = out / "runs" / name
    if name == "unsloth":
        from benchmarks.unsloth_qlora import peer_settings

        s = peer_settings(resolved_recipe(), steps)
        cmd = peers.unsloth_command(model_dir, data_dir, steps, json_file)
        env = {"BENCH_JSON": str(json_file), "BENCH_OUTPUT_DIR": str(run_dir), **peers.peer_environment()}
        info = {"lora": lora_label(s["lora_r"], s["lora_alpha"]), "changes": ["the recipe's settings"]}
    else:
        import torch

        rows = peers.recipe_rows(model_dir, data_dir, run_dir)
        sequence_len = resolved_recipe()["sequence_len"]
        config, changes = peers.axolotl_example_config(
            model_dir,
            rows,
            sequence_len,
            steps,
            run_dir,
            peers.flash_attn_installed(),
            torch.cuda.is_available(),
        )
        config_file = run_dir / "config.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = peers.axolotl_example_command(config_file)
        env = {"BENCH_JSON": str(json_file), "PYTHONPATH": str(REPO), "AXOLOTL_DO_NOT_TRACK": "1"}
        info = {"lora": lora_label(config["lora_r"], config["lora_alpha"]), "changes": changes}
    return kept(json_file, run_measured(cmd, env, json_file, timeout, {"name": name, **info}, cwd=run_dir))


def run_measured(
    cmd: list[str], env: dict, json_file: Path, timeout: int, info: dict, cwd: Path | None = None
) -> dict:
    """Run one timed training in its own process (and session, so a timeout ends its children
    too); return ``info`` with the meter's record (what it wrote before a kill, if killed)."""
    log = json_file.with_suffix(".log")
    if cwd:
        cwd.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log.open("w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            cwd=cwd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
    part = Path(str(json_file) + ".partial")
    partial = json.loads(part.read_text()) if part.exists() else None
    part.unlink(missing_ok=True)
    result: dict[str, Any] = {**info, "rc": rc, "wall_seconds": round(time.time() - started, 1)}
    if json_file.exists():
        result.update(json.loads(json_file.read_text()))
    elif partial:  # killed before on_train_end: the steps recorded so far
        result.update(partial)
    return result


def kept(json_file: Path, result: dict) -> dict:
    """The row's record, written over the meter's file: the table is built from these files."""
    json_file.write_text(json.dumps(result, indent=1))
    return result


# -- report ----------------------------------------------------------------------------------
# the rows every other row is compared with, when the run has them: "x NAME" columns
REFERENCES = {"baseline": "x baseline", "unsloth": "x Unsloth", "axolotl_example": "x Axolotl example"}


def table(results: list[dict], warmup: int) -> str:
    """The Markdown table: speed, ratio to each reference row present, memory, the loss gap to
    the recipe as shipped over the same steps, what a peer's row changed from its default and
    what the runner chose for a recipe row on this GPU."""
    for r in results:  # a record the plugin wrote after its run's timeout has no summary yet
        if r.get("steps") and "real_tokens_per_s" not in r:
            r.update(summarize(r["steps"], warmup))
    for r in results:
        r.setdefault("name", "default")
    refs = {
        name: r for name in REFERENCES for r in results if r["name"] == name and r.get("real_tokens_per_s")
    }
    ref = next((r for r in results if r["name"] == "default" and "steps" in r), None)
    head = ["run", "LoRA", "real tok/s", *(REFERENCES[n] for n in refs), "padding", "step s", "real tok/step"]
    head += ["peak alloc GiB", "ceiling", "max |dloss| vs default", "changed, or chosen on this GPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        if not r.get("real_tokens_per_s"):
            cells = [r["name"], r.get("lora", ""), f"failed (rc {r.get('rc')})"] + [""] * (len(head) - 3)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        ratios = [f"{r['real_tokens_per_s'] / ref_row['real_tokens_per_s']:.2f}" for ref_row in refs.values()]
        dloss = "-"
        if ref and r["name"] != "default" and not r["name"].startswith("baseline"):
            pairs = [(a.get("loss"), b.get("loss")) for a, b in zip(r["steps"], ref["steps"], strict=False)]
            diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
            dloss = f"{max(diffs):.4f} ({len(diffs)} steps)" if diffs else "-"
        cells = [r["name"], r.get("lora", ""), f"{r['real_tokens_per_s']:,.0f}", *ratios]
        cells += [
            f"{r['padding_share']:.1%}",
            f"{r['step_seconds']:.3f}",
            f"{r['real_tokens_per_step']:,.0f}",
        ]
        cells += [
            f"{r['peak_allocated_gib']:.2f}",
            f"{r['ceiling_share']:.1%}",
            dloss,
            "; ".join(r.get("changes", [])),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(r: dict, warmup: int) -> None:
    if r.get("steps"):
        r.update(summarize(r["steps"], warmup))
    print(
        f"{r['name']}: rc={r['rc']} {r.get('real_tokens_per_s', 0):,.0f} real tok/s "
        f"peak {r.get('peak_allocated_gib', 0):.2f} GiB wall {r['wall_seconds']} s",
        flush=True,
    )


def run_baseline_process(a: argparse.Namespace, packed: bool) -> tuple[str, int | str]:
    """The baseline in its own process, so that its GPU memory is gone before the recipe runs."""
    name = "baseline_packed" if packed else "baseline"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.train_throughput",
        "baseline",
        "--model",
        str(a.model),
        "--data-dir",
        str(a.data_dir),
    ]
    cmd += ["--out", str(a.out), "--baseline-steps", str(a.baseline_steps), "--warmup", str(a.warmup)]
    with (a.out / f"{name}.log").open("w") as fh:
        try:
            return name, subprocess.run(
                [*cmd, *(["--packed"] if packed else [])], stdout=fh, stderr=subprocess.STDOUT, timeout=300
            ).returncode
        except subprocess.TimeoutExpired:
            return name, "timeout"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["all", "baseline", "table"])
    p.add_argument("--model", type=Path, required=True, help="a model folder (e.g. a random-weight 8B)")
    p.add_argument("--data-dir", type=Path, required=True, help="folder holding dialogsum/train.jsonl")
    p.add_argument("--out", type=Path, default=RUNS / "bench-train")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per recipe run")
    p.add_argument("--baseline-steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the steady state")
    p.add_argument("--timeout", type=int, default=170, help="seconds per recipe run")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="VARIANT=A:B",
        help="profile optimizer steps A..B-1 of that variant (benchmarks/step_profile.py); left out of its speed",
    )
    p.add_argument("--packed", action="store_true", help="baseline: the recipe's LoRA shape and packed rows")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:key=value key=value ... (recipe overrides); 'default:' for none",
    )
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        choices=peers.PEERS,
        help="also time a peer on the same rows (benchmarks/peers.py)",
    )
    a = p.parse_args()
    # absolute: the peers run from their own run folders
    a.model, a.data_dir, a.out = a.model.resolve(), a.data_dir.resolve(), a.out.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.mode == "baseline":
        res = run_baseline(a.model, a.data_dir, a.baseline_steps, a.packed, 0, resolved_recipe())
        res.update(summarize(res["steps"], a.warmup))
        (a.out / f"{res['name']}.json").write_text(json.dumps(res, indent=1))
        return 0
    if a.mode == "all":
        fix_pad_token(a.model, recipe_pad_token())
        if not a.skip_baseline:
            for packed in (False, True):
                name, rc = run_baseline_process(a, packed)
                print(f"{name}: rc={rc}", flush=True)
        profiles = dict(spec.split("=", 1) for spec in a.profile)
        for spec in a.variant:
            name, _, rest = spec.partition(":")
            profile = profiles.get(name)
            report(
                run_recipe(name, rest.split(), a.model, a.data_dir, a.steps, a.out, a.timeout, profile),
                a.warmup,
            )
        for name in a.peer:
            report(run_peer(name, a.model, a.data_dir, a.steps, a.out, a.timeout), a.warmup)
    files = [*a.out.glob("baseline*.json"), *a.out.glob("recipe_*.json"), *a.out.glob("peer_*.json")]
    files = [f for f in files if not f.name.endswith(".profile.json")]
    results = [json.loads(f.read_text()) for f in sorted(files, key=os.path.getmtime)]
    print(table(results, a.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
