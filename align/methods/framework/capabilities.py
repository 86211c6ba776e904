"""What an aligner can do beyond fitting and embedding, declared once on its class.

Each capability is a flag on :class:`~align.methods.framework.base.Aligner` (False there) and the
method it promises (a placeholder there). An aligner that has one sets the flag and defines the method;
callers read the flag, never probe for the method:

========================= ============================================================ ==================
flag                      method                                                       built-ins
========================= ============================================================ ==================
``can_caption``           ``caption(images) -> list[str]``                             VLAP
``reranks_retrieval``     ``retrieval_scores(images, texts) -> (i2t, t2i) | None``     Codebook-VLP
``quantizes_images``      ``image_codes(images) -> [N, T]`` code ids                   LQAE, Codebook-VLP
``finds_nearest_words``   ``nearest_words(images) -> list[list[str]]``                 VLAP
``writes_token_strings``  ``token_strings(images) -> list[str]`` (the image as tokens) LQAE
``represents_by_anchors`` ``represent_image(images)`` (weights over the fit's anchors) ASIF
``gives_code_indices``    ``code_indices(images) -> [N, T]`` codebook indices          Codebook-VLP
``reports_examples``      ``report_examples(images) -> list[dict]`` (report pictures)  none
========================= ============================================================ ==================

A flag may be a property where it depends on the hyper-parameters (Codebook-VLP quantizes images only
with ``codebook: true``); the class then defines the method. ``retrieval_scores`` may return None for an
instance that does not re-rank after all (Codebook-VLP with ``rerank_k: 0``).

The registry refuses, with one line, an aligner class whose flags and methods disagree
(:func:`declaration_problems`): a flag set without its method, or a method defined without its flag.

Reading the placeholder of a capability an aligner lacks raises :class:`MissingCapability`: an
``AlignError`` (one line, naming the aligner) that is also an ``AttributeError``, so the older probe
``getattr(aligner, "caption", None)`` still finds nothing and ``hasattr`` is False.
"""

from __future__ import annotations

import inspect
from typing import Any

from align.errors import AlignError

# flag -> the method it promises
CAPABILITIES: dict[str, str] = {
    "can_caption": "caption",
    "reranks_retrieval": "retrieval_scores",
    "quantizes_images": "image_codes",
    "finds_nearest_words": "nearest_words",
    "writes_token_strings": "token_strings",
    "represents_by_anchors": "represent_image",
    "gives_code_indices": "code_indices",
    "reports_examples": "report_examples",
}
IMAGE_INPUTS = ("pooled", "tokens", "pixels")
TEXT_INPUTS = ("features", "strings", "none")


class MissingCapability(AlignError, AttributeError):
    """A capability method read from an aligner that does not declare it."""


class Missing:
    """The base class's placeholder for a capability method (see the module docstring)."""

    def __init__(self, flag: str, doing: str) -> None:
        self.flag, self.doing = flag, doing
        self.method = CAPABILITIES[flag]

    def __get__(self, aligner: Any, owner: type | None = None) -> Any:
        if aligner is None:
            return self  # read from the class: what declaration_problems compares against
        name = getattr(type(aligner), "name", type(aligner).__name__)
        raise MissingCapability(f"{name}: cannot {self.doing} ({type(aligner).__name__}.{self.flag} is False)")


def declaration_problems(cls: type) -> list[str]:
    """What an aligner class declares that it does not implement, or implements without declaring (empty:
    consistent); also input kinds outside their choices."""
    problems = []
    for flag, method in CAPABILITIES.items():
        declared = inspect.getattr_static(cls, flag)
        has_method = not isinstance(inspect.getattr_static(cls, method, None), Missing)
        if not isinstance(declared, (bool, property)):
            problems.append(f"{flag} must be True, False or a property, not {declared!r}")
        elif declared is not False and not has_method:
            problems.append(f"declares {flag} but does not define {method}()")
        elif declared is False and has_method:
            problems.append(f"defines {method}() but does not declare {flag} = True")
    for kind, choices in (("image_input", IMAGE_INPUTS), ("text_input", TEXT_INPUTS)):
        if inspect.getattr_static(cls, kind) not in choices:
            problems.append(f"{kind} must be one of {', '.join(choices)}, not {inspect.getattr_static(cls, kind)!r}")
    return problems
