"""bfloat16 against float32: encoder throughput and feature agreement, and ASIF's anchor search.

bf16 only pays on hardware with bf16 matrix units (Intel AMX, AVX512-BF16, recent GPUs); on a CPU
without them it is slower than float32. So the report starts with the CPU's bf16 units as
/proc/cpuinfo lists them ("none" when it lists none), and every number should be read against it.

Per vision encoder: images/s end to end (PIL decode + preprocessing + forward, as ``align embed``
runs) and forward only (on preprocessed batches), in float32 and bfloat16, their ratio, and the
minimum cosine between the two precisions' features. For ASIF's search: ``queries x anchors`` random
unit vectors (sizes are options; the defaults are small, the issue's scale is ``--queries 10000
--anchors 1000000``), the bf16-with-float32-re-scoring time over the float32 time, and how often the
top-k sets and the top-1 anchors agree.

    python benchmarks/precision.py [--encoders NAME ...] [--images 256] [--queries 1000 --anchors 20000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py
from encoders import DEFAULT_ENCODERS, digits_as_images  # benchmarks/encoders.py
from align.encoders.inference import inference_encoder
from align.features.encoding import encode_pil
from align.kernels.topk import exact_topk, recall_at_k
from align.precision import as_input, auto_line, auto_precision, autocast_for, cpu_flags, with_precision
from align.registry import VISION_ENCODERS

BF16_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "bf16")  # x86 flags; "bf16" on Arm (Features line)


def bf16_units(cpuinfo: Path | None = None) -> str:
    """The bf16-related CPU flags present (AMX, AVX512-BF16, Arm BF16), or "none"; read as
    ``precision: auto`` reads them (:func:`align.precision.cpu_flags`)."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return "unknown (no /proc/cpuinfo)"
    words = set(flags.get("flags", ())) | set(flags.get("Features", ()))
    found = [flag for flag in BF16_FLAGS if flag in words]
    return ", ".join(found) if found else "none"


def best_time(run: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Fastest of ``repeats`` runs after one warm-up (the least disturbed by other work)."""
    run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def encoder_row(name: str, images: Sequence, batch_size: int, repeats: int, device: torch.device) -> tuple:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rates, features = {}, {}
    for precision in ("float32", "bfloat16"):
        encoder = VISION_ENCODERS.create(with_precision(name, precision)).to(device)
        runner = inference_encoder(encoder.eval())  # what encode_pil runs (float32 conv nets: the folded copy)
        batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        pixels = [as_input(runner, torch.stack([encoder.preprocess(im) for im in batch]).to(device))
                  for batch in batches]

        def end_to_end() -> torch.Tensor:
            if device.type == "cpu":
                return torch.cat([encode_pil(encoder, batch)[0] for batch in batches])
            out = []
            for batch in batches:
                px = as_input(encoder, torch.stack([encoder.preprocess(im) for im in batch]).to(device))
                with torch.inference_mode(), autocast_for(encoder):
                    out.append(encoder(px).float().cpu())
            return torch.cat(out)

        def forward_only() -> None:
            with torch.inference_mode(), autocast_for(encoder):
                for px in pixels:
                    runner(px)

        rates[precision] = (len(images) / best_time(end_to_end, repeats, sync),
                            len(images) / best_time(forward_only, repeats, sync))
        features[precision] = end_to_end().float()
    cosine = float(F.cosine_similarity(features["float32"], features["bfloat16"]).min())
    (e32, f32), (e16, f16) = rates["float32"], rates["bfloat16"]
    return name, e32, e16, e16 / e32, f32, f16, f16 / f32, cosine


def search_row(queries: int, anchors: int, dim: int, k: int, chunk_rows: int, repeats: int, seed: int) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(queries, dim, generator=generator), dim=1)
    a = F.normalize(torch.randn(anchors, dim, generator=generator), dim=1)
    results = {}

    def timed(precision: str) -> float:
        def run() -> None:
            results[precision] = exact_topk(q, a, k, chunk_rows=chunk_rows, search_precision=precision)
        return best_time(run, repeats, lambda: None)

    t32, t16 = timed("float32"), timed("bfloat16")
    exact, low = results["float32"], results["bfloat16"]
    top1 = float((exact.indices[:, 0] == low.indices[:, 0]).float().mean())
    return f"{queries} x {anchors} x {dim}", k, t32, t16, t16 / t32, recall_at_k(low.indices, exact.indices), top1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="*", default=DEFAULT_ENCODERS, help="none: skip the encoder table")
    parser.add_argument("--images", type=int, default=256, help="digits images per timing")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="device of the encoders (the search runs on the CPU)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--anchors", type=int, default=20000, help="0: skip the search table")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--chunk-rows", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()
    torch.manual_seed(0)

    lines = [f"CPU bf16 units: {bf16_units()}", "",
             f"`precision: auto` for encoders on {args.device}: {auto_line(*auto_precision(args.device))}"]
    if args.device.startswith("cuda") and torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name()} (bf16 supported: {torch.cuda.is_bf16_supported()})")
    lines.append("")
    if args.encoders:
        images = digits_as_images()[0][:args.images]
        device = torch.device(args.device)
        rows = [encoder_row(name, images, args.batch_size, args.repeats, device) for name in args.encoders]
        lines += [f"Encoders: {len(images)} digits images, batch {args.batch_size}, best of {args.repeats}, "
                  f"on {device}", "",
                  *markdown_table(("encoder", "end-to-end fp32 img/s", "bf16 img/s", "bf16/fp32",
                                   "forward fp32 img/s", "bf16 img/s", "bf16/fp32", "min cosine"), rows,
                                  formats=("", ".1f", ".1f", "{:.2f}x", ".1f", ".1f", "{:.2f}x", ".5f")), ""]
    if args.anchors > 0:
        row = search_row(args.queries, args.anchors, args.dim, args.k, args.chunk_rows, args.repeats, seed=0)
        lines += [f"ASIF search: exact top-k, random unit vectors, best of {args.repeats}; bf16 proposes "
                  "k + 16 per block, float32 re-scores", "",
                  *markdown_table(("queries x anchors x dim", "k", "fp32 s", "bf16 s", "bf16/fp32 time",
                                   "top-k agreement", "top-1 agreement"), [row],
                                  formats=("", "d", ".3f", ".3f", "{:.2f}x", ".4f", ".4f")), ""]
    lines.append(machine_line(packages=("torch", "numpy"), load=True))
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
