"""Packed rows for the plain training loop of the benchmark, without Axolotl.

Why: to tell what packing and batching give from what kernels give, the plain
transformers + PEFT loop must see the recipe's rows: several dialogues per row, each
attending only to itself. Plain transformers does that with a block-diagonal 4-D attention
mask and positions that restart at every dialogue, which is what this builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Encoded(Protocol):
    input_ids: list[int]
    labels: list[int]


def pack_first_fit(encodings: Sequence[Encoded], width: int) -> list[list[Encoded]]:
    """First-fit into rows of ``width`` positions, in the given order (as multipack bins do)."""
    rows: list[list[Encoded]] = []
    room: list[int] = []
    for enc in encodings:
        n = len(enc.input_ids)
        if n > width:
            raise ValueError(f"a sample of {n} tokens does not fit a row of {width}: truncate it first")
        slot = next((i for i, free in enumerate(room) if free >= n), None)
        if slot is None:
            rows.append([])
            room.append(width)
            slot = len(rows) - 1
        rows[slot].append(enc)
        room[slot] -= n
    return rows


def collate_packed(rows: Sequence[Sequence[Encoded]], width: int, pad_id: int) -> dict[str, Any]:
    """Tensors for ``model(**batch)``: input_ids, labels, position_ids and a boolean
    attention mask [rows, 1, width, width], True where a position may attend. Padding
    attends to itself only (a row of all False would give NaN in softmax) and has no loss."""
    import torch

    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.eye(width, dtype=torch.bool).repeat(len(rows), 1, 1, 1)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    for r, row in enumerate(rows):
        start = 0
        for enc in row:
            end = start + len(enc.input_ids)
            ids[r, start:end] = torch.tensor(enc.input_ids)
            labels[r, start:end] = torch.tensor(enc.labels)
            positions[r, start:end] = torch.arange(end - start)
            mask[r, 0, start:end, start:end] = causal[: end - start, : end - start]
            start = end
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "attention_mask": mask}
