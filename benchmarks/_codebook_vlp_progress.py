"""Which of the study's fits are saved: one table per dataset, a row per seed, a column per arm and head.

Read from the run files alone (no tokens, models or locks), so it answers at once, in any session, where a
study that spans sessions stands and what is left to fit. A fit counts when its JSON reads and was trained
for the study's epochs; one saved at another budget is shown by its epochs (a plain run would refit it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

DONE, MISSING = "✓", "–"


def saved_epochs(path: Path) -> int | None:
    """The epochs a saved study fit was trained for (None: no file, or not a readable run)."""
    try:
        found = json.loads(path.read_text())
        return int(found["key"]["hparams"]["max_epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def progress_lines(runs: Path, datasets: Sequence[str], seeds: Sequence[int], arms: Mapping[str, str],
                   heads: Mapping[str, str], epochs: int | None) -> list[str]:
    """Markdown tables of what is saved under ``runs`` (``arms`` and ``heads``: label -> run-file slug;
    ``epochs``: the study's budget, None before validation has chosen it), then a line with the arm fits
    left, in all and per dataset."""
    out: list[str] = []
    left: dict[str, int] = {}
    for dataset in datasets:
        out += [f"{dataset}:", "", "| seed | " + " | ".join([*arms, *heads]) + " |",
                "|---:|" + "---|" * (len(arms) + len(heads))]
        left[dataset] = 0
        for seed in seeds:
            cells = []
            for label, slug in arms.items():
                found = saved_epochs(runs / dataset / f"{slug}_seed{seed}.json")
                done = found is not None and (epochs is None or found == epochs)
                left[dataset] += not done
                cells.append(DONE if done else MISSING if found is None else f"{found} ep")
            for slug in heads.values():
                cells.append(DONE if (runs / dataset / f"{slug}_seed{seed}.json").is_file() else MISSING)
            out.append(f"| {seed} | " + " | ".join(cells) + " |")
        out.append("")
    total = len(datasets) * len(seeds) * len(arms)
    out.append(f"Arm fits left: {sum(left.values())} of {total} ("
               + ", ".join(f"{name} {count}" for name, count in left.items())
               + (f"; at {epochs} epochs" if epochs is not None else "") + "). Heads fit in seconds.")
    return out


def study_epochs(runs: Path, manifest: str) -> int | None:
    """The budget the saved manifest records (None when there is none yet)."""
    try:
        return int(json.loads((runs / manifest).read_text())["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
