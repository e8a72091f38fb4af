"""The benchmark's plain packed loop: rows filled first-fit, and each dialogue in a row
scored exactly as it is alone (block-diagonal mask, positions restarting)."""

from dataclasses import dataclass

import pytest

from benchmarks.plain_packing import collate_packed, pack_first_fit


@dataclass
class Enc:
    input_ids: list[int]
    labels: list[int]


def enc(n: int, start: int = 5) -> Enc:
    ids = [start + i % 50 for i in range(n)]
    return Enc(ids, [-100] * (n // 2) + ids[n // 2 :])


def test_rows_are_filled_first_fit_and_keep_every_sample_once():
    samples = [enc(n) for n in (6, 5, 3, 2, 4, 1)]
    rows = pack_first_fit(samples, width=8)
    assert [[len(e.input_ids) for e in row] for row in rows] == [[6, 2], [5, 3], [4, 1]]
    with pytest.raises(ValueError, match="does not fit a row of 8"):
        pack_first_fit([enc(9)], width=8)


def test_each_packed_sample_gets_the_loss_it_gets_alone(tiny_llama):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation="sdpa").eval()
    samples = [enc(11, 7), enc(9, 30), enc(7, 60)]
    batch = collate_packed([samples], width=32, pad_id=0)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        start = 0
        for s in samples:
            n = len(s.input_ids)
            alone = model(input_ids=torch.tensor([s.input_ids])).logits[0]
            assert torch.allclose(logits[start : start + n], alone, atol=1e-4), (
                f"sample at {start} sees others"
            )
            start += n
        loss = model(**batch).loss
    assert torch.isfinite(loss)
    labels = torch.tensor([x for s in samples for x in s.labels])
    expected = F.cross_entropy(logits[: start - 1], labels[1:start], ignore_index=-100)
    # the model's own loss over the packed row: every label counted once, padding never
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
