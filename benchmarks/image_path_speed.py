"""Float32 image path, end to end: the code at a reference commit against the working tree.

Per encoder: images/s of decoding ``--images`` dataset images and computing their pooled features a
batch at a time (``encode_pil``, what the feature cache runs: decode, preprocess, forward), with the
``align/`` of ``--commit`` (extracted with ``git archive`` into a temporary folder) and with the
working tree's. Each runs in its own worker process, both built before any timing and idle while the
other runs; the runs alternate (ref, new, ref, new, ...) and the best of ``--repeats`` counts, so load
from other jobs reaches both sides alike. The first pass of each (oneDNN warm-up; for the working
tree also building the encoder's inference copy, :mod:`align.encoders.inference`) is reported apart.
Features of the two sides are compared: largest absolute difference, largest difference relative to
the item's norm, smallest cosine. ``--parts`` adds a table of the working tree's changes one at a
time (batched preprocessing, channels-last copy, BatchNorm folded, activations in place), cumulative,
timed the same way in the driver's own process.

    python benchmarks/image_path_speed.py [--commit b19147a] [--encoders NAME ...] [--dataset digits
        --split train --images 512 --batch-size 64 --repeats 3] [--parts] [--output docs/image_path_speed.md]

A worker checks that ``align`` really comes from the folder it was given (``PYTHONPATH`` entries
precede the editable install) and says where, before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ENCODERS = ["torchvision:mobilenet_v2.imagenet1k_v1", "efficientnet_lite:lite0.imagenet"]


# -- worker: one side (ref or new), one encoder ---------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    """Answers ``run`` (one timed pass, seconds) and ``save PATH`` (last features) on stdin/stdout.
    Imports only what both sides have (``align.embed.encode_pil``, the registries)."""
    import torch

    import align
    import align.data  # registers the datasets
    import align.encoders  # registers the encoders
    from align.embed import encode_pil
    from align.registry import DATASETS, VISION_ENCODERS

    split = DATASETS.create(args.dataset).load(args.split)
    count = min(args.images, split.num_items)
    encoder = VISION_ENCODERS.create(args.worker)
    features: list[torch.Tensor] = []

    def one_pass() -> float:
        start = time.perf_counter()
        chunks = []
        for first in range(0, count, args.batch_size):
            images = [split.load_image(i) for i in range(first, min(count, first + args.batch_size))]
            chunks.append(encode_pil(encoder, images)[0])
        seconds = time.perf_counter() - start
        features[:] = [torch.cat(chunks)]
        return seconds

    reply({"align": str(Path(align.__file__).resolve()), "images": count, "threads": torch.get_num_threads()})
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "run":
            reply({"seconds": one_pass()})
        elif command == "save":
            torch.save(features[0], rest)
            reply({"saved": rest})
        else:
            return


def reply(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


# -- driver --------------------------------------------------------------------------------------
class Side:
    """A worker process for one side: ``python this.py --worker ENCODER`` with ``align`` from ``root``."""

    def __init__(self, label: str, root: Path, encoder: str, args: argparse.Namespace) -> None:
        self.label, self.root = label, root
        paths = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", encoder, "--dataset", args.dataset,
                   "--split", args.split, "--images", str(args.images), "--batch-size", str(args.batch_size)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.hello = self.read()
        where = Path(self.hello["align"])
        if root.resolve() not in where.parents:
            self.close()
            raise SystemExit(f"{label}: align was imported from {where}, not from {root}")

    def read(self) -> dict[str, Any]:
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        line = stdout.readline()
        if not line:
            raise SystemExit(f"{self.label} worker ended early (exit {self.process.wait()})")
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        stdin.write(command + "\n")
        stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait()


def extract(commit: str, folder: Path) -> Path:
    """``align/`` of ``commit`` (``git archive``) under ``folder``; returns ``folder``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "align"], check=True,
                             capture_output=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    tar = folder / "align.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as handle:
        handle.extractall(folder, filter="data")
    tar.unlink()
    return folder


def progress(text: str) -> None:
    """One line on stderr per timed pass, so a long run shows where it is (and what it had, if cut off)."""
    print(text, file=sys.stderr, flush=True)


def timed(side: Side, encoder: str, what: str) -> float:
    seconds = float(side.ask("run")["seconds"])
    progress(f"{encoder} {side.label} {what}: {seconds:.2f} s")
    return seconds


