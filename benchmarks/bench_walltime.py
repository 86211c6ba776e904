"""Wall time of `align bench`: cold feature cache, warm feature cache, and a plain re-run.

1. cold: empty feature cache, fresh results folder (everything embedded and scored);
2. warm: the cache left by run 1, a fresh results folder (everything scored again, nothing embedded);
3. re-run: run 2 again in the same results folder, which is what a second `make bench` does
   (finished results are skipped).
Assets must be pulled already (`make assets-bench`).

    python benchmarks/bench_walltime.py [--config configs/bench/default.yaml] [--output results/walltime.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py


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
        rerun = timed_run(args.config, work / "results-warm", work / "features")
    rows = [("cold feature cache", cold, 1.0), ("warm feature cache, results recomputed", warm, warm / cold),
            ("second run, results already there", rerun, rerun / cold)]
    emit("\n".join([
        f"`align bench --config {args.config}`",
        "",
        *markdown_table(("run", "wall time (s)", "vs cold"), rows, formats=("", ".1f", "{:.2f}x")),
        "",
        machine_line(load=True),
    ]), args.output)


if __name__ == "__main__":
    main()
