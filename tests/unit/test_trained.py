"""The trained-aligner base: which checkpoint a fit resumes from, and what it refuses.

In-process and small (the contrastive heads; one LQAE for a method with its own Lightning module).
The SIGKILL tests are in ``test_resume_after_kill.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from align.errors import BadInputError
from align.methods.contrastive import ContrastiveAligner
from align.methods.framework.checkpoints import load_checkpoint
from align.methods.framework.module import CoreModule
from align.methods.framework.trained import TrainedAligner

HP = dict(lr=1e-2, batch_size=16, max_epochs=3)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pairs(seed: int = 0, rows: int = 48, noise: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 10, generator=g)
    return x, x[:, :6] + noise * torch.randn(rows, 6, generator=g)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Training steps run from here on (one entry per batch)."""
    seen: list[int] = []
    step = CoreModule.training_step
    monkeypatch.setattr(CoreModule, "training_step", lambda self, batch, i: seen.append(i) or step(self, batch, i))
    return seen


def same(a: TrainedAligner, b: TrainedAligner) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa) and a.history == b.history


def test_a_finished_fit_is_resumed_not_repeated_even_after_early_stopping(tmp_path: Path, steps: list[int]) -> None:
    hp = dict(HP, max_epochs=60, val_fraction=0.25, patience=2)
    noisy = pairs(rows=32, noise=3.0)  # few noisy pairs: the held-out loss soon turns up
    first = ContrastiveAligner(**hp, checkpoint_dir=tmp_path).fit(*noisy)
    assert 0 < len(first.history["train_loss"]) < 60 and len(steps) > 0  # stopped early
    steps.clear()
    again = ContrastiveAligner(**hp, checkpoint_dir=tmp_path).fit(*noisy)
    assert steps == [] and same(again, first)  # not one more epoch: early stopping's verdict is kept


def test_more_epochs_continue_from_the_checkpoint(tmp_path: Path, steps: list[int]) -> None:
    ContrastiveAligner(**HP, checkpoint_dir=tmp_path).fit(*pairs())
    steps.clear()
    longer = ContrastiveAligner(**dict(HP, max_epochs=5), checkpoint_dir=tmp_path).fit(*pairs())
    assert len(steps) == 2 * 3  # 2 more epochs of 3 batches
    assert same(longer, ContrastiveAligner(**dict(HP, max_epochs=5)).fit(*pairs()))


@pytest.mark.parametrize("change", ["data", "lr", "seed"])
def test_a_checkpoint_of_another_fit_is_refused(tmp_path: Path, change: str) -> None:
    ContrastiveAligner(**HP, checkpoint_dir=tmp_path).fit(*pairs())
    before = (tmp_path / "last.ckpt").read_bytes()
    hp = dict(HP, **({"lr": 1e-3} if change == "lr" else {"seed": 1} if change == "seed" else {}))
    data = pairs(1) if change == "data" else pairs()
    with pytest.raises(BadInputError, match="last.ckpt is a checkpoint of another fit") as err:
        ContrastiveAligner(**hp, checkpoint_dir=tmp_path).fit(*data)
    assert "\n" not in str(err.value) and str(err.value).startswith("contrastive.fit: ")
    assert (tmp_path / "last.ckpt").read_bytes() == before  # left as it was


def test_missing_explicit_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"^contrastive.fit: no checkpoint at .*nothing.ckpt$"):
        ContrastiveAligner(**HP).fit(*pairs(), ckpt_path=tmp_path / "nothing.ckpt")


class Planted:
    """Unpickling this runs ``Path.touch`` on a marker file: what ``weights_only=True`` must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return Path.touch, (self.marker,)


def test_checkpoints_are_read_without_running_pickled_code(tmp_path: Path) -> None:
    ContrastiveAligner(**HP, checkpoint_dir=tmp_path / "ckpt").fit(*pairs())
    checkpoint = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert checkpoint["callbacks"]["FitState"]["fingerprint"]  # what resuming checks
    checkpoint["history"] = Planted(tmp_path / "ran")
    torch.save(checkpoint, tmp_path / "ckpt" / "last.ckpt")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        ContrastiveAligner(**dict(HP, max_epochs=4), checkpoint_dir=tmp_path / "ckpt").fit(*pairs())
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        ContrastiveAligner.from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert not (tmp_path / "ran").exists()


def test_no_partial_files_and_only_last_without_validation(tmp_path: Path) -> None:
    ContrastiveAligner(**HP, checkpoint_dir=tmp_path).fit(*pairs())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_lqae_checkpoint_restores_through_its_own_module(tmp_path: Path) -> None:
    from align.methods.lqae import LQAE

    tiny = dict(table="toy:table-masked", image_size=8, patch_size=4, encoder_width=16, encoder_depth=1,
                encoder_heads=2, decoder_width=16, decoder_depth=1, decoder_heads=2, batch_size=8, max_epochs=1)
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    fitted = LQAE(**tiny, checkpoint_dir=tmp_path).fit_images(images)
    restored = LQAE.from_checkpoint(tmp_path / "last.ckpt")
    assert restored.hparams == fitted.hparams and same(restored, fitted)
    assert torch.equal(restored.codes(images), fitted.codes(images))
