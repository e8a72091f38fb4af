"""Training throughput on a GPU: the notes' plain QLoRA loop against the llama3-dialogsum recipe.

    python scripts/bench_train.py all --model .cache/models/llama3-8b-random --data-dir DIR --variant default:

`make bench-train` builds the random-weight model and runs this. See training/bench.py.
"""

import sys

from training.bench import main

if __name__ == "__main__":
    sys.exit(main())
