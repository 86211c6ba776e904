"""VLAP on the tiny random causal LM (toy:table-causal) with synthetic features: seconds in total."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from align.errors import BadInputError
from align.methods.framework.base import load_aligner
from align.methods.vlap.aligner import VLAPAligner, VLAPCore, load_table, tokenize_captions
from align.registry import ALIGNERS

TABLE = "toy:table-causal"
CONCEPTS = "cat dog bird fish horse cow sheep car truck bus bike train plane boat house tree flower apple banana moon"
CONCEPTS = CONCEPTS.split()


def _data(n: int = 24, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(CONCEPTS), (n,), generator=g)
    return torch.randn(n, dim, generator=g), [f"a {CONCEPTS[i]}" for i in labels]


def _core(**kw: object) -> tuple[VLAPCore, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, caps = _data()
    ids, mask = tokenize_captions(load_table(TABLE), caps, 16)
    torch.manual_seed(0)
    return VLAPCore(x.shape[1], TABLE, **kw), x, ids, mask


def _steps(core: VLAPCore, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, n: int) -> list[dict]:
    opt = torch.optim.Adam(core.parameters(), lr=1e-2)
    parts = []
    for _ in range(n):
        opt.zero_grad()
        core(x, ids, mask).backward()
        opt.step()
        parts.append(dict(core.parts))
    return parts


def test_only_g_trains_and_frozen_parts_stay() -> None:
    core, x, ids, mask = _core()
    lm = core.lm()
    assert [n for n, p in core.named_parameters() if p.requires_grad] == ["g.weight", "g.bias"]
    assert not any(p.requires_grad for p in lm.parameters())
    lm_before = {k: v.clone() for k, v in lm.state_dict().items()}
    table_before, g_before = load_table(TABLE).weight.clone(), core.g.weight.detach().clone()
    _steps(core, x, ids, mask, 1)
    assert all(torch.equal(v, lm_before[k]) for k, v in lm.state_dict().items())
    assert torch.equal(load_table(TABLE).weight, table_before)
    assert not torch.equal(core.g.weight, g_before)
    assert set(core.state_dict()) == {"g.weight", "g.bias", "x_mean", "x_scale"}  # the frozen LM is not saved


@pytest.mark.parametrize("w_cap, w_map, off", [(0.0, 1.0, "l_cap"), (1.0, 0.0, "l_map")])
def test_each_loss_finite_falls_and_variants_skip_the_other(w_cap: float, w_map: float, off: str) -> None:
    """Each term alone (the assignment-only and caption-only variants) at eps=0.01 falls over 20 steps;
    the switched-off term is not computed (reported 0). Jointly, L_map's gradient (tau=0.01) dominates."""
    core, x, ids, mask = _core(w_cap=w_cap, w_map=w_map, eps=0.01)
    (on,) = {"l_cap", "l_map"} - {off}
    parts = _steps(core, x, ids, mask, 20)
    values = torch.tensor([p[on] for p in parts])
    assert torch.isfinite(values).all() and values[-1] < values[0] - 1e-3, values
    assert all(p[off] == 0.0 for p in parts)


def test_full_loss_finite() -> None:
    core, x, ids, mask = _core(eps=0.01)
    parts = _steps(core, x, ids, mask, 2)
    assert all(torch.isfinite(torch.tensor(list(p.values()))).all() and min(p.values()) > 0 for p in parts)


def test_calibrate_puts_prefixes_on_the_word_scale_and_centres_images() -> None:
    """Features with a large shared component: after calibrate, prefix norms match the vocabulary's row
    norm (within 20%) and the images no longer share one direction."""
    core, x, _, _ = _core()
    x = 20.0 + 3.0 * x  # a big common vector, as pooled ReLU features have
    with torch.no_grad():
        before = F.normalize(core.project(x).mean(1), dim=-1)
        core.calibrate(x)
        after = core.project(x).mean(1)
    assert float(after.norm(dim=1).mean()) == pytest.approx(core.word_norm, rel=0.2)
    unit = F.normalize(after, dim=-1)
    assert (before @ before.T).mean() > 0.9 and (unit @ unit.T).mean().abs() < 0.2


