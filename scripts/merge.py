"""Merge a trained LoRA/QLoRA adapter into its base model, and prove the merge is right.

    python scripts/merge.py smollm2-dialogsum [--run-dir DIR] [--out DIR]

QLoRA adapters were trained against the NF4-quantized base, so they are merged into the
base after an NF4 quantize -> dequantize round trip (what the adapter actually saw), in
full precision, never into 4-bit weights. The merged model's logits are compared with
base + adapter (unmerged, PEFT) on a probe batch; the result is written to
``merge_check.json`` and a mismatch beyond tolerance fails the merge.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from datasets_fmt import atomic

REPO = Path(__file__).resolve().parent.parent
PROBE = [
    "#Person1#: Could you send me the report by Friday?\n#Person2#: Sure, I will email it on Thursday.",
    "Summarize the following dialogue.",
]
TOLERANCE = 1e-3  # max |logit difference|, fp32


def nf4_round_trip(model) -> int:
    """Replace each linear weight by its NF4 (double-quant) dequantization, as QLoRA saw it."""
    import bitsandbytes.functional as bnbf
    import torch

    count = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            weight = module.weight.data
            q, state = bnbf.quantize_4bit(
                weight.to(torch.bfloat16), quant_type="nf4", compress_statistics=True
            )
            module.weight.data = bnbf.dequantize_4bit(q, state).to(weight.dtype)
            count += 1
    return count


def merge_adapter(base_model: str, adapter: Path, out: Path, qlora: bool) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    seq2seq = getattr(AutoConfig.from_pretrained(base_model), "is_encoder_decoder", False)
    base = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(
        base_model, dtype=torch.float32
    )
    round_tripped = nf4_round_trip(base) if qlora else 0
    model = PeftModel.from_pretrained(base, str(adapter))
    model.eval()
    probe = tokenizer(PROBE, return_tensors="pt", padding=True)
    if seq2seq:  # score the same probe as decoder input
        probe["decoder_input_ids"] = probe["input_ids"]
    with torch.no_grad():
        expected = model(**probe).logits
        merged = model.merge_and_unload()
        got = merged(**probe).logits
    max_diff = float((expected - got).abs().max())
    check = {
        "max_abs_logit_diff": max_diff,
        "tolerance": TOLERANCE,
        "nf4_round_trip_layers": round_tripped,
        "ok": max_diff <= TOLERANCE,
    }
    if not check["ok"]:
        raise RuntimeError(
            f"merged model differs from base + adapter by {max_diff:.2e} > {TOLERANCE}: not saved"
        )
    tmp = out.with_name(out.name + ".partial")
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for extra in ("generation_config.json",):
        src = Path(base_model) / extra
        if src.exists():
            atomic.write_text(tmp / extra, src.read_text())
    atomic.write_json(tmp / "merge_check.json", check)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Merge a run's adapter into its base model.")
    parser.add_argument("recipe")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    run_dir = (args.run_dir or REPO / "runs" / args.recipe).resolve()
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").exists():
        print(
            f"error: no trained adapter in {adapter}: run `make train RECIPE={args.recipe}` first",
            file=sys.stderr,
        )
        return 2
    out = args.out or run_dir / "merged"
    check = merge_adapter(run["base_model"], adapter, out, qlora=run.get("adapter") == "qlora")
    print(f"merged: {out} (max |logit diff| vs base+adapter {check['max_abs_logit_diff']:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
