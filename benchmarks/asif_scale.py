"""ASIF's anchor search at scale: 10k queries against 1M synthetic unit-vector anchors streamed from disk.

For each dimension d the anchors are first written chunk by chunk (fixed seed, never whole in
memory) as safetensors shards in the feature-cache layout, then every method streams them:

(a) ``matmul``: the reference, the same float32 products (queries x anchors, same chunks and
    query blocks), results discarded;
(b) ``torch``: ASIF's exact top-k search (``relative_represent``: top-k, clamp, power, normalise);
(c) ``faiss``: the same through faiss ``IndexFlatIP`` per chunk;
(d) ``numpy``: a straightforward dense reference, ``np.dot`` per block + ``np.argpartition``, with the
    running top-k merged by another ``argpartition``.

Each method runs in a fresh subprocess; its wall time covers the search only (disk reads included,
interpreter start and imports excluded), its peak memory is the child's ``ru_maxrss``
(``resource.getrusage(RUSAGE_SELF)``), which includes the interpreter with torch, faiss and numpy
imported (the ``imports`` row measures that floor alone). Linux carries ``ru_maxrss`` over from the
forking process, so the driver never imports torch and generates the data in a child too; the
children's ``VmHWM`` is checked against it. Index sets of (c) and (d) are checked
against (b) (recall@k, 1.0 = identical up to ties). Target: (b) within 1.5x of (a)'s time and under
4 GB peak. The full size needs ~5 GB of disk for d=1280 and many minutes on 2 cores.

    python benchmarks/asif_scale.py [--anchors 1000000] [--queries 10000] [--dims 384,1280]
        [--k 800] [--methods matmul,torch,faiss,numpy] [--threads N] [--output results/asif_scale.md]
    python benchmarks/asif_scale.py --anchors 100000 --queries 1000          # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py; imports neither torch nor numpy

METHODS = ("matmul", "torch", "faiss", "numpy")


# ---------------------------------------------------------------- data


def write_anchors(folder: Path, count: int, dim: int, shard_rows: int, seed: int) -> Path:
    """``count`` random unit vectors as shards of ``shard_rows``, each from its own seeded generator."""
    import torch
    import torch.nn.functional as F

    from align.kernels.anchor_chunks import write_shards

    def chunks():
        for s, start in enumerate(range(0, count, shard_rows)):
            rows = min(shard_rows, count - start)
            generator = torch.Generator().manual_seed(seed * 1_000_003 + dim * 1009 + s)
            yield F.normalize(torch.randn(rows, dim, generator=generator), dim=1)

    return write_shards(folder, chunks(), key={"synthetic": "unit-gaussian", "dim": dim, "seed": seed})


def write_queries(path: Path, count: int, dim: int, seed: int) -> Path:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed * 7919 + dim)
    save_file({"queries": F.normalize(torch.randn(count, dim, generator=generator), dim=1)}, str(path))
    return path


# ---------------------------------------------------------------- one measurement (child process)


def _numpy_topk(queries, folder: Path, k: int, chunk_rows: int, memory_mb: float):
    import numpy as np

    from align.kernels.anchor_chunks import iter_chunks
    from align.kernels.topk import query_block_rows

    q = queries.numpy()
    best_v = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
    best_i = np.full((q.shape[0], k), -1, dtype=np.int64)
    offset = 0
    for chunk in iter_chunks(folder, chunk_rows, normalize=True):
        a = chunk.numpy()
        rows = query_block_rows(a.shape[0], memory_mb)
        kb = min(k, a.shape[0])
        for q0 in range(0, q.shape[0], rows):
            sims = q[q0:q0 + rows] @ a.T
            part = np.argpartition(-sims, kb - 1, axis=1)[:, :kb]
            vals = np.concatenate([best_v[q0:q0 + rows], np.take_along_axis(sims, part, 1)], axis=1)
            idx = np.concatenate([best_i[q0:q0 + rows], part + offset], axis=1)
            keep = np.argpartition(-vals, k - 1, axis=1)[:, :k]
            best_v[q0:q0 + rows] = np.take_along_axis(vals, keep, 1)
            best_i[q0:q0 + rows] = np.take_along_axis(idx, keep, 1)
        offset += a.shape[0]
    return best_i


def measure(method: str, folder: Path, queries_path: Path, k: int, chunk_rows: int, memory_mb: float,
            indices_out: Path | None) -> dict:
    import numpy as np
    import torch
    from safetensors.torch import load_file

    import faiss  # noqa: F401  (imported in every child, so the memory floor is the same)
    from align.kernels.anchor_chunks import iter_chunks
    from align.methods.asif.aligner import relative_represent
    from align.kernels.topk import query_block_rows

    queries = load_file(str(queries_path))["queries"]
    found = None
    started = time.perf_counter()
    if method == "matmul":
        rows = query_block_rows(chunk_rows, memory_mb)
        scratch = torch.empty(min(rows, queries.shape[0]) * chunk_rows)
        for chunk in iter_chunks(folder, chunk_rows):
            for q0 in range(0, queries.shape[0], rows):
                q = queries[q0:q0 + rows]
                torch.mm(q, chunk.T, out=scratch[:q.shape[0] * chunk.shape[0]].view(q.shape[0], chunk.shape[0]))
    elif method in ("torch", "faiss"):
        rel = relative_represent(queries, folder, k=k, p=8, backend=method, chunk_rows=chunk_rows, memory_mb=memory_mb)
        found = rel.indices.numpy()
    elif method == "numpy":
        found = _numpy_topk(queries, folder, k, chunk_rows, memory_mb)
    elif method != "imports":
        raise SystemExit(f"unknown method {method!r}")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    if found is not None and indices_out is not None:
        np.save(indices_out, found)
    return {"method": method, "seconds": seconds, "peak_mb": peak_mb, "hwm_mb": _vm_hwm_mb()}


def _vm_hwm_mb() -> float | None:
    """This process's own peak RSS (``VmHWM``), a cross-check of ``ru_maxrss``, which Linux carries
    over an ``execve`` from the process that forked it (hence the driver never imports torch)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- driver


