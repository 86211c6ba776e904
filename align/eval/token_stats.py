"""How much an image tokenizer's codes say about classes, without training a classifier.

- :func:`token_nmi`: mutual information between *token occurrences* and the class of the image they
  come from (every ``(code, class)`` pair of every image is one sample), normalised by the class
  entropy: the fraction of the class's uncertainty that one token removes. 1 means each code is used
  by one class only; 0 means codes are spread over classes independently. (The symmetric
  normalisations are capped below 1 whenever there are more codes than classes, which is always.)
- :func:`histogram_cluster_nmi`: each image as a TF-IDF-weighted histogram of its codes, clustered by
  k-means into as many clusters as classes; NMI between clusters and classes (the usual clustering
  score, and closer to "do images of a class share their words").
- :func:`code_usage`: distinct codes used and the perplexity of their frequencies (collapse check).

Plug-in NMI grows with the number of distinct codes on a finite sample (rare codes look perfectly
class-specific), so compare tokenizers that use similar numbers of codes, or read the cluster score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from align.errors import BadInputError


def _codes_labels(codes: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    c = codes.cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if c.ndim != 2 or y.shape != (c.shape[0],) or c.shape[0] == 0:
        raise BadInputError(f"token stats: expected codes [N, T] and labels [N], got {c.shape} and {y.shape}")
    return c.astype(np.int64), y.astype(np.int64)


def token_nmi(codes: Any, labels: Any) -> float:
    """``I(code; class) / H(class)`` over code occurrences (0 when there is a single class)."""
    from sklearn.metrics import mutual_info_score

    c, y = _codes_labels(codes, labels)
    _, counts = np.unique(y, return_counts=True)
    p = counts / counts.sum()
    class_entropy = float(-(p * np.log(p)).sum())
    if class_entropy == 0:
        return 0.0
    return float(mutual_info_score(np.repeat(y, c.shape[1]), c.ravel())) / class_entropy


def histograms(codes: Any, vocab_size: int | None = None) -> Any:
    """Sparse ``[N, V]`` count matrix of each image's codes."""
    from scipy.sparse import csr_matrix

    c = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64)
    n, t = c.shape
    v = int(vocab_size if vocab_size is not None else c.max() + 1)
    return csr_matrix((np.ones(n * t), (np.repeat(np.arange(n), t), c.ravel())), shape=(n, v))


def histogram_cluster_nmi(codes: Any, labels: Any, seed: int = 0, n_init: int = 4) -> float:
    """NMI between classes and k-means clusters (k = number of classes) of TF-IDF code histograms."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.metrics import normalized_mutual_info_score

    c, y = _codes_labels(codes, labels)
    _, compact = np.unique(c, return_inverse=True)  # only the codes in use, so V stays small
    weighted = TfidfTransformer().fit_transform(histograms(compact.reshape(c.shape)))
    k = len(np.unique(y))
    clusters = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(weighted)
    return float(normalized_mutual_info_score(y, clusters))


def code_usage(codes: Any) -> dict[str, float]:
    """``distinct`` codes used and the ``perplexity`` (exp entropy) of their frequencies."""
    c = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes).ravel()
    _, counts = np.unique(c, return_counts=True)
    p = counts / counts.sum()
    return {"distinct": float(len(counts)), "perplexity": float(np.exp(-(p * np.log(p)).sum()))}
