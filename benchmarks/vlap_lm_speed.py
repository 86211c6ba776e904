"""Seconds per VLAP training step through the frozen Gemma-3 270M: float32 against bfloat16 autocast, and
what bfloat16 does to the loss and to ``g``'s gradient.

bfloat16 pays off on a CPU only with matrix units for it (AMX, ``amx_bf16`` in ``/proc/cpuinfo``);
without them PyTorch's bfloat16 matmuls are several times slower than float32. The table says which
kind of CPU it was measured on.

One step = the full VLAP loss (L_cap + 0.1 L_map) forward and backward on 64 emoji image-name pairs,
4 visual prefix tokens from MobileNetV2's grid, logits only where a caption token comes next (both
paths). Both paths start from the same calibrated ``g``; the gradient comparison is the cosine between
the two gradients of ``g.weight`` and their relative norm difference. Ratios are against float32
measured in the same run (the machines are shared: absolute seconds move with the load).

    python benchmarks/vlap_lm_speed.py [--steps 5] [--batch 64] [--output results/vlap_lm_speed.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py
from align.bench.execute.features import FeatureBank
from align.methods.vlap.aligner import DEFAULT_TABLE, VLAPCore, load_table, tokenize_captions
from align.registry import DATASETS

ENCODER = "torchvision:mobilenet_v2.imagenet1k_v1"


def cpu_matrix_units() -> str:
    """The CPU's bfloat16 matrix extensions as ``/proc/cpuinfo`` lists them ("none" without)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    units = [f for f in flags if f.startswith("amx") or f == "avx512_bf16"]
    return ", ".join(units) if units else "none (no AMX, no AVX512-BF16)"


def step(core: VLAPCore, batch: tuple[torch.Tensor, ...]) -> tuple[float, float, torch.Tensor]:
    """Seconds, loss and ``g.weight``'s gradient of one forward and backward."""
    core.zero_grad(set_to_none=True)
    started = time.perf_counter()
    loss = core(*batch)
    loss.backward()
    return time.perf_counter() - started, float(loss.detach()), core.g.weight.grad.detach().clone()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per precision (after one warm-up step)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path("results/vlap_lm_speed.md"))
    args = parser.parse_args(argv)

    split = DATASETS.create("emoji").load("anchors")
    tokens = FeatureBank(progress=False).tokens(ENCODER, split)[: args.batch].float()
    table = load_table(DEFAULT_TABLE)
    ids, mask = tokenize_captions(table, [c[0] for c in split.captions][: args.batch], 64)
    table.load_lm()
    batch = (tokens, ids, mask)
    cores = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        core = VLAPCore(tokens.shape[-1], DEFAULT_TABLE, prefix_source="grid", num_prefix_tokens=4,
                        prior="uniform", vocab_subset=2000, lm_precision=precision)
        core.calibrate(tokens)
        cores[precision] = core
    cores["bfloat16"].load_state_dict(cores["float32"].state_dict())
    timings, losses, grads = {}, {}, {}
    for precision, core in cores.items():
        step(core, batch)  # warm-up: the LM's first call builds its caches
        runs = [step(core, batch) for _ in range(args.steps)]
        timings[precision] = [r[0] for r in runs]
        losses[precision], grads[precision] = runs[-1][1], runs[-1][2]
    reference = statistics.median(timings["float32"])
    rows = [(p, statistics.median(t), min(t), reference / statistics.median(t), losses[p]) for p, t in timings.items()]
    cosine = float(F.cosine_similarity(grads["float32"].flatten(), grads["bfloat16"].flatten(), dim=0))
    norm_gap = float((grads["bfloat16"].norm() - grads["float32"].norm()).abs() / grads["float32"].norm())
    lines = [f"VLAP training step through the frozen Gemma-3 270M ({args.batch} emoji pairs, 4 grid prefix tokens, "
             f"median of {args.steps} steps after a warm-up):", "",
             *markdown_table(("LM precision", "s / step (median)", "s / step (min)", "speed-up vs float32", "loss"),
                             rows, formats=(".3f", ".2f", ".2f", ".2f", ".4f")),
             "", f"CPU bfloat16 units: {cpu_matrix_units()}.",
             "", f"Same weights, same batch: loss difference {abs(losses['bfloat16'] - losses['float32']):.4f} "
             f"({abs(losses['bfloat16'] - losses['float32']) / losses['float32']:.2%}); gradient of g: cosine "
             f"{cosine:.4f}, relative norm difference {norm_gap:.2%}.", "", machine_line()]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
