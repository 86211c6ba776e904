"""The aligner interface every method implements.

An aligner is fit on features of paired images and texts (rows aligned; unpaired methods may
ignore the pairing) and then maps image features and text features into one comparison space where
cosine similarity is meaningful. State is a flat dict of tensors saved with safetensors beside the
hyper-parameters as JSON, so any fitted aligner can be reloaded without pickle.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import torch

from align.errors import AlignError, BadInputError
from align.methods.framework import capabilities
from align.methods.framework.capabilities import IMAGE_INPUTS, Missing
from align.methods.framework.hparams import HParams, finite


def is_number(value: Any) -> bool:
    """A finite real hyper-parameter (bools excluded; an integer too large for a float is not finite)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and finite(value)


def check_features(features: torch.Tensor, what: str, dim: int | None = None) -> torch.Tensor:
    """Float32 2-D features without NaN/inf (and of width ``dim`` if given), or a one-line error.

    Array-likes (numpy arrays, nested lists) are accepted and converted, so a caller's mistake in
    type is reported as bad input rather than as a torch traceback. Features are inputs: the result is
    detached, so a tensor that requires grad fits and embeds exactly as the same values without it
    (no graph is built, nothing flows back into the caller's encoder)."""
    if not isinstance(features, torch.Tensor):
        try:
            features = torch.as_tensor(features)
        except (TypeError, ValueError, RuntimeError) as err:
            kind = type(features).__name__
            raise BadInputError(f"{what}: expected a 2-D numeric feature matrix, got {kind}") from err
    if features.ndim != 2:
        raise BadInputError(f"{what}: expected a 2-D feature matrix, got shape {tuple(features.shape)}")
    if features.is_complex() or features.dtype == torch.bool:
        raise BadInputError(f"{what}: expected real-valued features, got dtype {features.dtype}")
    if dim is not None and features.shape[1] != dim:
        raise BadInputError(f"{what}: features have dimension {features.shape[1]}, the aligner expects {dim}")
    if not torch.isfinite(features).all():
        bad = int((~torch.isfinite(features)).any(dim=1).nonzero()[0, 0])
        raise BadInputError(f"{what}: row {bad} contains NaN or inf")
    return features.detach().float()


