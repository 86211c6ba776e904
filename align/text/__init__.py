"""Language-side parts: sentence encoders (``TEXT_ENCODERS``) and word-embedding tables
(``EMBEDDING_TABLES``). Importing this package registers them; the heavy libraries behind them
(transformers, sentence-transformers, open_clip, gguf, spaCy) are imported only when a part is built.
"""

from align.registry import EMBEDDING_TABLES, TEXT_ENCODERS
from align.text import gguf_table, open_clip_text, sentence, spacy_table, table_mean, tables, toy  # noqa: F401
from align.text.base import EmbeddingTable, TextEncoder, check_texts

__all__ = ["EMBEDDING_TABLES", "TEXT_ENCODERS", "EmbeddingTable", "TextEncoder", "check_texts"]
