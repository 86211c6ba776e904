"""The Python examples of "Extending align" (docs/extending.md, once the README's) run as written and register
what they say they register."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXTENDING = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def test_extending_python_examples_run_and_register_their_parts(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", EXTENDING.read_text(), re.S)
    assert len(blocks) >= 3
    check = """
import torch
from align.registry import ALIGNERS, DATASETS, VISION_ENCODERS
encoder = VISION_ENCODERS.create("example:mean-color")
assert encoder(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
split = DATASETS.create("circles-squares").load("test@10")
assert split.num_items == 10 and split.load_image(0).size == (32, 32)
x, y = torch.randn(8, 4), torch.randn(8, 4)
shift = ALIGNERS.create("mean-shift").fit(x, y)
assert torch.allclose(shift.encode_image(x).mean(0), torch.zeros(4), atol=1e-6)
print("ok")
"""
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(blocks) + check)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
