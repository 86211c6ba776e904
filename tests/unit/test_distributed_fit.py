"""Data-parallel training: two CPU processes (DDP, gloo) fit what one process fits on the same global batch.

Lightning's ``"ddp"`` starts the second process by running the calling script again, so the fits run in
a small script started with ``subprocess`` (running pytest twice would be the alternative). The data
are 32 pairs in global batches of 8 (4 per process), so every global batch splits evenly. Tolerance:
the two runs add the same numbers in another order (the gradient of each slice is summed on its own
process, then averaged across processes), so after a few AdamW steps the weights differ by float32
rounding only; 1e-5 on weights of order 1 is orders of magnitude below the difference a real change
makes (e.g. each process taking only its own slice as InfoNCE negatives, i.e. no gather, fails it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from align.bench.plan.specs import AlignerChoice
from align.methods.contrastive import ContrastiveAligner
from align.methods.framework.data import EpochSeededSampler
from align.methods.framework.trained import fingerprint

SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    from align.methods.contrastive import ContrastiveAligner

    devices, strategy, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 6, generator=g), torch.randn(32, 5, generator=g)
    aligner = ContrastiveAligner(heads="both", dim=4, batch_size=8, max_epochs=3, lr=1e-2,
                                 devices=devices, strategy=strategy)
    aligner.fit(x, y)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        torch.save({"state": aligner.state_dict(), "history": aligner.history}, out)
''')


def _fit(tmp_path: Path, devices: int, strategy: str) -> dict:
    script, out = tmp_path / "fit.py", tmp_path / f"fit-{devices}.pt"
    script.write_text(SCRIPT)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    done = subprocess.run([sys.executable, str(script), str(devices), strategy, str(out)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch built without the gloo backend")
def test_two_cpu_processes_fit_what_one_process_fits(tmp_path: Path) -> None:
    one, two = _fit(tmp_path, 1, "auto"), _fit(tmp_path, 2, "ddp")
    assert one["state"].keys() == two["state"].keys()
    for key, value in one["state"].items():
        torch.testing.assert_close(two["state"][key], value, atol=1e-5, rtol=1e-5, msg=key)
    assert len(two["history"]["train_loss"]) == 3
    torch.testing.assert_close(torch.tensor(two["history"]["train_loss"]), torch.tensor(one["history"]["train_loss"]),
                               atol=1e-5, rtol=1e-5)


def test_processes_slice_the_global_batches_one_process_sees() -> None:
    one = list(EpochSeededSampler(10, seed=3))
    parts = [list(EpochSeededSampler(10, seed=3, per_device=2, rank=r, replicas=2)) for r in (0, 1)]
    padded = one + one[:2]  # 10 rows in global batches of 4: the last one padded by the first rows
    for b in range(3):
        assert parts[0][2 * b: 2 * b + 2] + parts[1][2 * b: 2 * b + 2] == padded[4 * b: 4 * b + 4]
    assert all(len(p) == len(EpochSeededSampler(10, seed=3, per_device=2, rank=0, replicas=2)) == 6 for p in parts)


def test_run_options_at_their_defaults_leave_identities_and_fingerprints_as_they_were() -> None:
    default, gpu = ContrastiveAligner(), ContrastiveAligner(accelerator="gpu", devices=4, strategy="ddp")
    legacy = {k: v for k, v in default.hparams.items() if k not in ("accelerator", "devices", "strategy", "precision")}
    tensors = (torch.ones(2, 2),)
    assert fingerprint("contrastive", default.hparams, tensors) == fingerprint("contrastive", legacy, tensors)
    def aligner_part(name: str, aligner: ContrastiveAligner) -> dict:
        return AlignerChoice(name, type(aligner).version, aligner.hparams).part()

    assert aligner_part("contrastive", default)["hparams"] == {
        k: v for k, v in legacy.items() if k not in ("progress", "checkpoint_dir")}
    assert aligner_part("contrastive", gpu) == aligner_part("contrastive", default)  # where it runs: not identity
    assert aligner_part("contrastive", ContrastiveAligner(precision="bf16-mixed")) != aligner_part("contrastive", default)
