"""Contrastive (CLIP/LiT-style) aligner: planted pairs recovered, training curve, seeding, modes,
save/load and Lightning checkpoints, one-line errors. Small data and few epochs: seconds in all."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from scipy.stats import ortho_group

from align.errors import BadInputError
from align.eval.retrieval import evaluate_retrieval
from align.methods.framework.base import Aligner, load_aligner
from align.methods.contrastive import ContrastiveAligner
from align.registry import ALIGNERS

IMAGE_DIM, TEXT_DIM, LATENT = 24, 16, 8
FAST = dict(batch_size=64, max_epochs=15, lr=1e-2)  # 4 steps an epoch on 256 pairs


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These matrices are tiny: one thread avoids OpenMP stalls when the CPU cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def planted(rows: int, seed: int, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs sharing an 8-d latent: images embed it in 24-d, texts embed a rotation of it in 16-d;
    both sides get independent noise. Maps are fixed, rows differ by ``seed``."""
    g = torch.Generator().manual_seed(100)
    to_image, to_text = torch.randn(LATENT, IMAGE_DIM, generator=g), torch.randn(LATENT, TEXT_DIM, generator=g)
    rotate = torch.from_numpy(ortho_group.rvs(LATENT, random_state=101)).float()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, LATENT, generator=g)
    images = z @ to_image + noise * torch.randn(rows, IMAGE_DIM, generator=g) + 2.0  # an offset to standardise away
    texts = z @ rotate @ to_text + noise * torch.randn(rows, TEXT_DIM, generator=g)
    return images, texts


def recall_at_1(aligner: Aligner, images: torch.Tensor, texts: torch.Tensor) -> float:
    metrics = evaluate_retrieval(aligner.encode_image(images), aligner.encode_text(texts), torch.arange(len(images)),
                                 ks=(1,))
    return metrics["image_retrieval_recall@1"]


@pytest.fixture(scope="module")
def train() -> tuple[torch.Tensor, torch.Tensor]:
    return planted(256, 0)


@pytest.fixture(scope="module")
def test() -> tuple[torch.Tensor, torch.Tensor]:
    return planted(200, 1)


@pytest.fixture(scope="module")
def fitted(train: tuple[torch.Tensor, torch.Tensor]) -> ContrastiveAligner:
    return ContrastiveAligner(**FAST).fit(*train)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- registry and defaults


