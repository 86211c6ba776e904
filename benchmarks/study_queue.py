"""Run the pilot fits a study still needs, a few at a time, so that any session (or machine) picks up where
the last one stopped with one command.

The queue (``configs/studies/queue.yaml``) lists fits in the order they should run: the pilot script, its
config, the variant, the seed and the epochs. A fit is done when its committed history
(``studies/<method>/<name>/<variant>-seed<seed>.json``, not ``.partial``) has at least that many epochs; a
fit not done is started (it resumes from its own checkpoint under ``results/``). ``--streams`` fits run
side by side, each on one thread under ``nice``, their logs and PIDs in ``results/queue/``; stop one by its
PID (``kill -9``: Lightning ignores SIGTERM), and it resumes from its last epoch next time.

    python benchmarks/study_queue.py --list                 # what is done, under way or waiting
    nohup python benchmarks/study_queue.py --streams 2 &    # run what is left, two at a time
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

import _pilot  # benchmarks/_pilot.py
from _common import markdown_table, write_atomic  # benchmarks/_common.py

ROOT = _pilot.ROOT
QUEUE = ROOT / "configs" / "studies" / "queue.yaml"
LOGS = ROOT / "results" / "queue"
METHODS = {"vlap_pilot.py": "vlap", "lqae_pilot.py": "lqae"}


def load_queue(path: Path) -> list[dict[str, Any]]:
    """The queue's fits, each checked: a known pilot script, its config present, a seed and epochs."""
    entries = yaml.safe_load(path.read_text()) or {}
    fits = []
    for i, fit in enumerate(entries.get("fits", [])):
        if not isinstance(fit, dict) or fit.get("script") not in METHODS:
            raise SystemExit(f"study_queue: {path.name} fit {i + 1}: script must be one of {', '.join(METHODS)}")
        config = ROOT / fit.get("config", "")
        if not config.is_file():
            raise SystemExit(f"study_queue: {path.name} fit {i + 1}: no config {fit.get('config')!r}")
        fits.append({"script": fit["script"], "config": config, "variant": str(fit["variant"]),
                     "seed": int(fit.get("seed", 0)), "epochs": int(fit["epochs"])})
    return fits


def history_path(fit: dict[str, Any], partial: bool = False) -> Path:
    config = _pilot.load_config(fit["config"], METHODS[fit["script"]])
    return config["histories"] / f"{fit['variant']}-seed{fit['seed']}{'.partial' if partial else ''}.json"


def epochs_done(fit: dict[str, Any]) -> int:
    """Epochs of the fit's finished history (0 without one)."""
    path = history_path(fit)
    return int(json.loads(path.read_text()).get("epochs", 0)) if path.is_file() else 0


def log_name(fit: dict[str, Any]) -> str:
    name = f"{fit['config'].stem}-{fit['variant']}-seed{fit['seed']}-e{fit['epochs']}"
    return "".join(c if c.isalnum() or c in "-_.@=," else "_" for c in name)


def running(fit: dict[str, Any]) -> bool:
    """Whether the fit's recorded PID is alive (a fit started by an earlier call still under way)."""
    pid_file = LOGS / f"{log_name(fit)}.pid"
    if not pid_file.is_file():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def command(fit: dict[str, Any]) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / fit["script"]), "--config", str(fit["config"]),
            "--variant", fit["variant"], "--seed", str(fit["seed"]), "--epochs", str(fit["epochs"])]


def status_rows(fits: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for fit in fits:
        done, partial = epochs_done(fit), history_path(fit, partial=True)
        state = "done" if done >= fit["epochs"] else "under way" if running(fit) else "waiting"
        snapshot = json.loads(partial.read_text()).get("epochs") if partial.is_file() else None
        rows.append((fit["config"].name, fit["variant"], fit["seed"], f"{done}/{fit['epochs']}",
                     snapshot, state))
    return rows


def run(fits: list[dict[str, Any]], streams: int, poll: float = 30.0) -> None:
    """Start the waiting fits in queue order until none is left, while fewer than ``streams`` of the queue's
    fits are under way (a fit started by an earlier call, whose PID file is alive, counts too)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started: list[subprocess.Popen] = []
    tried: set[str] = set()  # a fit is started once a call: one that stops short is reported, not retried
    while True:
        waiting = [f for f in fits if epochs_done(f) < f["epochs"] and not running(f) and log_name(f) not in tried]
        if not waiting:
            break
        if sum(running(f) for f in fits) >= streams:
            time.sleep(poll)
            started = [p for p in started if p.poll() is None]  # reap, so a finished fit's PID is not alive
            continue
        fit, name = waiting[0], log_name(waiting[0])
        with open(LOGS / f"{name}.log", "w") as log:
            proc = subprocess.Popen(["nice", "-n", "5", *command(fit)], stdout=log, stderr=subprocess.STDOUT,
                                    env=env, cwd=ROOT)
        write_atomic(LOGS / f"{name}.pid", str(proc.pid))
        print(f"[{time.strftime('%H:%M:%S')}] started {name} (pid {proc.pid})", flush=True)
        started.append(proc)
        tried.add(name)
        time.sleep(min(1.0, poll))  # a moment between starts: each loads its data and model
    for proc in started:
        proc.wait()
    for fit in fits:
        if log_name(fit) in tried and epochs_done(fit) < fit["epochs"]:
            print(f"study_queue: {log_name(fit)} stopped short of its epochs; see {LOGS / log_name(fit)}.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=Path, default=QUEUE)
    parser.add_argument("--streams", type=int, default=2, help="fits side by side (one thread each)")
    parser.add_argument("--list", action="store_true", help="say what is done, under way or waiting; run nothing")
    args = parser.parse_args()
    fits = load_queue(args.queue)
    if args.list:
        print("\n".join(markdown_table(("config", "variant", "seed", "epochs done", "last snapshot (epochs)", "state"),
                                       status_rows(fits), missing="–")))
    else:
        run(fits, max(1, args.streams))


if __name__ == "__main__":
    main()
