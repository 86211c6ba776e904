"""The trained-aligner base: which checkpoint a fit resumes from, and what it refuses.

In-process and small (the contrastive heads; LQAE and VLAP where they depart from the shared
optimiser or core shape). The SIGKILL tests are in ``test_resume_after_kill.py``."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from align.errors import BadInputError
from align.methods.contrastive import ContrastiveAligner
from align.methods.framework.checkpoints import load_checkpoint
from align.methods.framework.module import CoreModule
from align.methods.framework.trained import TrainedAligner

HP = dict(lr=1e-2, batch_size=16, max_epochs=3)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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


TINY_LQAE = dict(table="toy:table-masked", image_size=8, patch_size=4, encoder_width=16, encoder_depth=1,
                 encoder_heads=2, decoder_width=16, decoder_depth=1, decoder_heads=2, batch_size=8, max_epochs=1)


def test_lqae_checkpoint_restores_through_the_shared_module(tmp_path: Path) -> None:
    from align.methods.lqae import LQAE

    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    fitted = LQAE(**TINY_LQAE, checkpoint_dir=tmp_path).fit_images(images)
    assert type(fitted.module) is CoreModule
    restored = LQAE.from_checkpoint(tmp_path / "last.ckpt")
    assert restored.hparams == fitted.hparams and same(restored, fitted)
    assert torch.equal(restored.codes(images), fitted.codes(images))


def optimiser_of(module: CoreModule, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """``configure_optimizers`` of a module as if a Trainer estimated ``steps`` optimiser steps."""
    module._trainer = SimpleNamespace(estimated_stepping_batches=steps)
    configured = module.configure_optimizers()
    if isinstance(configured, torch.optim.Optimizer):
        return configured, None
    return configured["optimizer"], configured["lr_scheduler"]["scheduler"]


def test_lqae_trains_with_the_shared_optimiser_at_its_betas_and_schedule() -> None:
    """LQAE's official optimiser through ``CoreModule``: AdamW betas (0.9, 0.95), weight decay on matrices
    only, the per-tensor loop, a warm-up of at least one step, then cosine decay to 0."""
    from align.methods.lqae import LQAE

    module = LQAE(**TINY_LQAE, warmup_fraction=0.0).build()
    optimizer, schedule = optimiser_of(module, steps=10)
    assert type(module) is CoreModule and optimizer.defaults["betas"] == (0.9, 0.95) and not optimizer.defaults["fused"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]
    assert all(p.ndim >= 2 for p in optimizer.param_groups[0]["params"])
    assert all(p.ndim < 2 for p in optimizer.param_groups[1]["params"])
    factors = [schedule.lr_lambdas[0](step) for step in range(10)]
    assert factors[0] == 1.0 and factors[1] == 1.0 and factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 9)))
    assert factors == sorted(factors, reverse=True)


def test_the_other_trained_aligners_keep_torchs_betas_and_the_fused_step() -> None:
    contrastive = ContrastiveAligner(**HP)
    contrastive.image_dim, contrastive.text_dim = 10, 6
    optimizer, schedule = optimiser_of(contrastive.build(dict(image_dim=10, text_dim=6)), steps=10)
    assert optimizer.defaults["betas"] == (0.9, 0.999) and optimizer.defaults["fused"] and schedule is None


def test_the_core_is_stored_by_its_class_path_and_resolved_back(tmp_path: Path) -> None:
    from align.methods.contrastive import ContrastiveHeads
    from align.methods.framework.cores import core_path, resolve_core

    ContrastiveAligner(**HP, checkpoint_dir=tmp_path).fit(*pairs())
    saved = load_checkpoint(tmp_path / "last.ckpt")["hyper_parameters"]
    assert saved["core"] == core_path(ContrastiveHeads) == "align.methods.contrastive:ContrastiveHeads"
    assert resolve_core(saved["core"]) is ContrastiveHeads is ContrastiveAligner.core_class
    assert type(CoreModule.load_from_checkpoint(tmp_path / "last.ckpt").core) is ContrastiveHeads


def test_core_paths_of_earlier_layouts_resolve_through_the_legacy_table() -> None:
    from align.methods.codebook_vlp.core import CodebookVLPCore
    from align.methods.framework.cores import resolve_core
    from align.methods.lqae import LQAECore
    from align.methods.vlap import VLAPCore

    assert resolve_core("align.methods.vlap:VLAPCore") is VLAPCore
    assert resolve_core("align.methods.lqae:LQAECore") is LQAECore
    assert resolve_core("align.methods.codebook_vlp:CodebookVLPCore") is CodebookVLPCore
    assert resolve_core("align.methods.codebook_vlp.aligner:CodebookVLPCore") is CodebookVLPCore
    for bad in ("align.methods.nothing:Core", "align.methods.contrastive:info_nce", "nonsense"):
        with pytest.raises(BadInputError, match="names no core class"):
            resolve_core(bad)


def test_a_checkpoint_naming_an_old_core_path_loads_and_one_of_another_aligner_is_refused(tmp_path: Path) -> None:
    from align.methods.lqae import LQAE
    from align.methods.vlap import VLAPAligner

    captions = [f"a {w}" for w in "cat dog bird fish horse cow sheep car".split()] * 3
    x = torch.randn(24, 16, generator=torch.Generator().manual_seed(2))
    fitted = VLAPAligner(table="toy:table-causal", batch_size=8, max_epochs=1,
                         checkpoint_dir=tmp_path).fit_captions(x, captions)
    checkpoint = load_checkpoint(tmp_path / "last.ckpt")
    assert set(checkpoint["hyper_parameters"]["core_args"]) >= {"vocab_ids", "prior_weights"}  # chosen from the data
    checkpoint["hyper_parameters"]["core"] = "align.methods.vlap:VLAPCore"  # as the layout before subpackages wrote it
    torch.save(checkpoint, tmp_path / "old.ckpt")
    restored = VLAPAligner.from_checkpoint(tmp_path / "old.ckpt")  # the vocabulary comes back with the weights
    assert restored.hparams == fitted.hparams and same(restored, fitted)
    with pytest.raises(BadInputError, match=r"old.ckpt: a checkpoint of align.methods.vlap:VLAPCore, not of lqae"):
        LQAE.from_checkpoint(tmp_path / "old.ckpt")


def test_a_shape_argument_the_aligner_does_not_declare_is_refused_before_training() -> None:
    class Undeclared(ContrastiveAligner):
        shape_args = ("image_dim",)

    with pytest.raises(TypeError, match=r"Undeclared.shape_args lacks \['text_dim'\]"):
        Undeclared(**HP).fit(*pairs())