def test_caption_loss_scores_caption_tokens_only() -> None:
    """The kept-logits loss equals the NLL of every caption token (and <eos>) from the full logits."""
    core, x, ids, mask = _core()
    lm = core.lm()
    with torch.no_grad():
        context = core._context(lm, core.project(x))
        inputs = torch.cat([context, lm.get_input_embeddings()(ids)], dim=1)
        attention = torch.cat([mask.new_ones(context.shape[:2]), mask], dim=1)
        full = lm(inputs_embeds=inputs, attention_mask=attention).logits.log_softmax(-1)
        c = context.shape[1]
        nll = -full[:, c - 1:-1].gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        expected = (nll * mask).sum() / mask.sum()
        assert torch.allclose(core.caption_loss(core.project(x), ids, mask), expected, atol=1e-5)


def test_text_feature_is_the_table_mean_encoder() -> None:
    """VLAP's ``t`` equals ``table:<table>`` text-encoder features, so baselines can be fitted in VLAP's space."""
    from align.registry import TEXT_ENCODERS

    x, caps = _data()
    aligner = VLAPAligner(table=TABLE, w_cap=0.0, max_epochs=1, batch_size=8).fit_captions(x, caps)
    encoder = TEXT_ENCODERS.create(aligner.text_encoder_name)
    assert aligner.text_input == "strings"
    assert torch.allclose(aligner.encode_text(caps), encoder.encode_text(caps), atol=1e-6)


def _planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image features made by inverting a planted linear map A [D, d_img]: A x ≈ unit W[concept]."""
    table = load_table(TABLE)
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([table.encode_ids(c)[0] for c in CONCEPTS])
    A = torch.randn(table.embed_dim, 48, generator=torch.Generator().manual_seed(123)) / 48**0.5
    labels = torch.randint(len(CONCEPTS), (n,), generator=g)
    target = F.normalize(table.weight[ids[labels]], dim=-1)
    x = target @ torch.linalg.pinv(A).T + 0.05 * torch.randn(n, 48, generator=g)
    return x, labels, ids


def test_planted_map_recovered_by_assignment_not_by_captioning_alone() -> None:
    """Same data, steps, seed and lr: L_map alone vs L_cap alone (LiMBeR-style). Score: the nearest
    word of g(x) over the whole assignment vocabulary (996 rows) and among the 20 concepts, held out."""
    x, labels, ids = _planted(120, seed=0)
    x_test, labels_test, _ = _planted(100, seed=1)
    captions = [CONCEPTS[i] for i in labels]
    table = load_table(TABLE)
    words = torch.tensor(table.word_ids)
    unit = F.normalize(table.weight, dim=-1)
    scores = {}
    for name, weights in (("map", dict(w_cap=0.0, w_map=1.0)), ("cap", dict(w_cap=1.0, w_map=0.0))):
        aligner = VLAPAligner(table=TABLE, lr=1e-2, batch_size=40, max_epochs=8, seed=0, **weights)
        v = F.normalize(aligner.fit_captions(x, captions).encode_image(x_test), dim=-1)
        vocab_acc = (words[(v @ unit[words].T).argmax(-1)] == ids[labels_test]).float().mean().item()
        concept_acc = ((v @ unit[ids].T).argmax(-1) == labels_test).float().mean().item()
        scores[name] = (vocab_acc, concept_acc)
    print("planted map (vocab acc, concept acc):", scores)
    assert scores["map"][1] >= 0.8 and scores["cap"][1] <= 0.2  # chance among concepts: 0.05
    assert scores["map"][0] > scores["cap"][0]


@pytest.fixture(scope="module")
def fitted() -> VLAPAligner:
    x, caps = _data()
    return VLAPAligner(table=TABLE, max_epochs=2, batch_size=12).fit_captions(x, caps)


def test_caption_and_nearest_words(fitted: VLAPAligner) -> None:
    x, _ = _data(n=3)
    captions = fitted.caption(x, max_new_tokens=4)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    tokens = set(load_table(TABLE).tokens)
    near = fitted.nearest_words(x, top=5)
    assert len(near) == 3 and all(len(row) == 5 and set(row) <= tokens for row in near)
    assert fitted.encode_image(x).shape == (3, 32)
    assert fitted.encode_text_strings(["a cat", "dog"]).shape == (2, 32)
    assert set(fitted.history) >= {"train_loss", "l_cap", "l_map"}


def test_save_load_round_trip(fitted: VLAPAligner, tmp_path) -> None:
    fitted.save(tmp_path / "vlap")
    loaded = load_aligner(tmp_path / "vlap")
    assert isinstance(loaded, VLAPAligner) and loaded.hparams == fitted.hparams
    for key, value in fitted.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    x, _ = _data(n=5)
    assert torch.equal(loaded.encode_image(x), fitted.encode_image(x))


def test_registry_and_bad_inputs(fitted: VLAPAligner) -> None:
    assert isinstance(ALIGNERS.create("vlap", table=TABLE), VLAPAligner)
    x, caps = _data()
    cases = [
        lambda: VLAPAligner(table=TABLE).fit(x, torch.randn(len(x), 8)),  # sentence features
        lambda: VLAPAligner(table=TABLE, max_epochs=1).fit_captions(x, caps[:-1]),
        lambda: VLAPAligner(table=TABLE).fit_captions(x, "a cat"),
        lambda: VLAPAligner(table=TABLE, w_cap=0, w_map=0),
        lambda: VLAPAligner(table=TABLE, prior="zipf"),
        lambda: VLAPAligner(table="toy:table-masked", max_epochs=1).fit_captions(x, caps),
        lambda: fitted.encode_text(torch.randn(2, 32)),
        lambda: fitted.encode_image(torch.randn(2, 7)),
        lambda: fitted.nearest_words(x, top=0),
        lambda: fitted.caption(x, max_new_tokens=0),
    ]
    for case in cases:
        with pytest.raises(BadInputError) as err:
            case()
        assert "\n" not in str(err.value)


def test_checkpoint_resumes_exactly(tmp_path) -> None:
    """Stop after 2 epochs, resume from last.ckpt to 4: the same layer and loss history as 4 straight epochs.
    (A constant rate: a cosine schedule depends on max_epochs, so a 2-epoch fit is not the first half of a
    4-epoch one; test_resume_after_kill resumes the default schedule after a kill.)"""
    x, caps = _data()
    hp = dict(table=TABLE, lr=1e-2, batch_size=8, seed=0, schedule="constant", warmup_fraction=0.0)
    full = VLAPAligner(**hp, max_epochs=4).fit_captions(x, caps)
    VLAPAligner(**hp, max_epochs=2, checkpoint_dir=str(tmp_path)).fit_captions(x, caps)
    assert (tmp_path / "last.ckpt").exists()
    resumed = VLAPAligner(**hp, max_epochs=4, checkpoint_dir=str(tmp_path))
    resumed.fit_captions(x, caps, ckpt_path=tmp_path / "last.ckpt")
    assert all(torch.allclose(resumed.state_dict()[k], v) for k, v in full.state_dict().items())
    assert resumed.history["l_cap"] == pytest.approx(full.history["l_cap"])


def _own_word_mass(targets: torch.Tensor, vocab: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over captions of the target mass on the caption's own tokens."""
    own = (vocab[None, :, None] == (ids * mask - (1 - mask))[:, None, :]).any(-1).float()  # [B, K]
    return float((targets * own).sum(-1).mean())