def compare(encoder: str, ref_root: Path, args: argparse.Namespace, scratch: Path) -> tuple[tuple, int]:
    """One table row (timings of both sides, interleaved, and how far their features are apart) and
    the number of images timed."""
    import torch
    import torch.nn.functional as F

    sides: list[Side] = []
    try:
        sides += [Side("ref", ref_root, encoder, args), Side("new", REPO, encoder, args)]
        first = [timed(side, encoder, "first pass") for side in sides]
        best = [float("inf")] * len(sides)
        for repeat in range(args.repeats):
            for i, side in enumerate(sides):
                best[i] = min(best[i], timed(side, encoder, f"pass {repeat + 1}"))
        saved = [side.ask(f"save {scratch / f'{side.label}.pt'}")["saved"] for side in sides]
    finally:
        for side in sides:
            side.close()
    ref, new = (torch.load(path).double() for path in saved)
    count = sides[0].hello["images"]
    relative = float(((new - ref).norm(dim=1) / ref.norm(dim=1)).max())
    return (encoder, count / best[0], count / best[1], best[0] / best[1], first[0], first[1],
            float((new - ref).abs().max()), relative, float(F.cosine_similarity(new, ref).min())), count


# -- parts: what each change gives, in this process (the working tree) ---------------------------
def part_runners(encoder: Any) -> dict[str, tuple[Any, Any]]:
    """Cumulative variants of the working tree's path: (preprocess a batch, module that computes)."""
    import torch

    from align.encoders import inference
    from align.encoders.transforms import preprocess_batch

    def one_at_a_time(preprocess: Any, images: list) -> torch.Tensor:
        return torch.stack([preprocess(image) for image in images])

    plan = inference.common_plan(inference.plan_of(encoder, m) for m in inference.TRACED_METHODS)
    folds_only = inference.Plan(folds=plan.folds)
    return {
        "per-image preprocessing, the encoder itself (as at ref)": (one_at_a_time, encoder),
        "+ batched preprocessing": (preprocess_batch, encoder),
        "+ channels-last copy": (preprocess_batch, inference.inference_copy(encoder, inference.Plan())),
        "+ BatchNorm folded": (preprocess_batch, inference.inference_copy(encoder, folds_only)),
        "+ activations in place (= new)": (preprocess_batch, inference.inference_copy(encoder, plan)),
    }


def parts_table(name: str, args: argparse.Namespace) -> list[tuple]:
    """Rows (encoder, variant, img/s, speed-up over the first) timed interleaved, best of ``repeats``."""
    import torch

    import align.data  # noqa: F401  (registers the datasets)
    from align.precision import as_input
    from align.registry import DATASETS, VISION_ENCODERS

    split = DATASETS.create(args.dataset).load(args.split)
    count = min(args.images, split.num_items)
    encoder = VISION_ENCODERS.create(name)
    runners = part_runners(encoder)

    @torch.inference_mode()
    def one_pass(preprocess_batch: Any, module: Any) -> float:
        start = time.perf_counter()
        for first in range(0, count, args.batch_size):
            images = [split.load_image(i) for i in range(first, min(count, first + args.batch_size))]
            module(as_input(module, preprocess_batch(encoder.preprocess, images)))
        return time.perf_counter() - start

    best = dict.fromkeys(runners, float("inf"))
    for label, runner in runners.items():
        one_pass(*runner)  # warm-up
    for repeat in range(args.repeats):
        for label, runner in runners.items():
            best[label] = min(best[label], one_pass(*runner))
            progress(f"{name} {label} pass {repeat + 1}: best {best[label]:.2f} s")
    base = next(iter(best.values()))
    return [(name, label, count / seconds, base / seconds) for label, seconds in best.items()]


def drive(args: argparse.Namespace) -> None:
    from _common import emit, machine_line, markdown_table  # benchmarks/_common.py

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.commit], check=True,
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="image-path-") as tmp:
        ref_root = extract(args.commit, Path(tmp) / "ref")
        rows, counts = zip(*(compare(name, ref_root, args, Path(tmp)) for name in args.encoders))
    title = (f"Float32 end to end (decode + preprocess + forward, `encode_pil` per batch): {args.dataset}/"
             f"{args.split}, {min(counts)} images, batch {args.batch_size}; ref = `align/` at {commit}, new = "
             f"working tree; alternating runs, best of {args.repeats}")
    lines = [title, "",
             *markdown_table(("encoder", "ref img/s", "new img/s", "speed-up", "ref first pass s",
                              "new first pass s", "max abs diff", "max rel diff", "min cosine"), rows,
                             formats=("", ".1f", ".1f", "{:.2f}x", ".2f", ".2f", ".2e", ".2e", ".8f")),
             ""]
    if args.parts:
        parts = [row for name in args.encoders for row in parts_table(name, args)]
        heading = ("What each change gives (working tree only, one process, same images; cumulative, "
                   f"alternating runs, best of {args.repeats})")
        lines += [heading, "",
                  *markdown_table(("encoder", "path", "img/s", "speed-up"), parts,
                                  formats=("", "", ".1f", "{:.2f}x")), ""]
    lines.append(machine_line(load=True))
    emit("\n".join(lines), args.output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="b19147a", help="reference commit (its align/ is timed as 'ref')")
    parser.add_argument("--encoders", nargs="+", default=DEFAULT_ENCODERS)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--split", default="train")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", action="store_true",
                        help="also time each change on its own (cumulative), in the working tree")
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument("--worker", metavar="ENCODER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
