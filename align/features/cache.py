"""Features of a dataset split, computed once and stored as safetensors shards with a JSON index.

The key hashes everything that changes the numbers: encoder name (with its precision suffix when it
is not float32, ``align.precision``), the sha256 of the weight files
really loaded (:mod:`align.features.weights`), preprocessing, dataset name, version and split, and
the exact texts for text features. A cache written under another key is never read. Shards are
written atomically one by one, each with its checksums (:mod:`align.features.shards`), so an
interrupted run resumes at the first missing shard after checking the ones it finds; the index
(``index.json``, with every shard's sha256) is written last and marks the entry complete. Reading an
entry checks bytes and structure: every shard's sha256, and that the shards' own headers name this
entry and tile its rows in index order. A damaged shard or index is logged in one line and
recomputed: it is a cache. What cannot be recomputed in place (a folder where a shard or the index
belongs, a write the disk refuses) is a one-line error naming the file; every write is atomic, so a
failed one leaves no partial file and the shards already written are reused by the next run.

Layout: ``$ALIGN_HOME/features/<encoder>/<dataset>/<split>/<modality>-<key12>/`` (the root can be
moved with ``ALIGN_FEATURE_CACHE``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from align.assets.store import align_home
from align.atomic import write_json_atomic
from align.data.base import DatasetSplit
from align.errors import AlignError, BadInputError
from align.features.encoding import encode_pil, encode_pil_tokens, encode_texts
from align.features.shards import DamagedShard, read_index, read_shard, write_shard
from align.features.weights import weights_fingerprint

__all__ = ["FeatureCache", "FeatureKey", "image_features", "image_tokens", "text_features", "weights_fingerprint"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: every shard carries its checksums (index.json and the shard's own header)
_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _as_path(name: str) -> str:
    return _SAFE.sub("_", name.replace(":", "__").replace("/", "--"))


@dataclass(frozen=True)
class FeatureKey:
    """Everything that determines a feature matrix; its digest names the cache entry."""

    encoder: str
    weights_sha256: str | None
    preprocessing: str  # JSON of the encoder's data config, or "text"
    dataset: str
    dataset_version: str
    split: str
    modality: str  # "image" or "text"
    content_sha256: str | None = None  # texts hashed in order, for text features
    format_version: int = FORMAT_VERSION

    def digest(self) -> str:
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def folder(self, root: Path) -> Path:
        return root / _as_path(self.encoder) / _as_path(self.dataset) / _as_path(self.split) / \
            f"{self.modality}-{self.digest()[:12]}"


def texts_sha256(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A refused write or folder creation (a full disk, no permission) as one line naming ``path``."""
    try:
        yield
    except OSError as err:
        raise AlignError(f"{path}: cannot write the feature cache ({err.strerror or type(err).__name__})") from None


def _must_be_a_file(path: Path) -> None:
    """A folder (or anything but a file) where the cache writes ``path`` is not the cache's to remove."""
    if os.path.lexists(path) and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise AlignError(f"{path}: {what} where the feature cache keeps a file; move it away and run again")


def default_root() -> Path:
    """``$ALIGN_FEATURE_CACHE``, else ``$ALIGN_HOME/features``."""
    override = os.environ.get("ALIGN_FEATURE_CACHE")
    return Path(override).expanduser() if override else align_home() / "features"


