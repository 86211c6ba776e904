"""A stop (:class:`RunInterrupted`, raised by ``align bench``'s signal handler) that arrives while Lightning
sets up a fit's data is raised as the stop, not as the error Lightning's teardown then hits of its own
("Please call iter(combined_loader) first"), which would end the run with a traceback and exit 1."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from align.errors import RunInterrupted
from align.methods.framework.trainer import fit, interrupt_behind, make_trainer


class _Linear(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _StoppedWhileIterating(pl.LightningDataModule):
    """Training data whose loader is stopped as Lightning first iterates it: where a signal lands when a
    fit has only just started."""

    def train_dataloader(self) -> DataLoader:
        class Stopped(DataLoader):
            def __iter__(self):  # type: ignore[no-untyped-def]
                raise RunInterrupted(2)

        return Stopped(TensorDataset(torch.zeros(4, 2)), batch_size=2)


def test_a_stop_during_data_setup_is_raised_as_the_stop() -> None:
    with pytest.raises(RunInterrupted) as raised:
        fit(make_trainer(1), _Linear(), _StoppedWhileIterating())
    assert raised.value.signum == 2


def test_other_errors_pass_through_unchanged() -> None:
    class Broken(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            raise ValueError("no data")

    with pytest.raises(ValueError, match="no data"):
        fit(make_trainer(1), _Linear(), Broken())


def test_the_stop_is_found_behind_errors_raised_while_handling_it() -> None:
    stop = RunInterrupted(15)
    try:
        try:
            raise stop
        except RunInterrupted:
            raise RuntimeError("teardown failed")
    except RuntimeError as error:
        assert interrupt_behind(error) is stop
    assert interrupt_behind(RuntimeError("alone")) is None
