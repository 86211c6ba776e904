"""VLAP's caption loss with the sequences packed into a few rows equals the padded batch's, on tiny
Gemma-shaped LMs, for both attention implementations that take a ready mask; elsewhere it is not used."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import align.methods.vlap.aligner as vlap
from align.methods.vlap.aligner import VLAPCore, load_table, tokenize_captions
from align.methods.vlap.packing import pack, packed_inputs, row_width
from align.text.toy import toy_gemma_table
from registered_tables import registered_tables  # tests/unit/registered_tables.py

GEMMA = "test:vlap-packing-gemma"  # registered for this module only (sliding window 64, like Gemma's 512)
CAPTIONS = ["a cat", "a very big dog on a mat", "bird", "the fish swims in the blue sea today", "x y",
            "two red squares", "a moon"] * 3


@pytest.fixture(scope="module", autouse=True)
def gemma_table() -> Iterator[None]:
    with registered_tables({GEMMA: (toy_gemma_table, "tiny random Gemma-3 causal LM, for VLAP's packing tests")},
                           (load_table,)):
        yield


def test_pack_places_every_sequence_once_inside_its_row() -> None:
    lengths = torch.tensor([7, 3, 9, 2, 5, 8, 1, 4])
    packing = pack(lengths, width=10)
    assert packing.rows == -(-int(lengths.sum()) // 10)  # these lengths fit without a spare row
    taken = torch.zeros(packing.rows, packing.width, dtype=torch.long)
    for n, r, s in zip(lengths.tolist(), packing.row.tolist(), packing.start.tolist()):
        assert s + n <= packing.width
        taken[r, s:s + n] += 1
    assert int(taken.max()) == 1 and int(taken.sum()) == int(lengths.sum())
    with pytest.raises(ValueError, match="does not fit"):
        pack(lengths, width=8)


def test_packed_inputs_attend_within_their_own_sequence_only() -> None:
    lengths = torch.tensor([3, 2, 4])
    sequences = torch.arange(3 * 4, dtype=torch.float32).view(3, 4, 1)
    packing = pack(lengths, width=5)
    inputs, positions, allowed, source = packed_inputs(sequences, lengths, packing)
    for i, n in enumerate(lengths.tolist()):
        r, s = int(packing.row[i]), int(packing.start[i])
        assert inputs[r, s:s + n, 0].tolist() == sequences[i, :n, 0].tolist()
        assert positions[r, s:s + n].tolist() == list(range(n))
        assert source[r, s:s + n].tolist() == [i * 4 + t for t in range(n)]
        block = allowed[r, 0, s:s + n, s:s + n]
        assert torch.equal(block, torch.ones(n, n, dtype=torch.bool).tril())  # causal inside the sequence
        assert int(allowed[r, 0, s:s + n].sum()) == n * (n + 1) // 2  # and nothing outside it
    pad = source < 0
    assert int(pad.sum()) == packing.positions - int(lengths.sum())
    for r, c in pad.nonzero().tolist():  # a padding position sees itself only (no empty softmax row)
        assert allowed[r, 0, c].nonzero().flatten().tolist() == [c]


def _losses(table: str, monkeypatch: pytest.MonkeyPatch, attention: str) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    ids, mask = tokenize_captions(load_table(table), CAPTIONS, 16)
    x = torch.randn(len(CAPTIONS), 16)
    core = VLAPCore(16, table)
    core.calibrate(x)
    lm = core.lm()
    monkeypatch.setattr(lm.config, "_attn_implementation", attention)
    prefix = core.project(x).detach().requires_grad_(True)
    calls: list[int] = []
    monkeypatch.setattr(vlap, "pack", lambda lengths, width: calls.append(width) or pack(lengths, width))
    packed = core.caption_loss(prefix, ids, mask)
    assert len(calls) == 1  # the packed path is the one taken
    (packed_grad,) = torch.autograd.grad(packed, prefix)
    with monkeypatch.context() as m:
        m.setattr(vlap, "row_width", lambda *_: None)  # the padded batch, as before packing
        padded = core.caption_loss(prefix, ids, mask)
    (padded_grad,) = torch.autograd.grad(padded, prefix)
    return packed.detach(), padded.detach(), packed_grad, padded_grad


@pytest.mark.parametrize("table", ["toy:table-causal", GEMMA])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_caption_loss_equals_the_padded_one(table: str, attention: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    packed, padded, packed_grad, padded_grad = _losses(table, monkeypatch, attention)
    assert torch.allclose(packed, padded, rtol=1e-5, atol=0)
    assert (packed_grad - padded_grad).norm() <= 1e-4 * padded_grad.norm()


def test_sequences_do_not_see_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the block mask the packed rows would leak: letting every position see its whole row must
    change the loss (so the equality above is the mask's doing)."""
    import align.methods.vlap.packing as packing

    packed, padded, *_ = _losses(GEMMA, monkeypatch, "sdpa")
    real = packing.packed_inputs

    def leaky(*args: object, **kwargs: object) -> tuple[torch.Tensor, ...]:
        inputs, positions, allowed, source = real(*args, **kwargs)
        return inputs, positions, torch.ones_like(allowed).tril(), source

    monkeypatch.setattr(vlap, "packed_inputs", leaky)
    leaked, *_ = _losses(GEMMA, monkeypatch, "sdpa")
    assert torch.allclose(packed, padded, rtol=1e-6, atol=0) and not torch.allclose(leaked, padded, rtol=1e-5, atol=0)


def test_packing_is_not_used_where_it_would_not_be_exact() -> None:
    lm = load_table(GEMMA).load_lm()  # sliding window 64
    lengths = torch.tensor([5, 9])
    assert row_width(lengths, lm) == 64
    assert row_width(torch.tensor([5, 65]), lm) is None  # a sequence longer than the window
    original = lm.config._attn_implementation
    try:
        lm.config._attn_implementation = "flash_attention_2"  # ignores ready 4D masks
        assert row_width(lengths, lm) is None
    finally:
        lm.config._attn_implementation = original