class FeatureCache:
    """Sharded, resumable, verified storage of ``[N, D]`` features under one key."""

    def __init__(self, root: Path | None = None, shard_size: int = 512) -> None:
        if shard_size < 1:
            raise BadInputError(f"feature cache: shard_size must be >= 1, got {shard_size}")
        self.root = Path(root) if root is not None else default_root()
        self.shard_size = shard_size

    def _shard(self, folder: Path, index: int) -> Path:
        return folder / f"shard-{index:05d}.safetensors"

    def load(self, key: FeatureKey) -> torch.Tensor | None:
        """The cached features, or None if the entry is absent, incomplete or damaged (a damaged one
        is logged in one line and recomputed by :meth:`compute`)."""
        folder = key.folder(self.root)
        index_path = folder / "index.json"
        if not index_path.is_file():
            return None
        try:
            index = read_index(index_path)
            if index.get("key") != dataclasses.asdict(key):
                return None  # a digest-prefix collision or a hand-edited folder: never reuse
            dtype = _DTYPES.get(index.get("dtype", "float32"))
            if dtype is None:
                raise DamagedShard(f"{index_path}: unknown dtype {index.get('dtype')!r}")
            entry, shards, row = key.digest(), [], 0
            for name in index["shards"]:  # each shard must hold the rows its place in the index says
                shard = read_shard(folder / name, sha256=index["sha256"][name], header={"entry": entry},
                                   dtype=dtype, first_row=row)
                if shard.shape[1] != index["dim"]:
                    raise DamagedShard(f"{folder / name}: rows of {shard.shape[1]} features, index.json says {index['dim']}")
                shards.append(shard)
                row += shard.shape[0]
            features = torch.cat(shards) if shards else torch.empty(0, index["dim"], dtype=dtype)
            if features.shape != (index["num_items"], index["dim"]):
                raise DamagedShard(f"{folder}: shards hold {tuple(features.shape)}, index.json says "
                                   f"({index['num_items']}, {index['dim']})")
            if not torch.isfinite(features).all():
                raise DamagedShard(f"{folder}: features contain NaN or inf")
        except DamagedShard as err:
            log.warning("feature cache: %s; recomputing this entry", err)
            return None
        return features

    def _resumed(self, path: Path, header: dict[str, str], dtype: torch.dtype) -> torch.Tensor | None:
        """A shard left by an earlier run if it verifies against its own header, else None (rewritten)."""
        if not path.is_file():
            return None
        try:
            shard = read_shard(path, header=header, dtype=dtype)
        except DamagedShard as err:
            log.warning("feature cache: %s; recomputing it", err)
            return None
        rows = int(header["stop"]) - int(header["start"])
        return shard if shard.shape[0] == rows and torch.isfinite(shard).all() else None

    def compute(
        self,
        key: FeatureKey,
        num_items: int,
        embed_batch: Callable[[int, int], torch.Tensor],
        *,
        batch_size: int = 32,
        progress: bool = True,
        description: str = "",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Load ``key`` or compute it with ``embed_batch(start, stop) -> [stop-start, D]``, resuming
        at the first missing shard of an interrupted run. ``dtype`` is the stored precision (float16
        halves the size of token grids; the key must say so, e.g. in its modality).

        Every shard is checked before it is used: against ``index.json`` for a complete entry, against
        its own header for one left by an interrupted run; a shard that fails is computed again."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BadInputError(f"{key.encoder} on {key.dataset}/{key.split}: batch_size must be a positive "
                                f"integer, got {batch_size!r}")
        if dtype not in _DTYPES.values():
            raise BadInputError(f"feature cache: dtype must be torch.float32 or torch.float16, got {dtype}")
        cached = self.load(key)
        if cached is not None:
            return cached
        from tqdm.auto import tqdm

        folder = key.folder(self.root)
        num_shards = max(1, -(-num_items // self.shard_size))
        for path in [*(self._shard(folder, s) for s in range(num_shards)), folder / "index.json"]:
            _must_be_a_file(path)  # before anything is computed or removed
        with _writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
        with _writing(folder / "index.json"):
            (folder / "index.json").unlink(missing_ok=True)  # stale or damaged: rewritten once complete
        shards, names, hashes = [], [], {}
        bar = tqdm(total=num_items, unit="item", desc=description or key.split, disable=not progress,
                   dynamic_ncols=True, leave=False)
        started = time.perf_counter()
        entry = key.digest()
        for s in range(num_shards):
            path = self._shard(folder, s)
            start, stop = s * self.shard_size, min(num_items, (s + 1) * self.shard_size)
            header = {"entry": entry, "start": str(start), "stop": str(stop)}
            shard = self._resumed(path, header, dtype)
            if shard is None:
                parts = [embed_batch(b, min(stop, b + batch_size)) for b in range(start, stop, batch_size)]
                shard = torch.cat(parts).to(dtype).contiguous() if parts else torch.empty(0, 0, dtype=dtype)
                if not torch.isfinite(shard).all():
                    raise BadInputError(f"{key.encoder} on {key.dataset}/{key.split}: features contain NaN or inf")
                with _writing(path):
                    hashes[path.name] = write_shard(path, shard, header)
            else:
                with _writing(path):
                    hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
            shards.append(shard)
            names.append(path.name)
            bar.update(stop - start)
        bar.close()
        features = torch.cat(shards)
        with _writing(folder / "index.json"):
            write_json_atomic(folder / "index.json", {
                "key": dataclasses.asdict(key), "num_items": num_items, "dim": int(features.shape[1]),
                "shards": names, "sha256": hashes, "seconds": round(time.perf_counter() - started, 3),
                "dtype": str(dtype).removeprefix("torch."),
            })
        return features


def _encoder_fingerprint(registry: Any, name: str, encoder: Any | None) -> tuple[str | None, str]:
    weights = weights_fingerprint(registry, name, encoder)
    config = getattr(encoder, "data_config", None)
    preprocessing = json.dumps(dataclasses.asdict(config), sort_keys=True) if config is not None else "text"
    return weights, preprocessing


def _image_entry(encoder_name: str, split: DatasetSplit, cache: FeatureCache | None, encoder: Any | None,
                 modality: str) -> tuple[FeatureCache, Any, FeatureKey]:
    """The cache, the built encoder and the key of one split's image inputs of one kind."""
    from align.registry import VISION_ENCODERS

    cache = cache or FeatureCache()
    encoder = encoder or VISION_ENCODERS.create(encoder_name)
    weights, preprocessing = _encoder_fingerprint(VISION_ENCODERS, encoder_name, encoder)
    return cache, encoder, FeatureKey(encoder_name, weights, preprocessing, split.dataset, split.version,
                                      split.split, modality)


def image_features(
    encoder_name: str,
    split: DatasetSplit,
    *,
    cache: FeatureCache | None = None,
    encoder: Any | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> torch.Tensor:
    """Pooled image features ``[N, D]`` of every item of ``split``, from the cache when possible."""
    cache, encoder, key = _image_entry(encoder_name, split, cache, encoder, "image")

    def embed_batch(start: int, stop: int) -> torch.Tensor:
        return encode_pil(encoder, [split.load_image(i) for i in range(start, stop)])[0]

    return cache.compute(key, split.num_items, embed_batch, batch_size=batch_size, progress=progress,
                         description=f"{encoder_name} {split.dataset}/{split.split}")


TOKEN_STORAGE = torch.float16


def image_tokens(
    encoder_name: str,
    split: DatasetSplit,
    *,
    cache: FeatureCache | None = None,
    encoder: Any | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> torch.Tensor:
    """Spatial tokens ``[N, T, D]`` of every item of ``split`` (a CNN's feature map, a ViT's patch
    tokens), from the cache when possible. Stored as float16 (half the disk and memory of a 7x7x1280
    grid per image); ``benchmarks/token_storage.py`` measures what that changes downstream."""
    modality = f"image-tokens-{str(TOKEN_STORAGE).removeprefix('torch.')}"
    cache, encoder, key = _image_entry(encoder_name, split, cache, encoder, modality)
    grid: list[int] = []

    def embed_batch(start: int, stop: int) -> torch.Tensor:
        tokens = encode_pil_tokens(encoder, [split.load_image(i) for i in range(start, stop)])
        grid[:] = tokens.shape[1:]
        return tokens.flatten(1)

    flat = cache.compute(key, split.num_items, embed_batch, batch_size=batch_size, progress=progress,
                         description=f"{encoder_name} tokens {split.dataset}/{split.split}", dtype=TOKEN_STORAGE)
    if not grid:  # from the cache: the grid's shape comes from one image
        grid[:] = encode_pil_tokens(encoder, [split.load_image(0)]).shape[1:]
    if flat.shape[1] != grid[0] * grid[1]:
        raise AlignError(f"feature cache for {encoder_name} tokens on {split.dataset}/{split.split} does not hold "
                         f"{grid[0]}x{grid[1]} grids; delete {key.folder(cache.root)} and run again")
    return flat.view(len(flat), grid[0], grid[1])


def text_features(
    encoder_name: str,
    texts: Sequence[str],
    *,
    dataset: str,
    version: str,
    split: str,
    cache: FeatureCache | None = None,
    make_encoder: Callable[[], Any] | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> torch.Tensor:
    """Text features ``[len(texts), D]`` (captions or class prompts), from the cache when possible.

    Each distinct text is embedded once and the rows repeated: fit captions built from class names
    repeat ten-odd strings thousands of times. The cache holds the distinct texts' rows (a list
    without repeats has the same key as before). The encoder is only built (``make_encoder``,
    default: from the registry) on a cache miss."""
    distinct, rows = distinct_texts(texts)
    features = _distinct_text_features(encoder_name, distinct, dataset=dataset, version=version, split=split,
                                       cache=cache, make_encoder=make_encoder, batch_size=batch_size,
                                       progress=progress)
    return features if len(distinct) == len(rows) else features[rows]


def distinct_texts(texts: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """The distinct texts in order of first appearance, and each input's row among them."""
    first: dict[str, int] = {}
    rows = [first.setdefault(text, len(first)) for text in texts]
    return list(first), torch.tensor(rows, dtype=torch.long)


def _distinct_text_features(encoder_name: str, texts: Sequence[str], *, dataset: str, version: str, split: str,
                            cache: FeatureCache | None, make_encoder: Callable[[], Any] | None, batch_size: int,
                            progress: bool) -> torch.Tensor:
    from align.registry import TEXT_ENCODERS

    cache = cache or FeatureCache()
    weights = weights_fingerprint(TEXT_ENCODERS, encoder_name)
    key = FeatureKey(encoder_name, weights, "text", dataset, version, split, "text", texts_sha256(texts))
    cached = cache.load(key)
    if cached is not None:
        return cached
    encoder = make_encoder() if make_encoder else TEXT_ENCODERS.create(encoder_name)
    loaded = weights_fingerprint(TEXT_ENCODERS, encoder_name, encoder)
    if loaded != weights:  # the files really loaded differ from what the registry pointed at: file under them
        key = dataclasses.replace(key, weights_sha256=loaded)
    texts = list(texts)

    def embed_batch(start: int, stop: int) -> torch.Tensor:
        return encode_texts(encoder, texts[start:stop], batch_size=batch_size)

    return cache.compute(key, len(texts), embed_batch, batch_size=batch_size, progress=progress,
                         description=f"{encoder_name} {dataset}/{split} text")
