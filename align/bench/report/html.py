"""``align report RESULTS --html OUT``: one self-contained page (``OUT/index.html``) to look at a run in a
browser, sent as one file: no network, no CDN, every picture a ``data:`` URI inside it.

Sections:
- the leaderboard (the same cells as ``leaderboard.md``), sortable by clicking a column header (a few
  lines of inline JavaScript; without JavaScript it is the plain table);
- training curves: one matplotlib PNG per fit that left curves (:mod:`align.bench.report.curves`);
- pictures: for fits saved with ``--save-aligners``, the example records the runner wrote
  (:mod:`align.bench.execute.examples`: VLAP captions and nearest words, LQAE token strings, ASIF top anchors,
  Codebook-VLP's most used codes).

Every text from a result, a config or a model (captions, tokens, names) is escaped; the page is
written atomically. The result files are verified as for ``leaderboard.md``: one that cannot be
trusted is an error, never left out. A curves or examples file that cannot be read is named on the
page and skipped (they are pictures of a result, not numbers in it).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from align.atomic import atomic_path
from align.bench.record.examples import SUPPORTED, read_examples
from align.bench.record.result_files import read_results
from align.bench.report.curves import find_curves, plot_png, summary
from align.bench.report.leaderboard import aggregate, cell_text, encoder_lines, grid, notes, short_metric
from align.bench.report.uncertainty import load_items, standing
from align.errors import AlignError

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #dfe3ea}
.meta,.note{color:#5a6473;font-size:12.5px}
table.board{border-collapse:collapse;margin:8px 0}
table.board th,table.board td{border:1px solid #cfd5df;padding:4px 9px}
table.board th{background:#2f4a7a;color:#fff;cursor:pointer;user-select:none;white-space:nowrap}
table.board th[data-dir=asc]::after{content:" \\25B2"}table.board th[data-dir=desc]::after{content:" \\25BC"}
table.board td.num{text-align:right;font-variant-numeric:tabular-nums}
table.board tbody tr:nth-child(even){background:#f2f5fa}td.best{font-weight:700;background:#dcebd6}td.tied{background:#eef5ea}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs figure{margin:0;border:1px solid #dfe3ea;padding:6px}
figcaption{font-size:12px;color:#5a6473;max-width:640px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #dfe3ea;padding:8px;width:230px}
.card img.main{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;background:#eee}
.card .label{font-weight:600;color:#2f4a7a}.anchors{display:flex;gap:4px;flex-wrap:wrap;margin-top:4px}
.anchors figure{margin:0;width:52px;font-size:10px}.anchors img{width:48px;height:48px;object-fit:contain}
"""

SCRIPT = """
document.querySelectorAll('table.board').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';
      table.querySelectorAll('th').forEach(function(h){ delete h.dataset.dir; });
      th.dataset.dir = dir;
      var key = function(row){
        var cell = row.cells[col];
        if (cell.dataset.value === undefined) return cell.textContent;
        var v = parseFloat(cell.dataset.value); return isNaN(v) ? -Infinity : v;
      };
      var body = table.tBodies[0];
      Array.prototype.slice.call(body.rows).sort(function(a, b){
        var x = key(a), y = key(b);
        var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return dir === 'asc' ? c : -c;
      }).forEach(function(row){ body.appendChild(row); });
    });
  });
});
"""


