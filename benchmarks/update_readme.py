"""Copy the latest benchmark outputs into README.md between its markers (no numbers typed by hand).

    python benchmarks/update_readme.py [--results results]

Reads ``results/default/leaderboard.md`` (from `make bench`), ``results/walltime.md`` and
``results/encoders.md`` (from `make figures`); a missing file leaves its README section untouched.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_between(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {marker}:start/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    text = README.read_text()
    leaderboard = args.results / "default" / "leaderboard.md"
    if leaderboard.is_file():
        text = replace_between(text, "bench", leaderboard.read_text())
    figures = [p.read_text().rstrip() for p in (args.results / "walltime.md", args.results / "encoders.md") if p.is_file()]
    if figures:
        text = replace_between(text, "figures", "\n\n".join(figures))
    README.write_text(text)


if __name__ == "__main__":
    main()