def test_assignment_targets_concentrate_on_the_captions_own_words() -> None:
    """A vocabulary of 996 words against 8 captions. Per-batch OT with a uniform marginal over every word
    (the draft's setting, which kept VLAP near chance on emoji) must hand each caption ~125 words, so
    its own two words get a sliver of its target; the defaults (caption words joined by frequent ones,
    the captions' word counts as marginal, OT over every fit caption) put most of it there."""
    from align.methods.vlap.vocabulary import caption_tokens, row_prior, vocabulary
    from align.text.table_mean import special_mask

    table = load_table(TABLE)
    x, caps = _data(n=8)
    ids, mask = tokenize_captions(table, caps, 16)
    diluted = VLAPCore(x.shape[1], TABLE, prior="uniform", vocab_subset=None, ot_columns="batch")
    text = diluted.text_feature(ids, mask)
    q_diluted = diluted.assignment(text.clone(), text).q_text
    assert len(diluted.vocab_ids) >= 100 * len(caps)
    words = caption_tokens(ids, mask, special_mask(table))
    vocab = vocabulary(table, "captions", 2000, words)
    core = VLAPCore(x.shape[1], TABLE, ot_columns="all", vocab_ids=vocab.tolist(),
                    prior_weights=row_prior(table, vocab, "captions", words).tolist())
    core.calibrate(x, ids, mask)
    assert len(core.vocab_ids) >= 100 * len(caps) and core.text_targets.shape == (len(caps), len(vocab))
    diluted_mass = _own_word_mass(q_diluted, diluted.vocab_ids, ids, mask)
    concentrated = _own_word_mass(core.text_targets, core.vocab_ids, ids, mask)
    print(f"target mass on the caption's own words: diluted {diluted_mass:.3f}, defaults {concentrated:.3f}")
    assert diluted_mass < 0.2 and concentrated > 0.5


