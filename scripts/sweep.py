"""Train a grid of runs and choose by validation ROUGE (make sweep RECIPE=... SWEEP="...").

python scripts/sweep.py smollm2-dialogsum "learning_rate=1e-4,3e-4 lora_r=8,16" [key=value ...] [--parallel N]
"""

import sys

from eval.sweep import main

if __name__ == "__main__":
    sys.exit(main())
