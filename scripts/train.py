"""Train a recipe: resolve it, check recipe and data, then run Axolotl.

    python scripts/train.py smollm2-dialogsum [key=value ...] [--data-dir DIR] [--gpus N]

Everything a run used lands in ``runs/<recipe>/``: ``config.yml`` (the exact Axolotl
config), ``run.yml`` (data and evaluation settings, hardware adjustments), ``data/`` (the
validated, normalized records), ``adapter/`` (checkpoints and the final adapter). Running
the same command again resumes from the last checkpoint; a finished run is refused unless
``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402
from recipe_config import REPO, RecipeError, check_against_model, deep_merge, resolve, validate  # noqa: E402

from datasets_fmt import atomic  # noqa: E402
from datasets_fmt.records import DataError  # noqa: E402

log = logging.getLogger("train")
STRATEGIES = REPO / "recipes" / "distributed"

# Settings a GPU recipe needs changed to run on a CPU (see FIELD_NOTES): Axolotl picks fp16
# when precision is left out, and its LoRA kernels and flash attention assert CUDA.
CPU_SETTINGS = {
    "bf16": False,
    "fp16": False,
    "tf32": False,
    "flash_attention": False,
    "sample_packing": False,
    "lora_mlp_kernel": False,
    "lora_qkv_kernel": False,
    "lora_o_kernel": False,
    "lora_embedding_kernel": False,
}
CPU_OPTIMIZERS = {
    "paged_adamw_8bit": "adamw_torch",
    "paged_adamw_32bit": "adamw_torch",
    "adamw_bnb_8bit": "adamw_torch",
}


def adapt_to_cpu(config: dict) -> list[str]:
    """Make a GPU recipe runnable on CPU; return what changed, for the run's record."""
    changes = []
    for key, value in CPU_SETTINGS.items():
        if config.get(key, value) != value or key not in config:
            changes.append(f"{key}: {config.get(key)!r} -> {value!r}")
        config[key] = value
    if config.get("optimizer") in CPU_OPTIMIZERS:
        new = CPU_OPTIMIZERS[config["optimizer"]]
        changes.append(f"optimizer: {config['optimizer']} -> {new} (paged optimizers need CUDA)")
        config["optimizer"] = new
    liger = [p for p in config.get("plugins") or [] if "liger" in p.lower()]
    if liger:  # Liger's kernels are Triton: GPU only
        config["plugins"] = [p for p in config["plugins"] if p not in liger]
        if not config["plugins"]:
            del config["plugins"]
        for key in [k for k in config if k.startswith("liger_")]:
            del config[key]
        changes.append(f"plugins: {liger} off (Triton kernels need a GPU)")
    if config.get("adapter") == "qlora" and (config.get("val_set_size") or config.get("test_datasets")):
        # CPU QLoRA trap: an eval pass repacks the 4-bit weights and corrupts the gradients.
        config["val_set_size"] = 0
        for key in ("test_datasets", "eval_steps", "load_best_model_at_end", "metric_for_best_model"):
            config.pop(key, None)
        changes.append("evaluation during training off (CPU QLoRA: eval corrupts 4-bit gradients)")
    return changes


def prepare_data(project: dict, config: dict, run_dir: Path) -> dict:
    """Validate and normalize the data splits into the run directory; report truncation."""
    from transformers import AutoTokenizer

    from datasets_fmt.prompts import fit_report, get_format
    from datasets_fmt.sources import load_examples

    data = project["data"]
    tokenizer = AutoTokenizer.from_pretrained(config.get("tokenizer_config") or config["base_model"])
    if config.get("chat_template") and not getattr(tokenizer, "chat_template", None):
        raise RecipeError(
            f"format '{data['format']}' with chat_template '{config['chat_template']}': "
            "give the tokenizer its template (tokenizer_config) or pick format 'plain'"
        )
    fmt = get_format(data["format"], tokenizer, data["instruction"])
    report = {}
    for role, split in (("train", data["train_split"]), ("validation", data["validation_split"])):
        if not split:
            continue
        loaded = load_examples(data["corpus"], split, data["location"])
        fit = fit_report(fmt, loaded.examples, config["sequence_len"])
        atomic.write_jsonl(run_dir / "data" / f"{role}.jsonl", (ex.to_json() for ex in loaded.examples))
        usable = len(loaded.examples) - fit.too_long
        if not usable:
            raise DataError(
                loaded.source,
                None,
                None,
                f"every record is longer than sequence_len={config['sequence_len']}",
            )
        report[role] = {
            "source": loaded.source,
            "records": len(loaded.examples),
            "skipped": dict(loaded.skipped),
            "truncated_dialogues": fit.truncated,
            "max_tokens_cut": fit.max_tokens_cut,
            "dropped_summary_too_long": fit.too_long,
        }
        log.info(
            "%s: %d records (%s); %d dialogue(s) truncated to fit sequence_len=%d (at most %d tokens cut); %d dropped (summary too long)",
            role,
            len(loaded.examples),
            loaded.source,
            fit.truncated,
            config["sequence_len"],
            fit.max_tokens_cut,
            fit.too_long,
        )
    return report


