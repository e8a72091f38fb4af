"""Train a recipe: check recipe and data, then run its trainer (Axolotl, or seq2seq).

    python scripts/train.py smollm2-dialogsum [key=value ...] [--data-dir DIR] [--gpus N --strategy zero2]
    python scripts/train.py llama3-dialogsum --check        # validate recipe and data, load no model

Several machines: the same command on each, with --machines M --machine-rank R --main-process-ip IP.
"""

import sys

from eval.recipe_block import check_evaluation_block
from training.runner import main

if __name__ == "__main__":
    # the two sides meet here: the recipe's evaluation: block is checked by the package that owns it
    sys.exit(main(block_checks={"evaluation": check_evaluation_block}))