def test_registered_with_metadata_and_lazy_lightning() -> None:
    meta = ALIGNERS.meta("contrastive")
    assert "InfoNCE" in meta.description and "LiT" in meta.citation and "CLIP" in meta.citation
    assert ALIGNERS.create("contrastive").hparams["heads"] == "image"
    # registering the aligner must not import Lightning (seconds on every CLI call): no top-level import
    import align.methods.contrastive as module

    tree = ast.parse(Path(module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [name for name in names if "lightning" in name]


def test_config_file_holds_the_defaults_as_a_bench_entry() -> None:
    import yaml

    from align.bench.plan.config import _aligner

    path = Path(__file__).parents[2] / "configs" / "aligners" / "contrastive.yaml"
    spec = _aligner(yaml.safe_load(path.read_text()), str(path), "aligners[0]")
    defaults = ContrastiveAligner().hparams
    # every default but the seed, which `align bench` supplies from its own seeds (the run options included)
    assert spec.name == "contrastive" and spec.hparams == {k: v for k, v in defaults.items() if k != "seed"}
    lines = path.read_text().splitlines()
    for key in spec.hparams:  # each hparam has a comment line right above it
        assert lines[lines.index(next(l for l in lines if l.startswith(f"  {key}:"))) - 1].startswith("  # ")


# ---------------------------------------------------------------- learning


def test_recovers_planted_pairs_far_above_chance_and_untrained(fitted, test) -> None:
    untrained = ContrastiveAligner(**{**FAST, "max_epochs": 0}).fit(*planted(256, 0))
    trained_r1, untrained_r1 = recall_at_1(fitted, *test), recall_at_1(untrained, *test)
    assert trained_r1 > 0.8  # chance is 1/200 (measured: 0.975)
    assert trained_r1 > untrained_r1 + 0.7  # random heads (measured: 0.005)
    assert untrained.history["train_loss"] == []


def test_loss_decreases_and_logit_scale_is_clamped(fitted) -> None:
    losses = fitted.history["train_loss"]
    assert len(losses) == FAST["max_epochs"]
    assert losses[-1] < 0.5 * losses[0]
    assert 0 <= float(fitted.core.logit_scale.detach()) <= torch.log(torch.tensor(100.0))


def test_validation_split_early_stopping_returns_best_epoch(tmp_path: Path) -> None:
    from align.methods.framework.data import FeatureDataModule

    x, y = planted(64, 0, noise=3.0)  # few noisy pairs: the held-out loss turns up within ~15 epochs
    aligner = ContrastiveAligner(**{**FAST, "max_epochs": 60}, val_fraction=0.25, patience=2,
                                 checkpoint_dir=str(tmp_path)).fit(x, y)
    val = aligner.history["val_loss"]
    assert len(val) == len(aligner.history["train_loss"]) < 60
    assert val.index(min(val)) == len(val) - 3  # stopped after 2 epochs without improvement
    rows = FeatureDataModule(x, y, batch_size=64, val_fraction=0.25, seed=0).val_rows  # the same seeded split
    with torch.no_grad():
        assert float(aligner.core(x[rows], y[rows])) == pytest.approx(min(val), rel=1e-5)  # best epoch's weights
    best = ContrastiveAligner.from_checkpoint(next(tmp_path.glob("best-*.ckpt")))  # ModelCheckpoint agrees
    assert same(best.state_dict(), aligner.state_dict())


# ---------------------------------------------------------------- seeding


def test_same_seed_same_weights_other_seed_differs_caller_rng_untouched(fitted, train) -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    again = ContrastiveAligner(**FAST).fit(*train)
    assert torch.equal(torch.rand(3), expected)  # the fit left the caller's RNG where it was
    assert same(again.state_dict(), fitted.state_dict())
    assert again.history == fitted.history
    other = ContrastiveAligner(**FAST, seed=1).fit(*train)
    assert not torch.equal(other.state_dict()["image_head.weight"], fitted.state_dict()["image_head.weight"])
    assert torch.are_deterministic_algorithms_enabled() is False  # Trainer(deterministic=True) undone


# ---------------------------------------------------------------- modes


def test_modes_and_dimensions(fitted, train) -> None:
    x, y = train
    normalised = torch.nn.functional.normalize
    # image (default): shared space = text space, texts only normalised
    assert fitted.encode_image(x[:5]).shape == (5, TEXT_DIM)
    assert torch.allclose(fitted.encode_text(y[:5]), normalised(y[:5], dim=-1))
    assert "text_head.weight" not in fitted.state_dict()
    small = dict(FAST, max_epochs=1)
    both = ContrastiveAligner(heads="both", dim=5, **small).fit(x, y)
    assert both.encode_image(x[:3]).shape == both.encode_text(y[:3]).shape == (3, 5)
    assert ContrastiveAligner(heads="both", **small).fit(x, y).encode_text(y[:3]).shape == (3, min(IMAGE_DIM, TEXT_DIM))
    text = ContrastiveAligner(heads="text", **small).fit(x, y)
    assert text.encode_text(y[:3]).shape == (3, IMAGE_DIM)
    assert torch.allclose(text.encode_image(x[:3]), normalised(x[:3], dim=-1))
    norms = both.encode_image(x).norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    with pytest.raises(BadInputError, match="dim=5 is only free with heads='both'"):
        ContrastiveAligner(heads="image", dim=5).fit(x, y)


# ---------------------------------------------------------------- persistence


def test_save_load_round_trip_is_exact(fitted, test, tmp_path: Path) -> None:
    fitted.save(tmp_path / "fitted")
    x, y = test
    for loaded in (ContrastiveAligner.load(tmp_path / "fitted"), load_aligner(tmp_path / "fitted")):
        assert type(loaded) is ContrastiveAligner and loaded.hparams == fitted.hparams
        assert (loaded.image_dim, loaded.text_dim) == (IMAGE_DIM, TEXT_DIM)
        assert same(loaded.state_dict(), fitted.state_dict())
        assert torch.equal(loaded.encode_image(x), fitted.encode_image(x))
        assert torch.equal(loaded.encode_text(y), fitted.encode_text(y))
    assert {"image_head.weight", "image_head.bias", "image_mean", "image_scale", "logit_scale"} == set(
        fitted.state_dict())


def test_lightning_checkpoint_restores_and_resumes_exactly(train, test, tmp_path: Path) -> None:
    hp = dict(FAST, max_epochs=4, checkpoint_dir=str(tmp_path / "ckpt"))
    full = ContrastiveAligner(**hp).fit(*train)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]  # no validation split: no "best" file
    restored = ContrastiveAligner.from_checkpoint(last)
    assert restored.hparams == full.hparams and same(restored.state_dict(), full.state_dict())
    assert restored.history == full.history
    assert torch.equal(restored.encode_image(test[0]), full.encode_image(test[0]))
    # stop after 2 epochs, resume to 4: the same weights as the uninterrupted fit
    ContrastiveAligner(**dict(hp, max_epochs=2, checkpoint_dir=str(tmp_path / "half"))).fit(*train)
    resumed = ContrastiveAligner(**dict(hp, checkpoint_dir=str(tmp_path / "half")))
    resumed.fit(*train, ckpt_path=tmp_path / "half" / "last.ckpt")
    assert same(resumed.state_dict(), full.state_dict())
    assert resumed.history["train_loss"] == pytest.approx(full.history["train_loss"])


def test_no_files_without_checkpoint_dir(train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ContrastiveAligner(**dict(FAST, max_epochs=1)).fit(*train)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- errors


def gaussian(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def _nan_row(rows: int, cols: int) -> torch.Tensor:
    bad = gaussian(rows, cols)
    bad[3, 1] = float("nan")
    return bad


@pytest.mark.parametrize("hparams, images, texts, message", [
    ({}, _nan_row(10, 4), gaussian(10, 3), "row 3 contains NaN"),
    ({}, gaussian(10, 4), gaussian(9, 3), "10 image rows but 9 text rows"),
    ({}, gaussian(1, 4), gaussian(1, 3), "at least 2 pairs"),
    ({"val_fraction": 0.5}, gaussian(3, 4), gaussian(3, 3), "at least 4 pairs"),
    ({"val_fraction": 0.9}, gaussian(4, 4), gaussian(4, 3), "leaves 0 training pair"),
    ({}, torch.ones(6, 4), gaussian(6, 3), "image features are constant"),
    ({}, gaussian(6, 4)[0], gaussian(6, 3), "2-D"),
])
def test_bad_fit_inputs_are_one_line_errors(hparams: dict, images, texts, message: str) -> None:
    with pytest.raises(BadInputError, match=message) as err:
        ContrastiveAligner(max_epochs=1, **hparams).fit(images, texts)
    assert "\n" not in str(err.value) and "contrastive" in str(err.value)


def test_bad_encode_inputs_and_hparams(fitted) -> None:
    with pytest.raises(BadInputError, match="dimension 5.*expects 24") as err:
        fitted.encode_image(gaussian(2, 5))
    assert "\n" not in str(err.value) and "contrastive" in str(err.value)
    with pytest.raises(BadInputError, match="NaN"):
        fitted.encode_text(_nan_row(5, TEXT_DIM))
    for hparams, key in [({"heads": "left"}, "heads"), ({"batch_size": 1}, "batch_size"), ({"lr": 0}, "lr"),
                         ({"val_fraction": 1.0}, "val_fraction"), ({"patience": 3}, "patience"),
                         ({"max_epochs": -1}, "max_epochs"), ({"dim": 0}, "dim")]:
        with pytest.raises(BadInputError, match=key):
            ContrastiveAligner(**hparams)
    with pytest.raises(RuntimeError, match="not fitted"):
        ContrastiveAligner().encode_image(gaussian(2, 3))
