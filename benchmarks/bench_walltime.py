"""Wall time of `make bench` from empty caches, and where it goes: assets, then `align bench` by phase.

0. assets: `align assets pull` of the benchmark's assets into an empty ``ALIGN_HOME`` (what a fresh
   machine's `make bench` does after installing the package; `--no-assets` uses the existing cache);
1. cold: empty feature cache, fresh results folder (everything embedded and scored);
2. warm: the cache left by run 1, a fresh results folder (everything scored again, nothing embedded);
3. re-run: run 2 again in the same results folder, which is what a second `make bench` does
   (finished results are skipped).

Each `align bench` run prints its time by phase (:mod:`align.bench.execute.phases`: building encoders,
image and text features, sweeps, fits, scoring, other), which the table splits into columns. The
virtualenv and the package install (`pip`) are not timed: they come before any of this and depend on
the machine's package cache.

    python benchmarks/bench_walltime.py [--config configs/bench/default.yaml] [--no-assets]
                                        [--keep-cold results/default] [--output results/walltime.md]

``--keep-cold`` writes the cold run's results there (a fresh folder: it must not exist), so one cold run
also gives the leaderboard that `make bench` writes to ``results/default``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py

BENCH_ASSETS = ("mobilenet_v2.imagenet1k_v1", "all-minilm-l6-v2", "fashion-mnist", "emoji-google")  # Makefile's
PHASE_LINE = re.compile(r"^time by phase: (.*)$", re.MULTILINE)


def pull_assets(home: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "align", "assets", "pull", *BENCH_ASSETS], check=True,
                   env={**os.environ, "ALIGN_HOME": str(home)}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def timed_run(config: str, results: Path, features: Path, home: Path | None) -> tuple[float, dict[str, float]]:
    """Wall seconds of one `align bench` and its seconds by phase."""
    env = {**os.environ, "ALIGN_FEATURE_CACHE": str(features)} | ({"ALIGN_HOME": str(home)} if home else {})
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "align", "bench", "--config", config, "--results", str(results),
                          "--quiet"], check=True, env=env, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - started
    found = PHASE_LINE.search(out)
    parts = [part.rsplit(" ", 2) for part in found.group(1).split(", ")] if found else []  # "fits 30.1 s"
    return seconds, {name: float(value) for name, value, _ in parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/bench/default.yaml")
    parser.add_argument("--no-assets", action="store_true", help="use the existing asset cache (no pull)")
    parser.add_argument("--keep-cold", type=Path, help="write the cold run's results here (must not exist)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.keep_cold is not None and args.keep_cold.exists():
        raise SystemExit(f"bench_walltime: --keep-cold {args.keep_cold} exists; the cold run needs a fresh folder")
    with tempfile.TemporaryDirectory(prefix="align-walltime-") as tmp:
        work = Path(tmp)
        home = None if args.no_assets else work / "home"
        assets = None if home is None else pull_assets(home)
        cold = args.keep_cold or work / "results-cold"
        runs = {"cold feature cache": timed_run(args.config, cold, work / "features", home),
                "warm feature cache, results recomputed": timed_run(args.config, work / "results-warm",
                                                                    work / "features", home),
                "second run, results already there": timed_run(args.config, work / "results-warm",
                                                               work / "features", home)}
    phases = list(dict.fromkeys(name for _, split in runs.values() for name in split))
    # what the run's own clock does not see: starting Python and importing torch, writing the leaderboard
    rows = [(name, seconds, *(split.get(p) for p in phases), seconds - sum(split.values()))
            for name, (seconds, split) in runs.items()]
    total = (assets or 0.0) + runs["cold feature cache"][0]
    lines = [f"`align bench --config {args.config}`, wall time in seconds, split by phase:", "",
             *markdown_table(("run", "wall time", *phases, "start-up + report"), rows,
                             formats=("", *(".1f",) * (2 + len(phases))), missing="-"), ""]
    if assets is not None:
        lines += [f"Assets pulled into an empty ALIGN_HOME first: {assets:.1f} s; with the cold run, "
                  f"{total:.1f} s from empty caches (the virtualenv and `pip install` not counted).", ""]
    emit("\n".join([*lines, machine_line(load=True)]), args.output)


if __name__ == "__main__":
    main()
