"""A BERT MLM head for MiniLM trained on Python's own documentation: is it better than no head at all?

MiniLM (all-MiniLM-L6-v2) ships without its MLM prediction head; :mod:`align.text.mlm_head` trains one
on the frozen encoder's last hidden states from ``pydoc_data.topics`` (whole topics held out). This
script trains it (or loads it from ``$ALIGN_HOME/text/mlm-heads/`` when a file of the same key is
there) and scores, on the held-out topics, one fixed BERT masking (15 %: 80/10/10) shared by:

- the trained head;
- the untrained head (BERT's seeded initialisation, what ``load_lm()`` gives today);
- a unigram baseline that ignores context: the most frequent training word (accuracy) and the add-one
  smoothed unigram distribution of the training words (cross-entropy).

Cross-entropy is in nats per masked position over the full 30,522-row vocabulary.

    python benchmarks/mlm_head.py [--steps 400] [--threads 1] [--cache-dir DIR] [--output results/mlm_head.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py
from align.text import mlm_head as M

TABLE = "hf:sentence-transformers/all-MiniLM-L6-v2"


def main() -> None:
    defaults = M.HeadSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=TABLE)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $ALIGN_HOME/text/mlm-heads")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = dataclasses.replace(defaults, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)

    from align.registry import EMBEDDING_TABLES

    start = time.perf_counter()
    table = EMBEDDING_TABLES.create(args.table)
    lm = table.load_lm()
    load_s = time.perf_counter() - start

    start = time.perf_counter()
    head, info = M.pretrained_head(table, settings, root=args.cache_dir)
    head_s = time.perf_counter() - start

    docs = M.python_docs()
    train_names, eval_names = M.split_documents(docs, settings.eval_fraction)
    train = M.chunk_ids(table, [docs[n] for n in train_names], settings.seq_len)
    held = M.chunk_ids(table, [docs[n] for n in eval_names], settings.seq_len)
    masked = M.fixed_mask(table, held, settings.mask_prob)
    pad = int(table.tokenizer.pad_token_id)
    start = time.perf_counter()
    rows = [("trained head", M.score_head(head, lm, masked, pad)),
            ("untrained head (seeded BERT init)", M.score_head(M.new_head(lm, settings.seed), lm, masked, pad)),
            ("unigram of the training words", M.score_unigram(table, train, masked))]
    eval_s = time.perf_counter() - start

    how = "loaded from the cache" if info["cached"] else f"trained in {info['train_seconds']:.0f} s"
    lines = [
        f"MLM head for `{args.table}` on `pydoc_data.topics` (Python {sys.version.split()[0]}): "
        f"{len(train_names)} training topics ({len(train)} chunks of {settings.seq_len} tokens), "
        f"{len(eval_names)} held-out topics ({len(held)} chunks): {', '.join(eval_names)}.",
        "",
        f"Settings: {dataclasses.asdict(settings)}; head {how} "
        f"(final training loss {info['final_train_loss']:.3f}, mean of the last 50 steps).",
        "",
        *markdown_table(("predictor", "masked-token accuracy", "cross-entropy (nats)", "positions"),
                        [(name, r["accuracy"], r["cross_entropy"], r["positions"]) for name, r in rows],
                        formats=("", ".4f", ".3f", "d")),
        "",
        f"Wall time: table + LM {load_s:.1f} s, head (train or load) {head_s:.1f} s, evaluation {eval_s:.1f} s.",
        f"Cache file: {info['path']}",
        "",
        machine_line(threads=torch.get_num_threads(), load=True),
    ]
    emit("\n".join(lines) + "\n", args.output)


if __name__ == "__main__":
    main()
