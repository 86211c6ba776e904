"""Every generated page whose inputs are committed, with the command that regenerates it, so a committed
table can be checked against what the committed results give (issue 33).

    python benchmarks/generated.py                # regenerate them all, tables and figures (make tables)
    python benchmarks/generated.py --check        # list each committed table that differs (make tables-check)
    python benchmarks/generated.py --check --rev HEAD   # the same on the files as committed, not the working tree

``--check`` regenerates every page into a temporary folder laid out like the repository (the page links its
figure by a relative path) and compares the Markdown only: a PNG's bytes change with matplotlib's version,
so figures are drawn there but never compared, and written into the repository only without ``--check``.

Leaderboard blocks (:data:`LEADERBOARDS`: README's ``bench`` and ``all-methods``, docs/studies/shapes.md's
``shapes``) are rebuilt by ``align report`` from the snapshot of their result files that
``benchmarks/update_readme.py`` commits under ``studies/leaderboards/`` when it copies a block in; a block
whose snapshot is not committed yet is named as unchecked, not failed. Study blocks (:data:`BLOCKS`: the
README's few lines of a study, what held) are written by their study's ``--report --summary``.

Not here: the figure tables of docs/studies/tables.md, which ``benchmarks/update_readme.py`` copies from
results/ (hours of `make figures`), which git ignores, so nothing committed can regenerate or check them.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/update_readme.py, run as a script or loaded
from _common import write_atomic  # noqa: E402
from update_readme import LEADERBOARDS as COPIED, SNAPSHOTS, block_between, replace_between  # noqa: E402


@dataclass(frozen=True)
class Generated:
    """A page (and the figure it links) that ``command`` writes from committed files, paths from the root."""

    page: str
    command: tuple[str, ...]  # run from the root by this Python, with --output page [--figure figure] added
    figure: str | None = None

    def argv(self, out: Path) -> list[str]:
        """The command writing the page and figure under ``out`` (the root, or a folder laid out like it)."""
        figure = ["--figure", str(out / self.figure)] if self.figure else []
        return [sys.executable, *self.command, "--output", str(out / self.page), *figure]

    def shown(self) -> str:
        figure = f" --figure {self.figure}" if self.figure else ""
        return f"python {' '.join(self.command)} --output {self.page}{figure}"


PILOT = ("benchmarks/vlap_pilot.py", "--report")  # reads studies/vlap/<config name>/*.json
CODEBOOK_VLP = "benchmarks/codebook_vlp_compare.py"
GENERATED = (
    Generated("docs/studies/vlap_pilot.md", PILOT, "docs/figures/vlap_pilot_curves.png"),
    Generated("docs/studies/vlap_pilot_shapes.md", (*PILOT, "--config", "configs/studies/vlap_pilot_shapes.yaml"),
              "docs/figures/vlap_pilot_shapes_curves.png"),
    Generated("docs/studies/lqae_pilot.md", ("benchmarks/lqae_pilot.py", "--report"),
              "docs/figures/lqae_pilot_curves.png"),
    # Codebook-VLP's five-arm study: its validation, then (as its fits finish) the study's tables
    Generated("docs/studies/codebook_vlp_study.md", (CODEBOOK_VLP, "--report", "--runs", "studies/codebook_vlp/study"),
              "docs/figures/codebook_vlp_study_codes.png"),
    # Codebook-VLP's capacity probe: validation only, so the page draws its curves (<figure stem>_validation.png)
    *(Generated(f"studies/codebook_vlp/capacity/{probe}.md",
                (CODEBOOK_VLP, "--report", "--runs", f"studies/codebook_vlp/capacity/{probe}"),
                f"studies/codebook_vlp/capacity/{probe}.png") for probe in ("layers2", "layers4")),
)


def run_quietly(argv: list[str], root: Path, shown: str) -> None:
    """``argv`` run from ``root``, its printed report dropped; a failure exits naming ``shown`` and its stderr."""
    done = subprocess.run(argv, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"`{shown}` failed ({done.returncode}):\n{done.stderr}")


@dataclass(frozen=True)
class Leaderboard:
    """A ``<!-- marker:start/end -->`` block of ``page`` that ``align report`` writes from the committed result
    files under ``results`` (paths from the root)."""

    page: str
    marker: str
    results: str

    def shown(self) -> str:
        return f"align report {self.results}, copied into {self.page} ({self.marker})"

    def missing(self, root: Path) -> str | None:
        """Why the block cannot be rebuilt under ``root`` (its results are not committed), or None."""
        if (root / self.results).is_dir():
            return None
        return f"{self.results}/ is not committed (benchmarks/update_readme.py writes it with the block)"

    def text(self, root: Path) -> str:
        """``align report`` on a copy of the committed results (the report writes its leaderboard into the
        folder it reads, and the committed snapshot is never written)."""
        with tempfile.TemporaryDirectory(prefix="align-leaderboard-") as tmp:
            copy = Path(tmp) / "results"
            shutil.copytree(root / self.results, copy)
            run_quietly([sys.executable, "-m", "align", "report", str(copy)], root, self.shown())
            return (copy / "leaderboard.md").read_text().rstrip()


@dataclass(frozen=True)
class Block:
    """A ``<!-- marker:start/end -->`` block of ``page`` whose text ``command`` writes (``--output`` added) from
    committed files: a study's few lines in the README."""

    page: str
    marker: str
    command: tuple[str, ...]

    def shown(self) -> str:
        return f"python {' '.join(self.command)} --output BLOCK, copied into {self.page} ({self.marker})"

    def missing(self, root: Path) -> str | None:
        return None  # its inputs are committed with the study

    def text(self, root: Path) -> str:
        """What the command writes from ``root``'s files (run from ``root`` by this Python)."""
        with tempfile.TemporaryDirectory(prefix="align-block-") as tmp:
            out = Path(tmp) / "block.md"
            run_quietly([sys.executable, *self.command, "--output", str(out)], root, self.shown())
            return out.read_text().rstrip()


