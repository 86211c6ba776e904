"""`import align` and listing the registries stay cheap, and one Lightning import root is used."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("timm", "open_clip", "transformers", "sentence_transformers", "pytorch_lightning", "lightning", "faiss",
         "ot", "gguf", "spacy", "sklearn", "matplotlib")


def test_listing_every_registry_imports_no_heavy_library() -> None:
    code = ("import sys; from align.registry import REGISTRIES;"
            "[r.list() for r in REGISTRIES.values()];"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lightning_is_imported_as_pytorch_lightning_only() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+lightning(\.|\s|$)", re.M)
    offenders = [str(p.relative_to(ROOT)) for folder in ("align", "tests", "benchmarks")
                 for p in (ROOT / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == [], f"use `import pytorch_lightning as pl`, not `lightning`: {offenders}"
