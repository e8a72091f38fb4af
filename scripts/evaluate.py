"""Evaluate a trained run, base vs fine-tuned, and write the report (make eval RECIPE=...).

python scripts/evaluate.py smollm2-dialogsum [--limit N] [--backend vllm|hf] [--adapter-mode lora|merged]
"""

import sys

from eval.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
