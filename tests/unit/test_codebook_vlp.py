"""Codebook-VLP on the tiny random masked LM (toy:table-masked) and synthetic spatial tokens: seconds in total."""

from __future__ import annotations

import pytest
import torch

from align.errors import BadInputError
from align.methods.framework.base import load_aligner
from align.methods.codebook_vlp.aligner import (
    OBJECTIVES, CodebookVLPAligner, CodebookVLPCore, check_tokens, load_table, tokenize,
)
from align.methods.codebook_vlp.objectives import (
    IGNORE, caption_keys, hard_negatives, mim_mask, mim_targets, mlm_mask, soft_targets,
)
from align.registry import ALIGNERS

TABLE = "toy:table-masked"
CONCEPTS = "cat dog bird fish horse cow sheep car".split()
SMALL = dict(table=TABLE, image_width=16, image_heads=2, embed_dim=16, num_codes=8, code_dim=8, queue_size=32)


def _data(n: int = 32, tokens: int = 16, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Images of 8 concepts: each concept is a fixed layout of 4 token prototypes plus a concept-wide
    offset (and noise), so codes, masked tokens and captions are all predictable from the data."""
    g = torch.Generator().manual_seed(seed)
    prototypes = 3 * torch.randn(4, dim, generator=g)
    offsets = 2 * torch.randn(len(CONCEPTS), 1, dim, generator=g)
    layouts = torch.randint(4, (len(CONCEPTS), tokens), generator=g)
    concept = torch.arange(n) % len(CONCEPTS)
    x = prototypes[layouts[concept]] + offsets[concept] + 0.1 * torch.randn(n, tokens, dim, generator=g)
    return x, [f"a {CONCEPTS[c]}" for c in concept]


def _core(**kw: object) -> tuple[CodebookVLPCore, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, caps = _data()
    ids, mask = tokenize(load_table(TABLE), caps, 16)
    args = {k: v for k, v in SMALL.items() if k != "table"} | kw
    torch.manual_seed(0)
    return CodebookVLPCore(x.shape[2], x.shape[1], TABLE, **args).train(), x, ids, mask


def _train(core: CodebookVLPCore, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, steps: int,
           lr: float = 3e-3) -> list[dict[str, float]]:
    opt = torch.optim.Adam([p for p in core.parameters() if p.requires_grad], lr=lr)
    parts = []
    for _ in range(steps):
        opt.zero_grad()
        core(x, ids, mask).backward()
        opt.step()
        parts.append(dict(core.parts))
    return parts


ALONE = {  # one objective on (MIM needs the codebook for its targets; its VQ weight is 0 here)
    # ITC keeps momentum and queue; distillation off, because its soft targets (40% of the mass from the
    # near-uniform similarities of a barely trained momentum model) put the loss floor near its start
    "itc": dict(itc=True, itm=False, mlm=False, codebook=False, mim=False, distill_alpha=0.0, momentum_decay=0.9),
    # ITM keeps ITC, the source of its hard negatives: from random toy encoders ITM alone sits at the
    # prior (0.64 nats) for hundreds of steps, since its [CLS] inputs barely differ between images
    "itm": dict(itc=True, itm=True, mlm=False, codebook=False, mim=False),
    "mlm": dict(itc=False, itm=False, mlm=True, codebook=False, mim=False),
    # codes of projected encoder states: with codes of the frozen tokens (the default) nothing is trained
    "vq": dict(itc=False, itm=False, mlm=False, codebook=True, mim=False, code_source="states"),
    "mim": dict(itc=False, itm=False, mlm=False, codebook=True, mim=True, weights={"vq": 0.0}),
}


STEPS_LR = {"itc": (60, 3e-3), "itm": (120, 3e-3), "mlm": (60, 1e-2), "vq": (60, 3e-3), "mim": (60, 1e-2)}


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_is_finite_and_falls_on_a_toy_set(objective: str) -> None:
    core, x, ids, mask = _core(**ALONE[objective])
    steps, lr = STEPS_LR[objective]
    parts = _train(core, x, ids, mask, steps=steps, lr=lr)
    values = torch.tensor([p[objective] for p in parts])
    assert torch.isfinite(values).all()
    assert values[-3:].mean() < 0.8 * values[2:5].mean(), values.tolist()  # from step 2: the queue is full
    switched_on = {"vq" if k == "codebook" else k for k, on in ALONE[objective].items() if on is True}
    for other in set(OBJECTIVES) - switched_on:
        assert all(p[other] == 0.0 for p in parts)  # switched off: not computed


def test_itc_without_momentum_or_queue_falls_too() -> None:
    core, x, ids, mask = _core(**ALONE["itc"], momentum=False, queue_size=0)
    assert not hasattr(core, "image_encoder_m")
    values = [p["itc"] for p in _train(core, x, ids, mask, steps=60)]
    assert values[-1] < 0.8 * values[0]


def test_all_objectives_together_fall() -> None:
    core, x, ids, mask = _core()
    parts = _train(core, x, ids, mask, steps=30)
    for key in OBJECTIVES:
        assert parts[-1][key] > 0 and torch.isfinite(torch.tensor(parts[-1][key]))
    total = [sum(p[k] for k in OBJECTIVES) for p in parts]
    assert sum(total[-3:]) < sum(total[2:5])


def test_without_codebook_and_mim_the_model_has_neither() -> None:
    core, x, ids, mask = _core(codebook=False, mim=False)
    assert core.codebook is None and not hasattr(core, "mim_head")
    core(x, ids, mask)
    assert core.parts["vq"] == 0.0 and core.parts["mim"] == 0.0 and core.parts["itc"] > 0


# ---------------------------------------------------------------------- MIM targets and masking


def test_mim_targets_are_the_codes_of_masked_tokens_only() -> None:
    torch.manual_seed(0)
    codes = torch.randint(8, (5, 16))
    masked = mim_mask(5, 16, 0.4)
    assert (masked.sum(1) == round(0.4 * 16)).all()
    targets = mim_targets(codes, masked)
    assert torch.equal(targets[masked], codes[masked])
    assert (targets[~masked] == IGNORE).all()


def test_mim_loss_depends_on_masked_tokens_codes_only() -> None:
    """End to end through the model: changing the target code of a *visible* token leaves the MIM loss
    unchanged; changing that of a *masked* token changes it."""
    core, x, ids, mask = _core()
    core.eval().requires_grad_(False)
    embedded = core.image_encoder.embed(x)
    text = core.text_encoder(ids, mask)
    codes = torch.randint(8, (len(x), x.shape[1]), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    masked = mim_mask(len(x), x.shape[1], core.mim_ratio)

    def loss(c: torch.Tensor) -> float:
        torch.manual_seed(5)  # the same mask inside _mim
        return float(core._mim(x, embedded, c, text, mask))

    visible, hidden = codes.clone(), codes.clone()
    visible[~masked] = (visible[~masked] + 1) % 8
    row, col = masked.nonzero()[0].tolist()
    hidden[row, col] = (hidden[row, col] + 1) % 8
    assert loss(visible) == loss(codes)
    assert loss(hidden) != loss(codes)


def test_mim_targets_come_from_the_momentum_encoder_when_there_is_one() -> None:
    core, x, ids, mask = _core(code_source="states")
    _train(core, x, ids, mask, steps=3)  # online and momentum encoders now differ
    with torch.no_grad():
        online = core.codebook.assign(core.code_proj(core.image_states(x)[:, 1:]))
        slow = core.codebook.assign(core.code_proj(core.image_encoder_m(x)[:, 1:]))
        targets = core._mim_codes(x, online)
    assert not torch.equal(online, slow)  # so the check below can tell the two apart
    assert torch.equal(targets, slow)
    plain, x, ids, mask = _core(momentum=False, code_source="states")
    assert torch.equal(plain._mim_codes(x, online), online)


def test_mlm_masks_real_words_only_and_at_least_one_per_caption() -> None:
    table = load_table(TABLE)
    ids, mask = tokenize(table, ["a cat", "a dog with a red apple", "sun"], 16)
    special = torch.zeros(table.vocab_size, dtype=torch.bool)
    special[table.special_ids] = True
    torch.manual_seed(0)
    inputs, labels = mlm_mask(ids, mask, special, 0.15, table.tokenizer.mask_token_id, table.vocab_size)
    chosen = labels != IGNORE
    assert (chosen.sum(1) >= 1).all()
    assert not special[ids[chosen]].any() and mask[chosen].all()  # never [CLS]/[SEP]/[PAD]
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_equal_captions_share_a_key_whatever_the_padding() -> None:
    table = load_table(TABLE)
    a_ids, a_mask = tokenize(table, ["a cat", "a dog"], 16)
    b_ids, b_mask = tokenize(table, ["a dog with a red apple", "a cat"], 16)
    a, b = caption_keys(a_ids, a_mask), caption_keys(b_ids, b_mask)
    assert a[0] == b[1] and a[1] != a[0] and b[0] != b[1]
    targets = soft_targets(a, torch.cat([a, b]))
    assert torch.allclose(targets[0], torch.tensor([0.5, 0, 0, 0.5]))


def test_hard_negatives_avoid_same_caption_and_follow_similarity() -> None:
    keys = torch.tensor([1, 1, 2, 3])
    similarity = torch.full((4, 4), -50.0)
    similarity[0, 3] = similarity[1, 2] = similarity[2, 0] = similarity[3, 1] = 50.0
    similarity[0, 1] = 100.0  # the most similar text of image 0 has its caption: not a negative
    torch.manual_seed(0)
    neg_text, neg_image = hard_negatives(similarity, keys)
    assert neg_text.tolist() == [3, 2, 0, 1]
    assert all(keys[i] != keys[j] for i, j in enumerate(neg_image.tolist()))
    same = torch.tensor([7, 7, 7])  # one caption for all: falls back to any other row
    neg_text, _ = hard_negatives(None, same)
    assert all(i != j for i, j in enumerate(neg_text.tolist()))


def test_momentum_encoder_trails_the_online_one_and_queue_wraps() -> None:
    core, x, ids, mask = _core(queue_size=48)
    before = core.image_proj_m.weight.clone()
    _train(core, x, ids, mask, steps=2)
    online, slow = core.image_proj.weight, core.image_proj_m.weight
    assert not torch.equal(slow, before) and not torch.equal(slow, online)
    assert int(core.queue_ptr) == (2 * len(x)) % 48 and (core.key_queue >= 0).all()


# ---------------------------------------------------------------------- the aligner


def test_aligner_fits_through_lightning_and_reloads(tmp_path) -> None:  # noqa: ANN001
    x, caps = _data()
    aligner = ALIGNERS.create("codebook_vlp", **SMALL, max_epochs=3, batch_size=16, seed=0)
    aligner.fit_captions(x, caps)
    assert set(OBJECTIVES) <= set(aligner.history) and len(aligner.history["mim"]) == 3
    images, texts = aligner.encode_image(x), aligner.encode_text_strings(caps)
    assert images.shape == texts.shape == (len(x), 16)
    assert torch.allclose(images.norm(dim=1), torch.ones(len(x)), atol=1e-5)
    usage = aligner.code_usage(x)
    assert usage["num_codes"] == 8 and usage["used_codes"] + usage["dead_codes"] == 8
    assert aligner.code_indices(x).shape == x.shape[:2]
    assert aligner.itm_scores(x[:4], caps[:4]).shape == (4,)
    aligner.save(tmp_path / "model")
    again = load_aligner(tmp_path / "model")
    assert torch.equal(again.encode_image(x), images)
    assert torch.equal(again.encode_text_strings(caps), texts)


def test_same_seed_same_model() -> None:
    x, caps = _data()
    a = CodebookVLPAligner(**SMALL, max_epochs=1, batch_size=16, seed=3).fit_captions(x, caps)
    b = CodebookVLPAligner(**SMALL, max_epochs=1, batch_size=16, seed=3).fit_captions(x, caps)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("bad, match", [
    (dict(mim=True, codebook=False), "mim=true needs codebook"),
    (dict(itc=False, itm=False, mlm=False, codebook=False, mim=False), "nothing would be trained"),
    (dict(codebook_update="kmeans"), "codebook_update"),
    (dict(mim_ratio=1.5), "mim_ratio"),
    (dict(image_width=10, image_heads=4), "image_width"),
    (dict(weights={"itx": 1.0}), "weights"),
    (dict(batch_size=1), "batch_size"),
])
def test_bad_hyper_parameters_are_refused(bad: dict, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        CodebookVLPAligner(**(SMALL | bad))


def test_bad_inputs_get_one_line_errors() -> None:
    x, caps = _data()
    aligner = CodebookVLPAligner(**SMALL, max_epochs=0)
    with pytest.raises(BadInputError, match=r"\[N, T, D\]"):
        aligner.fit_captions(x.mean(1), caps)
    with pytest.raises(BadInputError, match="32 images but 31 captions"):
        aligner.fit_captions(x, caps[:-1])
    with pytest.raises(BadInputError, match="caption strings"):
        aligner.fit(x, torch.randn(32, 4))
    bad = x.clone()
    bad[3, 2, 1] = float("nan")
    with pytest.raises(BadInputError, match="image 3"):
        check_tokens(bad, "tokens")
    aligner.fit_captions(x, caps)
    with pytest.raises(BadInputError, match=r"expects \[N, 16, 8\]"):
        aligner.encode_image(x[:, :10])
    with pytest.raises(BadInputError, match="caption strings"):
        aligner.encode_text(torch.randn(2, 16))
    assert torch.equal(aligner.encode_text(caps[:3]), aligner.encode_text_strings(caps[:3]))


def test_itm_at_the_batchs_share_of_matches_scores_the_prior_loss() -> None:
    """A matching head that always predicts the batch's share of matched pairs scores ``itm_prior_loss``: the
    value the study reads ITM's training loss against (re-ranking by a head at it is re-ranking by chance)."""
    from align.methods.codebook_vlp.objectives import ITM_NEGATIVES_PER_MATCH, itm_prior_loss

    core, x, ids, mask = _core(**ALONE["itm"])
    share = 1 / (1 + ITM_NEGATIVES_PER_MATCH)

    class Constant(torch.nn.Module):
        def forward(self, states: torch.Tensor) -> torch.Tensor:
            return torch.log(torch.tensor([1 - share, share])).expand(len(states), 2)

    core.itm_head = Constant()
    core(x, ids, mask)
    assert core.parts["itm"] == pytest.approx(itm_prior_loss(), abs=1e-6)
    assert itm_prior_loss() == pytest.approx(0.6365, abs=1e-4)  # one match to two hard negatives