def check_tokens(tokens: Any, what: str, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """Float32 ``[N, T, D]`` spatial tokens without NaN/inf (and of ``(T, D)`` if given), or a one-line error;
    detached, like :func:`check_features`."""
    if not isinstance(tokens, torch.Tensor):
        try:
            tokens = torch.as_tensor(tokens)
        except (TypeError, ValueError, RuntimeError) as err:
            raise BadInputError(f"{what}: expected [N, T, D] spatial tokens, got {type(tokens).__name__}") from err
    if tokens.ndim != 3:
        raise BadInputError(f"{what}: expected [N, T, D] spatial tokens (a frozen encoder's grid), "
                            f"got shape {tuple(tokens.shape)}")
    if tokens.is_complex() or tokens.dtype == torch.bool:
        raise BadInputError(f"{what}: expected real-valued tokens, got dtype {tokens.dtype}")
    if shape is not None and tuple(tokens.shape[1:]) != shape:
        raise BadInputError(f"{what}: tokens have shape [N, {tokens.shape[1]}, {tokens.shape[2]}], "
                            f"the model expects [N, {shape[0]}, {shape[1]}]")
    if not torch.isfinite(tokens).all():
        bad = int((~torch.isfinite(tokens)).flatten(1).any(1).nonzero()[0, 0])
        raise BadInputError(f"{what}: image {bad} has NaN or inf tokens")
    return tokens.detach().float()


def check_pairs(
    image_features: torch.Tensor, text_features: torch.Tensor, what: str, min_pairs: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides of a paired training set checked, with the same number of rows (>= ``min_pairs``)."""
    image_features = check_features(image_features, f"{what}: image features")
    text_features = check_features(text_features, f"{what}: text features")
    if image_features.shape[0] != text_features.shape[0]:
        raise BadInputError(
            f"{what}: {image_features.shape[0]} image rows but {text_features.shape[0]} text rows; "
            "pairs must be row-aligned"
        )
    if image_features.shape[0] < min_pairs:
        raise BadInputError(f"{what}: needs at least {min_pairs} pairs, got {image_features.shape[0]}")
    return image_features, text_features


def check_caption_pairs(count: int, captions: Any, what: str) -> list[str]:
    """``captions`` checked as N >= 2 caption strings, one per image of ``count`` (a one-line error otherwise)."""
    from align.text.base import check_texts

    captions = check_texts(captions)
    if len(captions) != count:
        raise BadInputError(f"{what}: {count} images but {len(captions)} captions")
    if count < 2:
        raise BadInputError(f"{what}: needs at least 2 pairs, got {count}")
    return captions


def caption_strings(texts: Any, what: str, why: str) -> list[str]:
    """``texts`` as a list of caption strings, or a one-line error saying why ``what`` needs strings
    (aligners that read captions through their own language model refuse another encoder's features)."""
    if isinstance(texts, (list, tuple)) and texts and all(isinstance(t, str) for t in texts):
        return list(texts)
    raise BadInputError(f"{what} needs caption strings, not text-encoder features ({why})")


@dataclass(frozen=True)
class ImageInput:
    """What an aligner's image side consumes, so the runner can hand every aligner its own input.

    ``"pooled"``: an encoder's pooled features ``[N, D]``; ``"tokens"``: its spatial token grid
    ``[N, T, D]`` (MobileNetV2's 7x7 map, a ViT's patch tokens); ``"pixels"``: the images themselves,
    ``[N, channels, size, size]`` floats in [0, 1] (for methods that train their own image encoder)."""

    kind: str = "pooled"
    size: int | None = None  # pixels only
    channels: int | None = None  # pixels only

    def __post_init__(self) -> None:
        if self.kind not in IMAGE_INPUTS:
            raise ValueError(f"image input kind {self.kind!r} is not one of {', '.join(IMAGE_INPUTS)}")
        if (self.kind == "pixels") != (self.size is not None and self.channels is not None):
            raise ValueError("pixel inputs (and only they) need size and channels")


class Aligner:
    """Fit on paired features, then embed either modality into the shared space.

    What each side consumes is declared, so the benchmark runner can serve it:

    - ``image_input``: ``"pooled"`` features (default), an encoder's spatial ``"tokens"``, or
      ``"pixels"`` (see :class:`ImageInput`; pixel aligners say their size in :meth:`image_input_spec`).
    - ``text_input``: ``"features"`` (another encoder's sentence features, the default), ``"strings"``
      (raw captions, for methods that read text through their own language model, such as VLAP), or
      ``"none"`` (image-only methods such as LQAE: no zero-shot tasks).

    A strings aligner whose text side equals a registered text encoder's features names it in
    ``text_encoder_name``, so benchmark results record what was really compared.

    ``config_class`` declares the hyper-parameters (:mod:`align.methods.framework.hparams`): the
    constructor resolves and checks them into ``self.config`` (read them there, typed), and
    ``self.hparams`` is the same as a plain dict (what saved fits, results and identities record). An
    aligner without one (e.g. a plugin written before it existed) keeps whatever it is given.

    What an aligner can do beyond ``fit`` and ``encode_*`` is declared by the flags below, each with the
    method it promises (:mod:`align.methods.framework.capabilities`); the registry refuses a class whose
    flags and methods disagree. ``history`` holds a trained aligner's per-epoch curves (empty for the
    others), and ``logs_curves`` says whether a fit writes its curves into ``log_dir``."""

    name: ClassVar[str]
    image_input: ClassVar[Literal["pooled", "tokens", "pixels"]] = "pooled"
    text_input: ClassVar[Literal["features", "strings", "none"]] = "features"
    config_class: ClassVar[type[HParams] | None] = None
    config: HParams
    hparams: dict[str, Any]
    # code version, part of every result's identity (align.bench.plan.specs): bump it when a change to the
    # method changes its numbers, so results and fits saved by the older code are recomputed
    version: ClassVar[str] = "1"
    # values of hyper-parameters added after earlier versions saved fits, which reproduce those fits'
    # behaviour; a saved file without a key gets this value instead of the (possibly newer) default
    legacy_hparams: ClassVar[dict[str, Any]] = {}
    # hyper-parameters renamed since earlier versions saved fits: old name -> new name
    renamed_hparams: ClassVar[dict[str, str]] = {}

    # capabilities: each flag with the method it promises (placeholders here raise MissingCapability)
    can_caption: ClassVar[bool] = False
    caption = Missing("can_caption", "generate captions")
    reranks_retrieval: ClassVar[bool] = False
    retrieval_scores = Missing("reranks_retrieval", "re-rank retrieval candidates")
    quantizes_images: ClassVar[bool] = False
    image_codes = Missing("quantizes_images", "write images as discrete codes")
    finds_nearest_words: ClassVar[bool] = False
    nearest_words = Missing("finds_nearest_words", "name the words nearest to an image")
    writes_token_strings: ClassVar[bool] = False
    token_strings = Missing("writes_token_strings", "write an image as a string of tokens")
    represents_by_anchors: ClassVar[bool] = False
    represent_image = Missing("represents_by_anchors", "represent an image by its anchors")
    gives_code_indices: ClassVar[bool] = False
    code_indices = Missing("gives_code_indices", "give an image's codebook indices")
    reports_examples: ClassVar[bool] = False
    report_examples = Missing("reports_examples", "describe example images for the report")

    # training curves: per-epoch values by name (trained aligners fill it), and whether a fit logs them
    history: Mapping[str, Sequence[float]] = MappingProxyType({})
    logs_curves: ClassVar[bool] = False
    # False: fit() learns nothing from pairs (a pretrained model's own space, e.g. the CLIP reference), so
    # the runner calls fit() with no inputs and computes no fit-split features for it
    fits_on_pairs: ClassVar[bool] = True

    @classmethod
    def declaration_problems(cls) -> list[str]:
        """Where the class's declared capabilities and its methods disagree (empty: consistent); the
        registry refuses an aligner class with any (:func:`capabilities.declaration_problems`)."""
        return capabilities.declaration_problems(cls)

    def image_input_spec(self) -> ImageInput:
        """The image input this aligner (with its hyper-parameters) consumes."""
        return ImageInput(self.image_input)

    def __init__(self, **hparams: Any) -> None:
        if self.config_class is not None:
            self.config = self.config_class.resolve(self.name, hparams)
            hparams = self.config.as_dict()
        self.hparams = hparams
        self.image_dim: int | None = None
        self.text_dim: int | None = None

    def fit(self, image_features: torch.Tensor, text_features: torch.Tensor) -> "Aligner":
        """Learn the map from ``[N, Di]`` image and ``[N, Dt]`` text features of N pairs."""
        raise NotImplementedError

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        """Image features ``[M, Di]`` in the shared space ``[M, D]``."""
        raise NotImplementedError

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        """Text features ``[M, Dt]`` (or M strings, for a strings aligner) in the shared space ``[M, D]``."""
        raise NotImplementedError

    @property
    def text_encoder_name(self) -> str | None:
        """The registered text encoder a strings aligner's text side equals (None for features aligners)."""
        return None

    @property
    def own_encoders(self) -> tuple[str, str] | None:
        """The (image, text) encoder pair this aligner compares by itself, such as a pretrained CLIP's own
        two towers: the benchmark scores it on that pair only. None: on any pair a config lists."""
        return None

    def check_encoders(self, image_encoder: str, text_encoder: str) -> None:
        """A one-line error if this aligner's scores on features of this encoder pair would mean nothing: an
        aligner with :attr:`own_encoders` on any other pair (precision suffixes aside: the same weights)."""
        from align.precision import split_precision

        own = self.own_encoders
        if own is None:
            return
        given = (split_precision(image_encoder)[0], split_precision(text_encoder)[0])
        if given != own:
            raise BadInputError(f"{self.name}: compares its own encoders only (image {own[0]}, text {own[1]}); "
                                f"got image encoder {image_encoder!r} and text encoder {text_encoder!r}")

    def _require_fitted(self) -> tuple[int, int]:
        """``(image_dim, text_dim)``, or an error if neither ``fit`` nor ``load`` has run."""
        if self.image_dim is None or self.text_dim is None:
            raise RuntimeError(f"{self.name}: aligner is not fitted; call fit() or load() first")
        return self.image_dim, self.text_dim

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every fitted tensor. Keep them contiguous: ``save`` stores contiguous copies, and a matmul on
        another memory layout may differ in the last bit, breaking exact save/load round-trips."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def save(self, path: Path, provenance: dict[str, Any] | None = None) -> None:
        """``path``.safetensors (tensors) and ``path``.json (name, code version, hyper-parameters, dims, the
        tensors' sha256 and ``provenance``, e.g. what the fit was of), each atomically; the JSON is sealed
        with its own checksum (:mod:`align.checksum`), so :func:`load_aligner` finds any changed byte."""
        from safetensors.torch import save_file

        from align.atomic import atomic_path, write_json_atomic
        from align.checksum import file_sha256, seal

        path = Path(path)
        with atomic_path(path.with_suffix(".safetensors")) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp))
            tensors_sha256 = file_sha256(tmp)
        meta = {"aligner": self.name, "version": type(self).version, "hparams": self.hparams,
                "image_dim": self.image_dim, "text_dim": self.text_dim, "safetensors_sha256": tensors_sha256}
        write_json_atomic(path.with_suffix(".json"), seal({**meta, **({"provenance": provenance} if provenance else {})}))

    @classmethod
    def saved_hparams(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """Hyper-parameters saved by any version, in this version's names: renamed keys moved to their
        new names, and keys added since filled with the values that keep the saved behaviour."""
        renamed = {cls.renamed_hparams.get(k, k): v for k, v in saved.items()}
        return {**cls.legacy_hparams, **renamed}

    @classmethod
    def load(cls, path: Path) -> "Aligner":
        """The aligner saved at ``path`` (verified first: :func:`saved_meta`); a file that cannot be
        loaded is a one-line error naming it."""
        return cls._from_saved(Path(path), saved_meta(path))

    @classmethod
    def _from_saved(cls, path: Path, meta: dict[str, Any]) -> "Aligner":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        tensors = path.with_suffix(".safetensors")
        try:
            aligner = cls(**cls.saved_hparams(meta["hparams"]))
        except AlignError as err:
            raise BadInputError(f"{path.with_suffix('.json')}: {err}") from None
        aligner.image_dim, aligner.text_dim = meta["image_dim"], meta["text_dim"]
        try:
            state = load_file(str(tensors))
        except (SafetensorError, OSError, ValueError) as err:
            raise BadInputError(f"{tensors}: not a readable safetensors file ({err})") from None
        try:
            aligner.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError) as err:
            raise BadInputError(f"{tensors}: does not hold a fitted {meta['aligner']} aligner "
                                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
        return aligner


_SAVED_KEYS = {"aligner": str, "hparams": dict, "image_dim": (int, type(None)), "text_dim": (int, type(None))}


def saved_meta(path: Path, *, require_checksums: bool = False) -> dict[str, Any]:
    """The verified ``path``.json of a saved aligner: it parses, has every key, its checksum matches and the
    ``.safetensors`` beside it is the file it names. Files saved before checksums existed load with a
    warning (nothing to verify them against), unless ``require_checksums`` (a fit about to be reused in
    place of fitting, :mod:`align.bench.execute.fitting`): then such a file is refused like a damaged one,
    since any tensors could stand beside it. Anything else wrong is a one-line error naming the file."""
    from align.checksum import file_sha256
    from align.checksum import problem as checksum_problem

    meta_path, tensors = Path(path).with_suffix(".json"), Path(path).with_suffix(".safetensors")
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{meta_path}: no saved aligner there (Aligner.save writes .json and .safetensors)") from None
    except OSError as err:
        raise BadInputError(f"{meta_path}: cannot read ({err.strerror or err})") from None
    except (UnicodeDecodeError, ValueError):
        raise BadInputError(f"{meta_path}: not a saved aligner (not valid JSON; truncated or damaged?)") from None
    except RecursionError:  # json's decoder recurses per nesting level
        raise BadInputError(f"{meta_path}: not a saved aligner (its JSON is nested too deeply)") from None
    if not isinstance(meta, dict):
        raise BadInputError(f"{meta_path}: not a saved aligner (a JSON {type(meta).__name__}, not an object)")
    for key, kind in _SAVED_KEYS.items():
        if key not in meta:
            raise BadInputError(f"{meta_path}: not a saved aligner (no {key!r})")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise BadInputError(f"{meta_path}: {key!r} has the wrong type ({type(meta[key]).__name__})")
    sealed = "checksum" in meta or "safetensors_sha256" in meta
    if not sealed and require_checksums:
        raise BadInputError(f"{meta_path}: saved without checksums (by an older align, or they were removed), "
                            "so it cannot be verified")
    if sealed:
        try:
            why = checksum_problem(meta)
        except RecursionError:  # nesting the decoder took, but the encoder (deeper in the stack) did not
            why = "its JSON is nested too deeply"
        if why is None and not isinstance(meta.get("safetensors_sha256"), str):
            why = "no 'safetensors_sha256'"
        if why is not None:
            raise BadInputError(f"{meta_path}: {why}")
    if not tensors.is_file():
        raise BadInputError(f"{tensors}: missing (a saved aligner is a .json and a .safetensors)")
    if sealed and file_sha256(tensors) != meta["safetensors_sha256"]:
        raise BadInputError(f"{tensors}: sha256 does not match {meta_path.name} (changed or damaged after saving)")
    if not sealed:
        warnings.warn(f"{meta_path}: saved without checksums (by an older align); loaded unverified", stacklevel=3)
    return meta


def load_aligner(path: Path, *, require_checksums: bool = False) -> Aligner:
    """Reload any saved aligner: the class comes from the ``aligner`` name in ``path``.json. Everything
    is verified first (:func:`saved_meta`); a damaged, truncated or incomplete file is a one-line
    :class:`BadInputError` naming it, never a traceback or an aligner with altered numbers.
    ``require_checksums``: refuse a file without checksums too, instead of loading it with a warning."""
    from align.registry import ALIGNERS

    path = Path(path)
    meta = saved_meta(path, require_checksums=require_checksums)
    try:
        cls = type(ALIGNERS.create(meta["aligner"]))
    except AlignError as err:
        raise BadInputError(f"{path.with_suffix('.json')}: {err}") from None
    return cls._from_saved(path, meta)