def attach_run_paths(config: dict, project: dict, run_dir: Path) -> None:
    """Point Axolotl at the run's normalized data, through this project's prompt strategy."""
    strategy = f"datasets_fmt.axolotl_{project['data']['format']}"
    config["datasets"] = [
        {"path": str(run_dir / "data" / "train.jsonl"), "ds_type": "json", "type": strategy}
    ]
    if project["data"]["validation_split"]:
        validation = str(run_dir / "data" / "validation.jsonl")
        config["test_datasets"] = [
            {"path": validation, "ds_type": "json", "split": "train", "type": strategy}
        ]
    config["output_dir"] = str(run_dir / "adapter")
    config["dataset_prepared_path"] = str(run_dir / "prepared")


def build_command(config_file: Path, gpus: int, seq2seq: bool = False) -> list[str]:
    """One process: plain python. Several: `accelerate launch`, the path Axolotl documents;
    DDP/FSDP/DeepSpeed come from the keys the strategy put into the config. Encoder-decoder
    recipes (format seq2seq) run scripts/seq2seq_trainer.py: Axolotl has no such path."""
    target = [str(Path(__file__).with_name("seq2seq_trainer.py"))] if seq2seq else ["-m", "axolotl.cli.train"]
    if gpus <= 1:
        return [sys.executable, *target, str(config_file)]
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(gpus),
        "--num_machines",
        "1",
    ]
    return [*launch, "--dynamo_backend", "no", *target, str(config_file)]


def apply_strategy(config: dict, strategy: str | None) -> dict:
    if not strategy:
        return config
    path = STRATEGIES / f"{strategy}.yml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in STRATEGIES.glob("*.yml")))
        raise RecipeError(f"no multi-GPU strategy '{strategy}': choose one of {known} (recipes/distributed/)")
    return deep_merge(config, yaml.safe_load(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a recipe with Axolotl.")
    parser.add_argument("recipe", help="recipe name (recipes/<name>.yml) or path")
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. max_steps=10 data.corpus=samsum"
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("DATA_DIR") or None,
        help="local data folder or file (default: the recipe's, else the HF hub)",
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/<recipe>")
    parser.add_argument("--gpus", type=int, default=int(os.environ.get("GPUS") or 1))
    parser.add_argument(
        "--strategy",
        default=os.environ.get("STRATEGY") or None,
        help="multi-GPU strategy in recipes/distributed/: ddp, fsdp, zero2, zero3 (default with --gpus>1: ddp)",
    )
    parser.add_argument(
        "--check", action="store_true", help="resolve and validate recipe and data, then stop"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start over even if the run directory holds a finished run"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.location={args.data_dir}")
    try:
        config, project, source = resolve(args.recipe, overrides)
        run_dir = (args.run_dir or REPO / "runs" / source.stem).resolve()
        if args.check and (run_dir / "TRAINED").exists():
            run_dir = run_dir / "check"  # never overwrite the record of a finished run
        if (run_dir / "TRAINED").exists() and not args.overwrite and not args.check:
            raise RecipeError(
                f"{run_dir} already holds a finished run: pass --overwrite (make ... OVERWRITE=1) or another --run-dir"
            )
        if args.overwrite and run_dir.exists() and not args.check:
            shutil.rmtree(run_dir)
        config = apply_strategy(config, args.strategy or ("ddp" if args.gpus > 1 else None))
        attach_run_paths(config, project, run_dir)
        import torch

        hardware = "cuda" if torch.cuda.is_available() else "cpu"
        changes = adapt_to_cpu(config) if hardware == "cpu" else []
        for change in changes:
            log.info("no GPU: %s", change)
        check_against_model(config, source, torch.cuda.is_bf16_supported() if hardware == "cuda" else None)
        validate(config, source)
        data_report = prepare_data(project, config, run_dir)
    except (RecipeError, DataError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    config_file = atomic.write_yaml(run_dir / "config.yml", config)
    run_info = {
        "recipe": source.stem,
        "recipe_file": str(source),
        "overrides": list(args.overrides),
        "base_model": config["base_model"],
        "adapter": config.get("adapter"),
        **project,
        "hardware": hardware,
        "cpu_adjustments": changes,
        "data_check": data_report,
    }
    atomic.write_yaml(run_dir / "run.yml", run_info)
    if args.check:
        print(f"ok: {source.name} resolves to {config_file}; recipe and data checks passed")
        return 0

    cmd = build_command(config_file, args.gpus, seq2seq=project["data"]["format"] == "seq2seq")
    env = {
        **os.environ,
        "AXOLOTL_DO_NOT_TRACK": "1",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log.info("running: %s", " ".join(cmd))
    started = time.time()
    result = subprocess.run(cmd, env=env, cwd=run_dir)
    if result.returncode != 0:
        log.error(
            "training failed (exit %d); run the same command again to resume from the last checkpoint",
            result.returncode,
        )
        return result.returncode
    run_info["train_seconds"] = round(time.time() - started, 1)
    atomic.write_yaml(run_dir / "run.yml", run_info)
    atomic.write_text(run_dir / "TRAINED", f"finished in {run_info['train_seconds']} s\n")
    print(f"adapter: {run_dir / 'adapter'} ({run_info['train_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
