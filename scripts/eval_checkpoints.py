"""Score every saved checkpoint of a run by generation + ROUGE (make eval-checkpoints RECIPE=...).

python scripts/eval_checkpoints.py smollm2-dialogsum [--run-dir DIR] [--limit N] [--engines shared|per-checkpoint]
"""

import sys

from eval.checkpoints import main

if __name__ == "__main__":
    sys.exit(main())