def test_grid_prefix_maps_each_pooled_token_and_p1_is_the_pooled_feature() -> None:
    """prefix_source='grid': P pooled grid tokens, each through the same Linear(d, D); P = 1 equals the pooled
    path on the grid's mean; the caption loss runs on the P-token prefix; the runner is told to hand tokens."""
    torch.manual_seed(0)
    tokens = torch.randn(6, 9, 16)
    grid = VLAPCore(16, TABLE, prefix_source="grid", num_prefix_tokens=4)
    assert grid.project(tokens).shape == (6, 4, 32) and grid.g.out_features == 32
    one, pooled = VLAPCore(16, TABLE, prefix_source="grid"), VLAPCore(16, TABLE)
    pooled.load_state_dict(one.state_dict())
    assert torch.allclose(one.project(tokens), pooled.project(tokens.mean(1)), atol=1e-6)
    _, caps = _data(n=6)
    aligner = VLAPAligner(table=TABLE, prefix_source="grid", num_prefix_tokens=4, max_epochs=1, batch_size=6)
    assert aligner.image_input_spec().kind == "tokens" and VLAPAligner(table=TABLE).image_input_spec().kind == "pooled"
    aligner.fit_captions(tokens, caps)
    assert aligner.encode_image(tokens).shape == (6, 32) and aligner.history["l_cap"][0] > 0
    for bad in (torch.randn(6, 16), torch.randn(6, 3, 16), torch.randn(6, 9, 8)):
        with pytest.raises(BadInputError):
            aligner.encode_image(bad)
    with pytest.raises(BadInputError):
        VLAPAligner(table=TABLE, prefix_source="grid", num_prefix_tokens=3)


def test_bfloat16_lm_gives_the_float32_caption_loss() -> None:
    core, x, ids, mask = _core()
    fast = VLAPCore(x.shape[1], TABLE, lm_precision="bfloat16")
    fast.load_state_dict(core.state_dict())
    with torch.no_grad():
        exact, approx = core.caption_loss(core.project(x), ids, mask), fast.caption_loss(fast.project(x), ids, mask)
    assert torch.isfinite(approx) and float(approx) == pytest.approx(float(exact), rel=0.02)


def test_validation_r1_per_epoch_and_early_stopping() -> None:
    x, caps = _data(n=40)
    aligner = VLAPAligner(table=TABLE, w_cap=0.0, max_epochs=30, batch_size=8, val_fraction=0.25, patience=2)
    aligner.fit_captions(x, caps)
    r1 = aligner.history["val_r1"]
    assert len(r1) == len(aligner.history["val_loss"]) < 30 and all(0 <= v <= 1 for v in r1)
    with pytest.raises(BadInputError):
        VLAPAligner(table=TABLE, patience=2)  # nothing to stop on


@pytest.mark.parametrize("units, chosen", [("x86 avx512_bf16", "bfloat16"), (None, "float32")])
def test_auto_lm_precision_is_resolved_and_recorded(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                                    units: str | None, chosen: str) -> None:
    """``lm_precision="auto"`` becomes what the device does well (capability mocked), is said on stderr,
    and the hyper-parameters (hence the fit's identity) hold the choice, never ``auto``."""
    import align.methods.vlap.aligner as vlap
    import align.precision

    monkeypatch.setattr(align.precision, "native_bfloat16", lambda device="cpu": units)
    vlap._auto_lm_precision.cache_clear()
    aligner = VLAPAligner(table=TABLE, lm_precision="auto")
    assert aligner.hparams["lm_precision"] == chosen
    assert aligner.hparams == VLAPAligner(table=TABLE, lm_precision=chosen).hparams
    assert f"lm_precision auto -> {chosen}" in capsys.readouterr().err
    vlap._auto_lm_precision.cache_clear()
