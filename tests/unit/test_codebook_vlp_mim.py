"""Codebook-VLP's masked image modeling learns a planted task: the code of a masked token is given by a
visible neighbour's, and by nothing else. Tiny model built in code, trained by the real MIM loss; seconds."""

from __future__ import annotations

import torch

from align.methods.codebook_vlp.aligner import CodebookVLPCore, load_table, tokenize
from align.methods.codebook_vlp.objectives import IGNORE, mim_accuracy

TABLE = "toy:table-masked"
TOKENS, DIM, CLUSTERS = 16, 8, 8
MIM_ONLY = dict(itc=False, itm=False, mlm=False, codebook=True, mim=True, momentum=False, weights={"vq": 0.0},
                image_width=32, image_heads=2, image_layers=1, embed_dim=16, num_codes=CLUSTERS, queue_size=0)


def _paired_images(n: int, centres: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of ``TOKENS`` tokens in pairs (positions 2i, 2i+1): both tokens of a pair come from
    the same planted cluster, pairs draw their clusters independently and uniformly. Returns the tokens
    and each token's cluster. A masked token's cluster is thus known from its partner when the partner
    is visible, and from nothing when both are masked."""
    clusters = torch.randint(CLUSTERS, (n, TOKENS // 2), generator=g).repeat_interleave(2, dim=1)
    return centres[clusters] + 0.1 * torch.randn(n, TOKENS, DIM, generator=g), clusters


def _mim_accuracy(core: CodebookVLPCore, x: torch.Tensor, masked: torch.Tensor) -> float:
    """Share of the masked tokens whose code the MIM head, reading the image encoder's states of the
    masked input at each token's own position, predicts right (what MIM means, written out here rather
    than taken from the model so that a training-side misalignment shows up)."""
    with torch.no_grad():
        logits = core.mim_head(core.image_states(x, masked)[:, 1:])
        return float((logits.argmax(-1) == core.code_indices(x))[masked].float().mean())


def test_mim_learns_a_code_given_by_the_neighbour_and_no_more() -> None:
    """Trained with MIM alone on fresh paired images, the accuracy on held-out masked tokens rises far
    above the codes' marginal (the most frequent code's share, ~1/8) toward what the neighbours reveal,
    and does not pass that ceiling. Protects against: targets not aligned with the masked positions or
    with the states that predict them (e.g. ``~masked`` targets, an off-by-one past [CLS], codes of other
    tokens), which leave accuracy near the marginal; masking that never reaches training (then the head
    only ever sees real tokens); and a masked token leaking into the input (accuracy above the ceiling)."""
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(CLUSTERS, DIM, generator=g)
    ids, mask = tokenize(load_table(TABLE), ["a cat"] * 64, 8)
    torch.manual_seed(0)
    core = CodebookVLPCore(DIM, TOKENS, TABLE, **MIM_ONLY).train()
    fit_x, fit_clusters = _paired_images(256, centres, g)
    core.prepare(fit_x, tokens_per_batch=64 * TOKENS)
    codes = core.code_indices(fit_x)
    assert len({int(codes[fit_clusters == c].mode().values) for c in range(CLUSTERS)}) == CLUSTERS  # one per cluster

    opt = torch.optim.Adam([p for p in core.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(250):  # a fresh batch each step: no image can be memorised
        x, _ = _paired_images(64, centres, g)
        opt.zero_grad()
        core(x, ids, mask).backward()
        opt.step()
    trained = core.parts  # the training batches' own record (the history's mim_acc and mim_marginal)
    assert trained["mim_acc"] > trained["mim_marginal"] + 0.3, trained

    core.eval()
    x, clusters = _paired_images(256, centres, g)
    masked = torch.rand(len(x), TOKENS, generator=g).argsort(1) < round(core.mim_ratio * TOKENS)
    partner_visible = ~masked.view(len(x), -1, 2).flip(-1).reshape(len(x), TOKENS)
    ceiling = float(partner_visible[masked].float().mean()) * (1 - 1 / CLUSTERS) + 1 / CLUSTERS
    marginal = float(torch.bincount(core.code_indices(x)[masked]).max()) / int(masked.sum())
    accuracy = _mim_accuracy(core, x, masked)
    assert marginal < 0.2 and ceiling > 0.6  # the planted task leaves room between the two
    assert accuracy > marginal + 0.75 * (ceiling - marginal), (accuracy, marginal, ceiling)
    assert accuracy < ceiling + 0.05, (accuracy, ceiling)


def test_mim_accuracy_counts_masked_positions_only_against_the_most_frequent_code() -> None:
    targets = torch.tensor([2, 2, 2, 1, IGNORE, IGNORE])
    logits = torch.zeros(6, 4)
    logits[torch.arange(6), torch.tensor([2, 0, 2, 1, 3, 3])] = 1.0  # right on 3 of the 4 masked positions
    assert mim_accuracy(logits, targets, 4) == {"mim_acc": 0.75, "mim_marginal": 0.75}
    assert mim_accuracy(logits, torch.full((6,), IGNORE), 4) == {}
