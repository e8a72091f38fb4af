"""Merge a trained LoRA/QLoRA adapter into its base model, and prove the merge is right.

    python scripts/merge.py smollm2-dialogsum [--run-dir DIR] [--out DIR]      (make merge RECIPE=...)

QLoRA adapters were trained against the NF4-quantized base, so they are merged into the
base after an NF4 quantize -> dequantize round trip (what the adapter actually saw), in
full precision, never into 4-bit weights. ``merge_check.json`` records, on a probe batch,
the largest logit difference of the merged model against base + adapter (unmerged, PEFT;
must stay within ``TOLERANCE`` or nothing is saved) and, for QLoRA, against what training
computed: bitsandbytes' 4-bit base + adapter.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

from datasets_fmt import atomic
from training.paths import MERGE_CHECK, MERGED_DIR, default_run_dir
from training.run_record import is_qlora, quantized_from, trained_every_weight

PROBE = [
    "#Person1#: Could you send me the report by Friday?\n#Person2#: Sure, I will email it on Thursday.",
    "Summarize the following dialogue.",
]
TOLERANCE = 1e-3  # max |logit difference|, fp32


def nf4_round_trip(model, quantized_from: str = "bfloat16") -> int:
    """Replace each linear weight by its NF4 (double-quant) dequantization, as QLoRA saw it.
    Quantized on the GPU where there is one, as QLoRA training does; the weights stay where
    they are."""
    import bitsandbytes.functional as bnbf
    import torch

    device = "cuda" if torch.cuda.is_available() else None
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            weight = module.weight.data
            q, state = bnbf.quantize_4bit(
                weight.to(device or weight.device, getattr(torch, quantized_from)),
                quant_type="nf4",
                compress_statistics=True,
            )
            module.weight.data = bnbf.dequantize_4bit(q, state).to(weight.device, weight.dtype)
            count += 1
    return count


def nf4_config(compute_dtype):
    """QLoRA's quantization (recipes/_qlora.yml): NF4 with double quantization."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load_base(base_model: str, seq2seq: bool, four_bit_from: str | None = None):
    """The base in fp32, or (``four_bit_from``) as QLoRA trained on it: NF4 quantized from
    that dtype, computing in fp32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    kwargs: dict = {"dtype": torch.float32}
    if four_bit_from:
        kwargs = {"dtype": getattr(torch, four_bit_from), "quantization_config": nf4_config(torch.float32)}
    return (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(base_model, **kwargs)


def probe_logits(model, probe):
    """The probe's logits on the CPU, computed where the model is (transformers puts a
    bitsandbytes 4-bit base on the GPU)."""
    import torch

    with torch.no_grad():
        return model(**{key: value.to(model.device) for key, value in probe.items()}).logits.float().cpu()


def max_diff(a, b) -> float:
    return float((a - b).abs().max())


def trained_logits(base_model: str, adapter: Path, seq2seq: bool, probe, quantized_from: str) -> tuple:
    """What QLoRA training computed: the bitsandbytes 4-bit base with the adapter on top; and
    the 4-bit base alone, to tell the 4-bit kernel's own arithmetic from a merge error."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(
        load_base(base_model, seq2seq, four_bit_from=quantized_from), str(adapter)
    )
    with model.disable_adapter():
        base_alone = probe_logits(model, probe)
    return probe_logits(model, probe), base_alone


def merge_adapter(
    base_model: str, adapter: Path, out: Path, qlora: bool, quantized_from: str = "bfloat16"
) -> dict:
    from peft import PeftModel
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    seq2seq = getattr(AutoConfig.from_pretrained(base_model), "is_encoder_decoder", False)
    base = load_base(base_model, seq2seq)
    round_tripped = nf4_round_trip(base, quantized_from) if qlora else 0
    model = PeftModel.from_pretrained(base, str(adapter))
    model.eval()
    probe = tokenizer(PROBE, return_tensors="pt", padding=True)
    if seq2seq:  # score the same probe as decoder input
        probe["decoder_input_ids"] = probe["input_ids"]
    expected = probe_logits(model, probe)
    with model.disable_adapter():
        dequantized_base = probe_logits(model, probe)
    merged = model.merge_and_unload()
    check = {
        "max_abs_logit_diff": max_diff(expected, probe_logits(merged, probe)),
        "tolerance": TOLERANCE,
        "nf4_round_trip_layers": round_tripped,
    }
    if check["max_abs_logit_diff"] > TOLERANCE:
        raise RuntimeError(
            f"merged model differs from base + adapter by {check['max_abs_logit_diff']:.2e} > {TOLERANCE}: not saved"
        )
    trained = None
    if qlora:
        trained, four_bit_base = trained_logits(base_model, adapter, seq2seq, probe, quantized_from)
        check.update(
            quantized_from=quantized_from,
            vs_4bit_base_plus_adapter=max_diff(probe_logits(merged, probe), trained),
            # the same weights through bitsandbytes' 4-bit kernel: how close "equal" can get
            kernel_4bit_vs_dequantized_base=max_diff(four_bit_base, dequantized_base),
        )
    tmp = out.with_name(out.name + ".partial")
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    generation_config = Path(base_model) / "generation_config.json"
    if generation_config.exists():
        atomic.write_text(tmp / generation_config.name, generation_config.read_text())
    if trained is not None:  # the pitfall, measured: the merged weights stored back in NF4
        nf4_round_trip(merged, quantized_from)
        check["4bit_merge_vs_4bit_base_plus_adapter"] = max_diff(probe_logits(merged, probe), trained)
    atomic.write_json(tmp / MERGE_CHECK, check)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return check


def merged_model(run_dir: Path, run: dict) -> Path:
    """The model `make merge` wrote for the run (serving and publishing it); a ValueError that
    says what to run where there is none. The folder appears whole (written as .partial, then
    renamed), with ``merge_check.json`` in it."""
    if trained_every_weight(run):
        raise ValueError(
            f"{run['recipe']} trained every weight (adapter: null): there is nothing to merge; leave MERGED=1 out"
        )
    merged = run_dir / MERGED_DIR
    if not (merged / MERGE_CHECK).exists():
        raise ValueError(
            f"{merged} holds no finished merge: run `make merge RECIPE={run['recipe']}` first (RUN_DIR={run_dir})"
        )
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Merge a run's adapter into its base model.")
    parser.add_argument("recipe")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    run_dir = (args.run_dir or default_run_dir(args.recipe)).resolve()
    run_file = run_dir / "run.yml"
    run = yaml.safe_load(run_file.read_text()) if run_file.exists() else {}
    adapter = run_dir / "adapter"
    if run and trained_every_weight(run):
        print(
            f"error: {run['recipe']} trained every weight (adapter: null): {adapter} already holds the "
            "whole model, so there is nothing to merge; evaluate or serve it as it is",
            file=sys.stderr,
        )
        return 2
    if not (adapter / "adapter_config.json").exists():
        print(
            f"error: no trained adapter in {adapter}: run `make train RECIPE={args.recipe}` first",
            file=sys.stderr,
        )
        return 2
    out = args.out or run_dir / MERGED_DIR
    check = merge_adapter(run["base_model"], adapter, out, is_qlora(run), quantized_from(run))
    print(f"merged: {out} (max |logit diff| vs base+adapter {check['max_abs_logit_diff']:.1e})")
    return 0