def _code(text: str) -> str:
    """Markdown backticks of the report's note lines as <code>, everything escaped."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def leaderboard_html(rows: Sequence[dict[str, Any]]) -> str:
    """The leaderboard table (cells as in ``leaderboard.md``: bold when told apart from the runner-up, ``≈``
    when tied with the best; ``data-value`` holds each mean for sorting)."""
    if not rows:
        return "<p class=note>No results.</p>"
    columns, lines = grid(rows)
    head = "".join(f"<th>{escape(h)}</th>" for h in ("dataset", "task", "metric", *(name for _, name in columns)))
    body = []
    for (dataset, task, metric), stats in lines.items():
        verdict = standing(stats, metric)
        cells = [f"<td>{escape(dataset)}</td><td>{escape(task)}</td><td>{escape(short_metric(metric))}</td>"]
        for entity, _ in columns:
            stat = stats.get(entity)
            value = f"{stat['mean']:.6g}" if stat else "nan"
            mark = verdict.mark(entity)
            text = ("≈ " if mark == "tied" else "") + cell_text(stat)
            cls = f"num {mark}" if mark else "num"
            cells.append(f'<td class="{cls}" data-value="{value}">{escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    above = "".join(f"<p class=meta>{_code(line)}</p>" for line in encoder_lines(rows))
    below = [line for line in notes(rows) if line]
    note_html = "".join(f"<p class=note>{_code(line.removeprefix('- '))}</p>" for line in below)
    return (f"{above}<table class=board><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"{note_html}<p class=note>Click a column header to sort.</p>")


def curves_html(results_dir: Path) -> str:
    """One figure per fit that left curves, the PNG inline."""
    found, problems = find_curves(results_dir)
    parts = []
    for curves in found:
        png = base64.b64encode(plot_png(curves)).decode("ascii")
        last = ", ".join(f"{k} {v:.4g}" for k, v in summary(curves).items())
        why = f" <b>Diverged: {escape(curves.diverged)}.</b>" if curves.diverged else ""
        parts.append(f'<figure><img alt="training curves of {escape(curves.label)}" src="data:image/png;base64,{png}">'
                     f"<figcaption>{escape(curves.label)}; last epoch: {escape(last)}.{why}</figcaption></figure>")
    text = f"<div class=figs>{''.join(parts)}</div>" if parts else (
        "<p class=note>No training curves: only trained aligners (contrastive, VLAP, LQAE, Codebook-VLP) "
        "leave them, in <code>curves/</code> beside their results.</p>")
    return text + "".join(f"<p class=note>Skipped: {escape(p)}</p>" for p in problems)


def _find_examples(results_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    found, problems = [], []
    for path in sorted(Path(results_dir).glob("*/*/examples/*/examples.jsonl")):
        try:
            found.append(read_examples(path))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            problems.append(f"{path}: {err}")
    return found, problems


def _data_uri(value: Any) -> str:
    """Only PNG data URIs written by the runner are put into ``src``; anything else becomes an empty image."""
    text = str(value)
    return text if text.startswith("data:image/png;base64,") and '"' not in text else ""


def _card(item: dict[str, Any]) -> str:
    lines = "".join(f"<div><span class=label>{escape(str(label))}:</span> {escape(str(text))}</div>"
                    for label, text in item.get("lines", []))
    anchors = "".join(f'<figure><img alt="anchor" src="{_data_uri(a.get("image"))}">'
                      f'<figcaption>{escape(str(a.get("caption", "")))} ({float(a.get("weight", 0)):.2f})</figcaption>'
                      f"</figure>" for a in item.get("anchors", []))
    anchors = f"<div class=label>top anchors (weight):</div><div class=anchors>{anchors}</div>" if anchors else ""
    return (f'<div class=card><img class=main alt="{escape(str(item.get("id", "")))}" src="{_data_uri(item.get("image"))}">'
            f"<div class=meta>{escape(str(item.get('id', '')))}: {escape(str(item.get('truth', '')))}</div>"
            f"{lines}{anchors}</div>")


def pictures_html(results_dir: Path) -> str:
    found, problems = _find_examples(results_dir)
    parts = []
    for record in found:
        title = f"{record.get('aligner', '?')} · fit {record.get('fit', '?')} · seed {record.get('seed', '?')} · " \
                f"images of {record.get('eval', '?')}"
        parts.append(f"<h3>{escape(title)}</h3><div class=cards>{''.join(_card(i) for i in record['items'])}</div>")
    supported = ", ".join(SUPPORTED)
    intro = (f"<p class=note>Written by <code>align bench --save-aligners</code> for aligners that can say something "
             f"about an image; supported: {escape(supported)}.</p>")
    body = "".join(parts) if parts else "<p class=note>No pictures in this results folder.</p>"
    return intro + body + "".join(f"<p class=note>Skipped: {escape(p)}</p>" for p in problems)


def render(results_dir: Path) -> str:
    """The page's HTML (result files verified first: :func:`align.bench.record.result_files.read_results`)."""
    results_dir = Path(results_dir)
    results = read_results(results_dir)
    rows = aggregate(results, load_items(Path(results_dir), results))
    title = f"align report: {results_dir.resolve().name}"
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{STYLE}</style></head><body>"
            f"<h1>{escape(title)}</h1><p class=meta>{len(rows)} leaderboard rows from {escape(str(results_dir))}</p>"
            f"<h2>Leaderboard</h2>{leaderboard_html(rows)}"
            f"<h2>Training curves</h2>{curves_html(results_dir)}"
            f"<h2>Pictures</h2>{pictures_html(results_dir)}"
            f"<script>{SCRIPT}</script></body></html>\n")


def write_html_report(results_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` atomically and return its path."""
    page = render(results_dir)
    target = Path(out_dir) / "index.html"
    try:
        with atomic_path(target) as tmp:
            tmp.write_text(page, encoding="utf-8")
    except OSError as err:
        raise AlignError(f"{target}: cannot write the HTML report ({err.strerror or err})") from None
    return target
