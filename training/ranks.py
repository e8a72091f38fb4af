"""Every rank of a run, seen from inside the trainer: the world size it really had, and each
rank's host, device and peak GPU memory, gathered at the end of training into one file.

Why: the trainer's saved log holds rank 0's memory only, while ranks differ (rank 0 logs and
saves, ZeRO-3 and FSDP shard unevenly); and a launch that starts fewer processes than asked
(``accelerate launch`` without ``--multi_gpu`` starts one on a machine without two GPUs)
shows only from inside. Global rank 0 writes ``ranks.json`` into the output folder; the
runner reads it into ``run.yml``.

Loaded by Axolotl as a plugin (the runner adds ``training.ranks.RankReportPlugin`` to every
config's ``plugins:``); the seq2seq trainer adds ``RankReport`` itself.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from datasets_fmt import atomic
from training.run_summary import PEAK_GIB, RANKS_FILE


class RankReport(TrainerCallback):
    """Peak GPU memory of this rank over the whole run, gathered from all ranks at its end."""

    def __init__(self) -> None:
        self.peak_gib = 0.0

    def _sample(self, logged: Any = None) -> None:
        """Axolotl resets rank 0's peak counter each time it logs (and logs the peak it read):
        take the counter before a log, and the logged figure."""
        import torch

        if torch.cuda.is_available():
            self.peak_gib = max(self.peak_gib, torch.cuda.max_memory_allocated() / 2**30)
        if logged is not None:
            self.peak_gib = max(self.peak_gib, float(logged))

    def on_step_end(self, args, state, control, **kwargs):
        self._sample()

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._sample((logs or {}).get(PEAK_GIB))

    def on_train_end(self, args, state, control, **kwargs):
        import torch

        self._sample()
        mine: dict[str, Any] = {
            "rank": args.process_index,
            "host": socket.gethostname(),
            "device": str(args.device),
        }
        if torch.cuda.is_available():
            mine["peak_gib"] = round(self.peak_gib, 2)
        ranks = [mine]
        if args.world_size > 1:  # every rank reaches the end of training: one collective
            ranks = [None] * args.world_size
            torch.distributed.all_gather_object(ranks, mine)
        if state.is_world_process_zero:
            atomic.write_json(
                Path(args.output_dir) / RANKS_FILE, {"world_size": args.world_size, "ranks": ranks}
            )


class RankReportPlugin(BasePlugin):
    """Axolotl plugin (``plugins: [training.ranks.RankReportPlugin]``) adding ``RankReport``."""

    def add_callbacks_post_trainer(self, cfg: Any, trainer: Any) -> list:
        return [RankReport()]
