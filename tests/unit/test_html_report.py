"""``align report --html``: one self-contained page from a toy run (leaderboard, curves, pictures), its
text escaped, and (where a Chromium binary exists) a headless render that is not blank."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from align.bench.report.html import write_html_report
from align.cli import main
from headless_chromium import need_chromium, screenshot
from report_toys import toy_run

HEADER_BLUE = np.array([47, 74, 122])  # the leaderboard's header background (#2f4a7a)


@pytest.fixture(scope="module")
def toy_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_run(tmp_path_factory.mktemp("report"), lqae=True)


def test_the_page_has_the_leaderboard_rows_curves_and_pictures_inline(toy_results: Path, tmp_path: Path) -> None:
    page = write_html_report(toy_results, tmp_path / "html")
    html = page.read_text()
    assert page.name == "index.html" and list(page.parent.iterdir()) == [page]  # one file, nothing beside it
    for aligner in ("asif", "contrastive", "lqae", "ridge"):
        assert f"<th>{aligner}</th>" in html
    rows = re.findall(r"<tr><td>report-colours</td><td>(\w+)</td><td>([^<]+)</td>", html)
    assert sorted(rows) == sorted([("fewshot", "acc1"), ("zeroshot_classification", "acc1"),
                                   ("zeroshot_retrieval", "T→I R@1"), ("zeroshot_retrieval", "I→T R@1")])
    # curves of both trained aligners and pictures: ASIF anchors and LQAE token strings, all as data URIs
    assert html.count('alt="training curves of') == 2
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', html)) >= 2 + 6 + 6
    assert "top anchors (weight):" in html and "<span class=label>tokens:</span>" in html
    assert "http://" not in html and "https://" not in html and "<script src" not in html  # no network


def test_text_from_results_and_examples_is_escaped(toy_results: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(toy_results, results)
    (path,) = results.glob("*/lqae/examples/*/examples.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[1]["lines"] = [["tokens", "<script>alert(1)</script>"]]
    lines[1]["image"] = 'x" onerror="alert(1)'
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (results / "toy__cnn+toy__text" / "broken" / "examples" / "x").mkdir(parents=True)
    (results / "toy__cnn+toy__text" / "broken" / "examples" / "x" / "examples.jsonl").write_text("{not json\n")
    html = write_html_report(results, tmp_path / "html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'onerror="alert' not in html
    assert "Skipped: " in html and "broken" in html  # a damaged pictures file is named, not fatal


def test_cli_report_html(toy_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(toy_results), "--html", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "index.html").is_file() and "wrote " in capsys.readouterr().out


def test_headless_chromium_renders_a_page_that_is_not_blank(toy_results: Path, tmp_path: Path) -> None:
    binary = need_chromium()  # `make test` installs it where apt can; elsewhere this test says why it did not run
    page = write_html_report(toy_results, tmp_path / "html")
    pixels = np.asarray(screenshot(binary, page, tmp_path / "shot.png", tmp_path / "profile"), dtype=np.float64)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 20  # not one flat colour
    top = pixels[:600]  # title and leaderboard
    assert (top.min(axis=2) < 200).mean() > 0.02  # text and table, not a white page
    header = np.abs(top - HEADER_BLUE).max(axis=2) < 12
    assert header.sum() > 2000  # the table's header row was drawn with its style
    if keep := os.environ.get("ALIGN_KEEP_SCREENSHOT"):  # the README's screenshot is this test's
        shutil.copyfile(tmp_path / "shot.png", keep)
