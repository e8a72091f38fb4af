"""Axolotl's train command (``python -m axolotl.cli.train config.yml``), with the recipe's
``seed`` applied before the model is built.

Why: Axolotl 0.19 creates the LoRA weights before anything seeds torch (transformers seeds in
``Trainer.__init__``, after the model exists), so two runs of one recipe started from
different random LoRA A matrices: the first loss matched, every later one drifted (up to
0.6% after 6 steps on CPU). Seeded here, a run repeats exactly.

    python -m training.axolotl_train config.yml     (what the runner launches; multi-GPU too)
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import yaml


def main() -> None:
    from transformers import set_seed

    set_seed(yaml.safe_load(Path(sys.argv[1]).read_text())["seed"])  # recipes/_base.yml sets it
    runpy.run_module("axolotl.cli.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