LEADERBOARDS = tuple(Leaderboard(page, marker, f"{SNAPSHOTS}/{folder}") for marker, page, folder in COPIED)
BLOCKS = (Block("README.md", "codebook-vlp-study",
                (CODEBOOK_VLP, "--report", "--summary", "--runs", "studies/codebook_vlp/study")),)
MARKED = (*LEADERBOARDS, *BLOCKS)  # every marker block made from committed files


def regenerate(entry: Generated, root: Path, out: Path) -> None:
    """Run ``entry``'s command on ``root``'s files, writing under ``out``; its printed report is dropped."""
    for path in (entry.page, entry.figure):
        if path:
            (out / path).parent.mkdir(parents=True, exist_ok=True)
    run_quietly(entry.argv(out), root, entry.shown())


def difference(committed: Path, fresh: Path) -> str | None:
    """Where ``committed`` first differs from ``fresh``, or None when they are the same text."""
    if not committed.is_file():
        return "missing"
    old, new = committed.read_text().splitlines(), fresh.read_text().splitlines()
    if old == new:
        return None
    line = next((i for i, (a, b) in enumerate(zip(old, new), 1) if a != b), min(len(old), len(new)) + 1)
    return f"line {line} differs"


def write_block(root: Path, page: str, marker: str, text: str) -> None:
    """``text`` between ``marker``'s lines of ``root / page``, written only if it changes the file."""
    path = root / page
    old = path.read_text()
    new = replace_between(old, marker, text, page)
    if new != old:
        write_atomic(path, new)


def check(root: Path = ROOT, entries: tuple[Generated, ...] = GENERATED,
          marked: tuple[Leaderboard | Block, ...] = MARKED) -> tuple[list[str], list[str]]:
    """One line per committed page under ``root`` (and marker block) that differs from what its command gives
    now; and one line per block whose inputs are not committed, so it is not checked."""
    problems, unchecked = [], []
    with tempfile.TemporaryDirectory(prefix="align-generated-") as tmp:
        for entry in entries:
            regenerate(entry, root, Path(tmp))
            found = difference(root / entry.page, Path(tmp) / entry.page)
            if found:
                problems.append(f"{entry.page}: {found}; regenerate it with `{entry.shown()}` (or `make tables`)")
    for entry in marked:
        where = f"{entry.page} ({entry.marker})"
        why = entry.missing(root)
        if why:
            unchecked.append(f"{where}: not checked, {why}")
            continue
        try:
            fresh = entry.text(root)
        except SystemExit as failed:  # e.g. a result file changed after align bench sealed it
            problems.append(f"{where}: {failed}")
            continue
        if block_between((root / entry.page).read_text(), entry.marker) != fresh:
            problems.append(f"{where}: the block differs from `{entry.shown()}` (or `make tables`)")
    return problems, unchecked


def export(rev: str, dest: Path, root: Path = ROOT) -> Path:
    """The repository's files as committed at ``rev``, written under ``dest``: a check of them is not moved by
    what a run under way writes into the working tree."""
    archive = subprocess.run(["git", "-C", str(root), "archive", rev], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="regenerate into a temporary folder and compare")
    parser.add_argument("--rev", help="with --check: check the files as committed at this revision")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    if args.rev and not args.check:
        parser.error("--rev goes with --check")
    if not args.check:
        for entry in GENERATED:
            regenerate(entry, args.root, args.root)
            print(f"wrote {entry.page}" + (f" and {entry.figure}" if entry.figure else ""))
        for marked in MARKED:
            if marked.missing(args.root) is None:
                write_block(args.root, marked.page, marked.marker, marked.text(args.root))
                print(f"wrote {marked.page} ({marked.marker})")
        return 0
    with tempfile.TemporaryDirectory(prefix="align-committed-") as tmp:
        problems, unchecked = check(export(args.rev, Path(tmp), args.root) if args.rev else args.root)
    for line in problems + unchecked:
        print(line)
    if not problems:
        print(f"{len(GENERATED)} generated pages and {len(MARKED) - len(unchecked)} marker blocks match their "
              "committed inputs")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
