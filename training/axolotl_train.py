"""Axolotl's train command (``python -m axolotl.cli.train config.yml``), with the recipe's
``seed`` applied before the model is built.

Why: Axolotl 0.19 creates the LoRA weights before anything seeds torch (transformers seeds in
``Trainer.__init__``, after the model exists), so two runs of one recipe started from
different random LoRA A matrices: the first loss matched, every later one drifted (up to
0.6% after 6 steps on CPU). Seeded here, a run repeats exactly. Several processes on CPU also
get their process group here, with the recipe's ``ddp_timeout`` (see ``start_cpu_process_group``).

    python -m training.axolotl_train config.yml     (what the runner launches; multi-GPU too)
"""

from __future__ import annotations

import runpy
import sys

from training.launch import read_run_config, start_cpu_process_group


def main() -> None:
    from transformers import set_seed

    config = read_run_config(sys.argv[1])
    set_seed(config["seed"])  # recipes/_base.yml sets it
    start_cpu_process_group(config)  # on CPU, or the recipe's ddp_timeout would not apply
    runpy.run_module("axolotl.cli.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
