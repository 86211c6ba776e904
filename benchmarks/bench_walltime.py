"""Wall time of `align bench` on a cold feature cache, then again on the warm cache it left.

Both runs use the same config in fresh results folders (so nothing is skipped as already done);
the first starts from an empty feature cache, the second reuses it. Assets must be pulled already
(`make assets-bench`). The ratio warm/cold is the fraction of a run that is not embedding.

    python benchmarks/bench_walltime.py [--config configs/bench/default.yaml] [--output results/walltime.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(config: str, results: Path, features: Path) -> float:
    env = {**os.environ, "ALIGN_FEATURE_CACHE": str(features)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "align", "bench", "--config", config, "--results", str(results), "--quiet"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/bench/default.yaml")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="align-walltime-") as tmp:
        work = Path(tmp)
        cold = timed_run(args.config, work / "results-cold", work / "features")
        warm = timed_run(args.config, work / "results-warm", work / "features")
    table = "\n".join([
        f"`align bench --config {args.config}`, {platform.machine()}, {os.cpu_count()} cores",
        "",
        "| run | wall time (s) | vs cold |",
        "|---|---:|---:|",
        f"| cold feature cache | {cold:.1f} | 1.00x |",
        f"| warm feature cache | {warm:.1f} | {warm / cold:.2f}x |",
    ])
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
