"""A fit killed with SIGKILL part-way resumes from its ``last.ckpt`` to the same state as a fit that was
never interrupted, for each of the four trained aligners (tiny models on toy tables, seconds each).

The test runs this file as a script in a subprocess: the child fits with ``checkpoint_dir`` set and,
once the epoch-``STOP - 1`` checkpoint is written and one optimiser step of epoch ``STOP`` is done in
memory, announces it and sleeps; the parent then kills it with a real ``SIGKILL``. A fresh fit in the
parent, on the same data with the same hyper-parameters, finds the checkpoint and resumes. It must run
only the remaining epochs (counted) and end with every tensor ``torch.equal`` to an uninterrupted fit's,
and the same loss history: both runs use one thread, so every sum is reduced in the same order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from toy_pixels import squares

ROOT = Path(__file__).resolve().parents[2]
STOP = 1  # the child is killed during this epoch (0-based); its checkpoint holds epochs before it
TOY_MASKED, TOY_CAUSAL = "toy:table-masked", "toy:table-causal"


def gaussian(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


WORDS = "cat dog bird fish horse cow sheep car".split()


def captions(n: int) -> list[str]:
    return [f"a {WORDS[i % len(WORDS)]}" for i in range(n)]


# name -> (hyper-parameters, fit method, its data, training steps per epoch)
CASES: dict[str, tuple[dict[str, Any], str, Callable[[], tuple], int]] = {
    # with a validation split and early stopping armed: their callback states must survive too
    "contrastive": (dict(heads="both", dim=6, lr=1e-2, batch_size=16, max_epochs=4, val_fraction=0.25, patience=10),
                    "fit", lambda: (gaussian(64, 12, seed=0), gaussian(64, 8, seed=1)), 3),
    "vlap": (dict(table=TOY_CAUSAL, lr=1e-2, batch_size=8, max_epochs=3),
             "fit_captions", lambda: (gaussian(24, 16, seed=2), captions(24)), 3),
    # masks drawn from the global RNG each step, a warm-up + cosine schedule per step
    "lqae": (dict(table=TOY_MASKED, image_size=16, patch_size=4, encoder_width=32, encoder_depth=1, encoder_heads=2,
                  decoder_width=32, decoder_depth=1, decoder_heads=2, lr=3e-3, batch_size=8, max_epochs=3),
             "fit_images", lambda: (squares(24, seed=3),), 3),
    # dropout, MLM/MIM masks and hard negatives from the global RNG; momentum encoders and a queue
    "codebook_vlp": (dict(table=TOY_MASKED, image_width=16, image_heads=2, embed_dim=16, num_codes=8, code_dim=8,
                          queue_size=32, batch_size=16, max_epochs=3),
                     "fit_captions", lambda: (gaussian(32, 16, 8, seed=4), captions(32)), 2),
}


def fit(name: str, **extra: Any) -> Any:
    from align.registry import ALIGNERS

    hparams, method, data, _ = CASES[name]
    aligner = ALIGNERS.create(name, **hparams, **extra)
    return getattr(aligner, method)(*data())


def child(name: str, checkpoint_dir: str, marker: str) -> None:
    """Fit with checkpoints; in epoch ``STOP``, after one step, write ``marker`` and wait to be killed."""
    torch.set_num_threads(1)
    from align.methods.lightning_utils import CoreModule

    step = CoreModule.training_step

    def training_step(self: Any, batch: Any, batch_idx: int) -> Any:
        if self.current_epoch == STOP and batch_idx == 1:
            Path(marker).write_text(str(self.current_epoch))
            time.sleep(600)
        return step(self, batch, batch_idx)

    CoreModule.training_step = training_step
    fit(name, checkpoint_dir=checkpoint_dir)
    raise SystemExit("the fit ended without being killed")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def kill_part_way(name: str, checkpoint_dir: Path, tmp_path: Path) -> None:
    marker, log = tmp_path / "blocked", tmp_path / "child.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, __file__, name, str(checkpoint_dir), str(marker)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, f"the child ended early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_fit_killed_part_way_resumes_to_the_uninterrupted_state(name: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from align.methods.lightning_utils import CoreModule, load_checkpoint

    checkpoint_dir = tmp_path / "ckpt"
    kill_part_way(name, checkpoint_dir, tmp_path)
    assert (checkpoint_dir / "last.ckpt").is_file()
    assert load_checkpoint(checkpoint_dir / "last.ckpt")["epoch"] == STOP - 1  # written before the kill
    assert not list(checkpoint_dir.glob(".*.part"))  # the kill left no half-written file behind

    full = fit(name)  # never interrupted, no checkpoints
    steps = []
    step = CoreModule.training_step
    monkeypatch.setattr(CoreModule, "training_step", lambda self, batch, i: steps.append(i) or step(self, batch, i))
    resumed = fit(name, checkpoint_dir=str(checkpoint_dir))

    hparams, _, _, per_epoch = CASES[name]
    assert len(steps) == (hparams["max_epochs"] - STOP) * per_epoch  # only the remaining epochs ran
    expected, got = full.state_dict(), resumed.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected), [k for k in expected if not torch.equal(got[k],
                                                                                                           expected[k])]
    assert resumed.history == full.history
    assert len(resumed.history["train_loss"]) == hparams["max_epochs"]


if __name__ == "__main__":
    child(*sys.argv[1:])
