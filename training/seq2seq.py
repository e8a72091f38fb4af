"""Train encoder-decoder models (Flan-T5) from a resolved recipe config.

Axolotl trains decoder-only models only, so a recipe with ``trainer: seq2seq`` is handed
to this thin runner instead: transformers' ``Seq2SeqTrainer`` + PEFT
LoRA, reading the same Axolotl-style keys (base_model, lora_*, load_in_8bit, learning_rate,
micro_batch_size, ...) from the same ``config.yml`` and the same normalized data, with
prompts from ``datasets_fmt.prompts`` like every other recipe. Resumes from the last
checkpoint in ``output_dir`` when run again.

    python -m training.seq2seq runs/<recipe>/config.yml      (make train starts it)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = {  # Axolotl key -> Seq2SeqTrainingArguments field
    "micro_batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "learning_rate": "learning_rate",
    "num_epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "lr_scheduler": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",  # transformers 5: a float in [0, 1) is a ratio
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "logging_steps": "logging_steps",
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "eval_steps": "eval_steps",
    "seed": "seed",
    "optimizer": "optim",
    "gradient_checkpointing": "gradient_checkpointing",
    "load_best_model_at_end": "load_best_model_at_end",
    "metric_for_best_model": "metric_for_best_model",
    "ddp_timeout": "ddp_timeout",
}


def read_rows(path: Path, fmt, max_len: int) -> list[dict]:
    from datasets_fmt.prompts import TooLong
    from datasets_fmt.records import Example

    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            enc = fmt.encode_train(Example.from_json(json.loads(line)), max_len)
        except TooLong:
            continue  # counted by the runner's data check
        rows.append({"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": enc.labels})
    return rows


def timed(trainer_class):
    """``trainer_class`` logging seconds per optimizer step, which Axolotl's token counter
    gives ``training/run_summary.py`` for the other trainer."""
    import time

    from training.run_summary import STEP_SECONDS

    class Timed(trainer_class):
        _since: float | None = None
        _since_step = 0

        def log(self, logs: dict, *args, **kwargs) -> None:
            if "loss" in logs:
                now, step = time.perf_counter(), self.state.global_step
                if self._since is not None and step > self._since_step:
                    logs[STEP_SECONDS] = round((now - self._since) / (step - self._since_step), 4)
                self._since, self._since_step = now, step
            super().log(logs, *args, **kwargs)

    return Timed


def main(config_file: str) -> int:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        set_seed,
    )
    from transformers.trainer_utils import get_last_checkpoint

    from datasets_fmt.prompts import get_format
    from training.launch import read_run_config, start_cpu_process_group
    from training.ranks import RankReport

    cfg = read_run_config(config_file)
    set_seed(cfg["seed"])  # before the LoRA weights are created: Trainer seeds only later
    start_cpu_process_group(cfg)
    cuda = torch.cuda.is_available()
    bf16 = cuda and cfg.get("bf16") in (True, "auto") and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(cfg["base_model"])
    quant = BitsAndBytesConfig(load_in_8bit=True) if cfg.get("load_in_8bit") else None
    model = AutoModelForSeq2SeqLM.from_pretrained(
        cfg["base_model"],
        quantization_config=quant,
        dtype=torch.bfloat16 if bf16 else torch.float32,
        device_map="auto" if cuda else None,
    )
    if quant:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(cfg.get("gradient_checkpointing"))
        )
    if cfg.get("adapter"):
        targets = "all-linear" if cfg.get("lora_target_linear") else cfg["lora_target_modules"]
        lora = LoraConfig(
            r=cfg["lora_r"],
            lora_alpha=cfg["lora_alpha"],
            lora_dropout=cfg.get("lora_dropout", 0.0),
            target_modules=targets,
            bias="none",
            task_type=TaskType.SEQ_2_SEQ_LM,
        )
        model = get_peft_model(model, lora)
        model.print_trainable_parameters()

    fmt = get_format("seq2seq", tokenizer)
    train = Dataset.from_list(read_rows(Path(cfg["datasets"][0]["path"]), fmt, cfg["sequence_len"]))
    evals = cfg.get("test_datasets")
    eval_set = (
        Dataset.from_list(read_rows(Path(evals[0]["path"]), fmt, cfg["sequence_len"])) if evals else None
    )

    fields = {field: cfg[key] for key, field in KEYS.items() if cfg.get(key) is not None}
    if fields.get("max_steps") is None:
        fields["max_steps"] = -1
    if cfg.get("group_by_length"):
        fields["train_sampling_strategy"] = "group_by_length"
    args = Seq2SeqTrainingArguments(
        output_dir=cfg["output_dir"],
        bf16=bf16,
        save_strategy="steps",
        eval_strategy="steps" if eval_set is not None else "no",
        report_to=["tensorboard"] if cfg.get("use_tensorboard") else [],
        remove_unused_columns=False,
        **fields,
    )
    trainer = timed(Seq2SeqTrainer)(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=eval_set,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        callbacks=[RankReport()],
    )
    last = get_last_checkpoint(cfg["output_dir"]) if Path(cfg["output_dir"]).exists() else None
    if last:
        print(f"resuming from {last}")
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model(cfg["output_dir"])
    tokenizer.save_pretrained(cfg["output_dir"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
