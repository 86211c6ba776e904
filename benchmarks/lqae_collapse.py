"""Why LQAE's Gemma codebook collapses: distinct codes on held-out images every few training steps,
for LQAE with the LM loss at several weights, without it, and with the code-usage entropy term.

A diagnostic, not the training recipe: each variant takes the same plain AdamW steps (betas 0.9/0.95,
constant ``--lr``, no schedule) from the same initialisation on the same batches of Fashion-MNIST
fit images, so the only difference between rows is the loss. Codes are counted on ``--probe`` test
images (16 tokens each). Every variant is saved under ``--runs`` and reused by a rerun.

    python benchmarks/lqae_collapse.py                    # 4 variants x 20 steps through the frozen LM
    python benchmarks/lqae_collapse.py --quick            # smoke run: 2 variants, 4 steps
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from _common import cached_run, emit, machine_line, markdown_table  # benchmarks/_common.py
from _lqae_data import GEMMA, load_data  # benchmarks/_lqae_data.py

VARIANTS = {  # label -> loss settings of LQAECore
    "LM loss 0.1": {"lm_weight": 0.1},
    "LM loss 0.01": {"lm_weight": 0.01},
    "LM loss off": {"lm_weight": 0.0},
    "LM loss 0.01 + usage 1": {"lm_weight": 0.01, "usage_weight": 1.0, "usage_temperature": 0.01},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def code_usage(core: Any, images: torch.Tensor) -> tuple[int, float]:
    """Distinct codes and their perplexity over every token of ``images`` (align.eval.token_stats)."""
    from align.eval.token_stats import code_usage as usage_of

    core.eval()
    with torch.no_grad():
        usage = usage_of(core.quantize(core.encode(images)).codes)
    core.train()
    return int(usage["distinct"]), usage["perplexity"]


def trace(settings: dict[str, Any], data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant for ``args.steps`` steps; usage and loss terms every ``args.every`` steps."""
    from align.methods.lqae.aligner import LQAECore

    torch.manual_seed(0)
    core = LQAECore(table=GEMMA, codebook_rows="words", codebook_size=args.codebook_size, patch_size=8, **settings)
    optimizer = torch.optim.AdamW([p for p in core.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.95),
                                  weight_decay=5e-4)
    batches = torch.Generator().manual_seed(0)
    x, probe = data["train_x"], data["test_x"][: args.probe]
    rows = []
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            distinct, perplexity = code_usage(core, probe)
            rows.append({"step": step, "distinct": distinct, "perplexity": perplexity, **core.parts})
            log(f"{settings}: step {step}, {distinct} codes (perplexity {perplexity:.1f})")
        if step == args.steps:
            break
        loss = core(x[torch.randint(len(x), (args.batch,), generator=batches)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"trace": rows}


def report(args: argparse.Namespace, traces: dict[str, list[dict]]) -> str:
    steps = [r["step"] for r in next(iter(traces.values()))]
    lines = [f"LQAE (Gemma-3 270M, the {args.codebook_size} most frequent whole words, 16 tokens per image): "
             f"distinct codes on {args.probe} Fashion-MNIST test images during training (perplexity in brackets); "
             f"AdamW lr {args.lr:g}, batch {args.batch}, the same initialisation and batches for every row.", ""]
    body = [(label, *(f"{r['distinct']} ({r['perplexity']:.1f})" for r in rows)) for label, rows in traces.items()]
    lines += markdown_table(("loss", *(f"step {s}" for s in steps)), body, align="l" + "r" * len(steps))
    lines += ["", "Loss terms at the last step (rec: pixel MSE in [0, 1] units; lm: cross-entropy of the masked "
              "codes; commit: mean squared distance of the encoder's vector to its row):", ""]
    last = [(label, *(f"{rows[-1].get(k, 0.0):.3f}" for k in ("rec", "lm", "commit", "usage")))
            for label, rows in traces.items()]
    lines += markdown_table(("loss", "rec", "lm", "commit", "usage"), last, align="lrrrr")
    lines += ["", machine_line(threads=args.threads, load=True)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train", type=int, default=960)
    parser.add_argument("--probe", type=int, default=256, help="test images whose codes are counted")
    parser.add_argument("--codebook-size", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("results/lqae_collapse"))
    parser.add_argument("--output", type=Path, default=Path("results/lqae_collapse.md"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 variants, 4 steps, 64 images")
    args = parser.parse_args(argv)
    variants = VARIANTS
    if args.quick:
        args.steps, args.every, args.train, args.probe, args.batch = 4, 2, 64, 32, 8
        args.runs, args.output = Path("results/lqae_collapse_quick"), Path("results/lqae_collapse_quick.md")
        variants = dict(list(VARIANTS.items())[:2])
    torch.set_num_threads(args.threads)
    data = load_data(SimpleNamespace(dataset="fashion_mnist", train=args.train, test=max(args.probe, 1)))
    traces = {}
    for label, settings in variants.items():
        key = {"settings": settings, "steps": args.steps, "every": args.every, "batch": args.batch, "lr": args.lr,
               "train": args.train, "probe": args.probe, "codebook_size": args.codebook_size}
        name = label.replace(" ", "_").replace("+", "and")
        traces[label] = cached_run(args.runs / f"{name}.json", key, lambda: trace(settings, data, args), log)["trace"]
    emit(report(args, traces), args.output)


if __name__ == "__main__":
    main()
