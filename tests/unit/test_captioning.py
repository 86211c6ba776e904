"""Caption scores: the COCO scorers behind a Java-free tokenizer, checked on hand-computed cases."""

from __future__ import annotations

import pytest

from align.errors import BadInputError
from align.eval.captioning import caption_metrics, tokenize


def test_tokenize_lowercases_and_drops_punctuation() -> None:
    assert tokenize("Face: Tears of Joy!") == "face tears of joy"
    assert tokenize("  woman's HAT ") == "woman s hat"


def test_bleu1_and_rouge_by_hand() -> None:
    """One word of two right in each caption: corpus unigram precision 1/2, no brevity penalty;
    ROUGE-L (beta 1.2) of a 1-word LCS between two 2-word captions is 1/2."""
    m = caption_metrics(["cat face", "green apple"], [["dog face"], ["red apple"]])
    assert m["Bleu_1"] == pytest.approx(0.5, abs=1e-6)
    assert m["ROUGE_L"] == pytest.approx(0.5, abs=1e-6)


def test_exact_captions_beat_wrong_ones_on_every_score() -> None:
    refs = [["grinning face"], ["red apple"], ["dog face"], ["sun with face"]]
    right = caption_metrics([r[0] for r in refs], refs)
    wrong = caption_metrics(["red apple", "dog face", "sun with face", "grinning face"], refs)
    assert right["Bleu_1"] == pytest.approx(1.0, abs=1e-6) and right["ROUGE_L"] == pytest.approx(1.0)
    for key in ("Bleu_1", "Bleu_2", "ROUGE_L", "CIDEr"):
        assert right[key] > wrong[key], key


def test_empty_generation_scores_zero_not_crash() -> None:
    m = caption_metrics(["", "!!"], [["dog face"], ["red apple"]])
    assert m["Bleu_1"] < 1e-6 and m["CIDEr"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("generated, references, message", [
    (["a"], [["a"], ["b"]], "1 generated captions for 2 images"),
    ([], [], "no captions to score"),
    (["a", "b"], [["a"], ["?"]], "image 1 has no non-empty reference"),
])
def test_bad_inputs_are_one_line_errors(generated: list, references: list, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        caption_metrics(generated, references)