def run_child(*options: str, threads: int | None = None) -> dict:
    """Run this script in a fresh interpreter with ``options``; its last stdout line is JSON. ``threads``
    caps torch, faiss and numpy's BLAS alike (through the OpenMP/BLAS environment variables)."""
    env = dict(os.environ)
    if threads:
        env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    done = subprocess.run([sys.executable, __file__, *options], check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(found_path: Path, reference_path: Path) -> dict:
    import numpy as np
    import torch

    from align.kernels.topk import recall_at_k

    found, reference = torch.from_numpy(np.load(found_path)), torch.from_numpy(np.load(reference_path))
    return {"recall": recall_at_k(found, reference)}


def bench_dim(dim: int, args: argparse.Namespace, work: Path) -> list[dict]:
    """Write the anchors, then measure each method, each step in its own process: this driver stays
    small (no torch), so the children's ``ru_maxrss`` is their own."""
    folder, queries = work / f"anchors-{dim}", work / f"queries-{dim}.safetensors"
    made = run_child("--generate", str(dim), "--anchors-dir", str(folder), "--queries-file", str(queries),
                     "--anchors", str(args.anchors), "--queries", str(args.queries),
                     "--shard-rows", str(args.shard_rows), "--seed", str(args.seed))
    print(f"d={dim}: wrote {args.anchors} anchors in {made['seconds']:.1f}s", file=sys.stderr)
    rows = []
    for method in ("imports", *args.methods):
        found = work / f"found-{dim}-{method}.npy"
        result = run_child("--measure", method, "--anchors-dir", str(folder), "--queries-file", str(queries),
                           "--k", str(args.k), "--chunk-rows", str(args.chunk_rows), "--memory-mb",
                           str(args.memory_mb), "--indices-out", str(found), threads=args.threads)
        hwm = result.get("hwm_mb")
        if hwm and abs(hwm - result["peak_mb"]) > 0.1 * result["peak_mb"]:
            print(f"d={dim}: {method}: ru_maxrss {result['peak_mb']:.0f} MB vs VmHWM {hwm:.0f} MB", file=sys.stderr)
        print(f"d={dim}: {method}: {result['seconds']:.2f}s, {result['peak_mb']:.0f} MB", file=sys.stderr)
        rows.append({**result, "dim": dim, "recall": None})
    reference = work / f"found-{dim}-torch.npy"
    for row in rows:
        found = work / f"found-{dim}-{row['method']}.npy"
        if found.is_file() and reference.is_file():
            row["recall"] = run_child("--compare", str(found), str(reference))["recall"]
    for path in work.glob(f"found-{dim}-*.npy"):
        path.unlink()
    if not args.keep:
        import shutil

        shutil.rmtree(folder)
        queries.unlink()
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    cells = []
    for dim in args.dims:
        mine = [r for r in rows if r["dim"] == dim]
        ref = next((r for r in mine if r["method"] == "matmul"), None)
        for r in mine:
            timed = r["method"] != "imports"
            cells.append((dim, r["method"], r["seconds"] if timed else None,
                          r["seconds"] / ref["seconds"] if ref and timed else None, r["peak_mb"],
                          r["peak_mb"] / ref["peak_mb"] if ref else None, r["recall"]))
    threads = args.threads or os.cpu_count()
    lines = [
        f"ASIF anchor search: {args.queries} queries x {args.anchors} anchors streamed from safetensors shards "
        f"({args.shard_rows} rows each), k={args.k}, p=8, chunks of {args.chunk_rows} anchors, block budget "
        f"{args.memory_mb} MB; {threads} thread(s) per method.",
        "Time: search only (disk reads included). Peak: child ru_maxrss, which includes the `imports` floor. "
        "Recall: top-k index sets vs the torch search.",
        "",
        *markdown_table(("d", "method", "wall (s)", "vs matmul", "peak RSS (MB)", "vs matmul", "recall@k vs torch"),
                        cells, formats=("d", "", ".2f", "{:.2f}x", ".0f", "{:.2f}x", ".4f")),
        "",
    ]
    for dim in args.dims:
        ref = next((r for r in rows if r["dim"] == dim and r["method"] == "matmul"), None)
        mine = next((r for r in rows if r["dim"] == dim and r["method"] == "torch"), None)
        if ref and mine:
            ratio = mine["seconds"] / ref["seconds"]
            lines.append(f"- d={dim}: ASIF torch search {ratio:.2f}x the matmul time (target <= 1.5x: "
                         f"{'met' if ratio <= 1.5 else 'missed'}), peak {mine['peak_mb']:.0f} MB (target < 4096 MB: "
                         f"{'met' if mine['peak_mb'] < 4096 else 'missed'}).")
    lines += ["", machine_line(threads, packages=("torch", "numpy", "faiss-cpu"), load=True)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dims", type=lambda s: [int(d) for d in s.split(",")], default=[384, 1280])
    parser.add_argument("--k", type=int, default=800)
    parser.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    parser.add_argument("--chunk-rows", type=int, default=65536)
    parser.add_argument("--shard-rows", type=int, default=65536)
    parser.add_argument("--memory-mb", type=float, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="threads for every method (default: all cores)")
    parser.add_argument("--workdir", type=Path, help="where the shards go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the anchor shards in --workdir")
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    # internal: one measurement in a fresh process
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--anchors-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--indices-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.anchors_dir, args.queries_file, args.k, args.chunk_rows,
                                 args.memory_mb, args.indices_out)))
        return
    if args.generate:
        started = time.perf_counter()
        write_anchors(args.anchors_dir, args.anchors, args.generate, args.shard_rows, args.seed)
        write_queries(args.queries_file, args.queries, args.generate, args.seed)
        print(json.dumps({"seconds": time.perf_counter() - started}))
        return
    if args.compare:
        print(json.dumps(compare(*args.compare)))
        return
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if "torch" not in args.methods:
        args.methods.append("torch")  # the recall column's reference
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        rows = [row for dim in args.dims for row in bench_dim(dim, args, args.workdir)]
    else:
        with tempfile.TemporaryDirectory(prefix="asif-scale-") as tmp:
            rows = [row for dim in args.dims for row in bench_dim(dim, args, Path(tmp))]
    emit(table(rows, args), args.output)


if __name__ == "__main__":
    main()
