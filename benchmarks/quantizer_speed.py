"""LQAE's quantizer search over whole language tables: tokens per second, against the float32 matmul of
the same shape and against faiss ``IndexFlatIP``, measured in the same run.

Tables: MiniLM's BERT WordPiece table (30,522 x 384) and Gemma-3-270M's (262,144 x 640), the real
rows when their assets are pulled, else Gaussian tables of the same shapes (the report says which;
search cost does not depend on the values). Queries: ``--tokens`` random unit vectors (default 1024,
e.g. 64 images of 16 patch tokens). Every method gets the same l2-normalised queries and rows.

- ``quantizer``: :func:`align.kernels.quantizer.nearest_codes` (exact, in blocks of 1024 queries x
  ``chunk`` rows with a running max; what LQAE runs), at ``--chunks`` chunk sizes (default 2048);
- ``matmul``: ``queries @ rows.T`` alone, the full ``tokens x V`` float32 score matrix (the reference:
  no search can be cheaper than scoring every row);
- ``faiss``: ``IndexFlatIP.search(queries, 1)`` (exact inner-product search; index built outside the timing).

Time is the median of ``--repeats`` runs after one warm-up; torch and faiss use ``--threads`` threads.
Target: the quantizer within 1.5x of the matmul's time.

    python benchmarks/quantizer_speed.py [--tokens 1024] [--repeats 5] [--threads 1] [--output results/quantizer_speed.md]
    python benchmarks/quantizer_speed.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py
from align.kernels.quantizer import DEFAULT_CHUNK, nearest_codes

TARGET = 1.5
TABLES = {"minilm": ("hf:sentence-transformers/all-MiniLM-L6-v2", (30522, 384)),
          "gemma": ("gguf:gemma-3-270m.q4_k_m", (262144, 640))}


def load_rows(key: str, synthetic: bool) -> tuple[torch.Tensor, str]:
    """``(unit rows [V, D], source)``: the real table if it can be loaded, else Gaussian of its shape."""
    name, shape = TABLES[key]
    if not synthetic:
        try:
            from align.registry import EMBEDDING_TABLES
            import align.text  # noqa: F401  (registers the tables)

            return F.normalize(EMBEDDING_TABLES.create(name).weight, dim=-1).contiguous(), name
        except Exception as err:  # a missing asset: fall back, and say so in the report
            print(f"{name}: {type(err).__name__}: {err}; using a Gaussian table", file=sys.stderr)
    rows = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return F.normalize(rows, dim=-1), f"Gaussian {shape[0]} x {shape[1]}"


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def faiss_search(rows: torch.Tensor, queries: torch.Tensor, threads: int) -> Callable[[], torch.Tensor] | None:
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows.numpy())
    q = queries.numpy()
    return lambda: torch.from_numpy(index.search(q, 1)[1][:, 0].astype("int64"))


def bench_table(key: str, args: argparse.Namespace) -> list[dict]:
    rows, source = load_rows(key, args.synthetic)
    queries = F.normalize(torch.randn(args.tokens, rows.shape[1], generator=torch.Generator().manual_seed(1)), dim=-1)
    matmul_s, _ = median_time(lambda: queries @ rows.T, args.repeats)
    results = [{"table": source, "shape": tuple(rows.shape), "method": "matmul (reference)", "time": matmul_s}]
    reference = None
    for chunk in args.chunks:
        t, codes = median_time(lambda: nearest_codes(queries, rows, chunk=chunk), args.repeats)
        reference = codes if reference is None else reference
        results.append({"table": source, "shape": tuple(rows.shape), "method": f"quantizer, chunk {chunk}",
                        "time": t, "agree": float((codes == reference).float().mean())})
    search = faiss_search(rows, queries, args.threads)
    if search is not None:
        t, codes = median_time(search, args.repeats)
        results.append({"table": source, "shape": tuple(rows.shape), "method": "faiss IndexFlatIP", "time": t,
                        "agree": float((codes == reference).float().mean())})
    for r in results:
        r["tokens_per_s"] = args.tokens / r["time"]
        r["ratio"] = r["time"] / matmul_s
        print(f"{source} {r['method']}: {r['time'] * 1e3:.1f} ms, {r['ratio']:.2f}x matmul", file=sys.stderr)
    return results


def report(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Quantizer speed: {args.tokens} unit query tokens against whole tables, exact nearest row by cosine; "
        f"median of {args.repeats} runs, {args.threads} thread(s) for torch and faiss.",
        "",
        f"Target: the quantizer within {TARGET:g}x of the float32 matmul of the same shape (time ratio <= {TARGET:g}).",
        "",
        *markdown_table(
            ("table", "V x D", "method", "time (ms)", "tokens / s", "time / matmul", "same ids as quantizer"),
            [(r["table"], f"{r['shape'][0]} x {r['shape'][1]}", r["method"], r["time"] * 1e3, r["tokens_per_s"],
              r["ratio"], r.get("agree")) for r in rows],
            formats=("", "", "", ".1f", ",.0f", ".2f", ".4f")),
        "",
    ]
    for table in dict.fromkeys(r["table"] for r in rows):
        ours = [r for r in rows if r["table"] == table and r["method"].startswith("quantizer")]
        best = min(ours, key=lambda r: r["time"])
        default = next((r for r in ours if r["method"].endswith(f" {DEFAULT_CHUNK}")), best)
        verdict = "met" if default["ratio"] <= TARGET else "NOT met"
        faiss = next((r for r in rows if r["table"] == table and r["method"].startswith("faiss")), None)
        vs_faiss = "" if faiss is None else f"; faiss takes {faiss['time'] / default['time']:.2f}x the quantizer's time"
        lines.append(f"- {table}: quantizer (default {default['method'].split(', ')[1]}) at {default['ratio']:.2f}x "
                     f"the matmul, target <= {TARGET:g}x {verdict}{vs_faiss}.")
    lines += ["", machine_line(packages=("torch", "numpy", "faiss-cpu"), load=True)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default="minilm,gemma", help=f"comma-separated: {', '.join(TABLES)}")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--chunks", default="2048,8192,32768", help="comma-separated chunk sizes (codebook rows per block)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--synthetic", action="store_true", help="Gaussian tables instead of the real ones")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256 tokens, 2 repeats, Gaussian tables")
    parser.add_argument("--output", type=Path, default=Path("results/quantizer_speed.md"))
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.repeats, args.synthetic = 256, 2, True
    args.chunks = [int(c) for c in args.chunks.split(",")]
    torch.set_num_threads(args.threads)
    rows = [r for key in args.tables.split(",") for r in bench_table(key.strip(), args)]
    emit(report(rows, args), args.output)


if __name__ == "__main__":
    main()
