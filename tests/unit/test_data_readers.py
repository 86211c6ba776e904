"""Reading a user's data gives the numbers in the file: every image mode with its real values, CSV
rows that stay rows, and text lines numbered as in an editor. Each test reproduces a defect that
once gave wrong numbers with exit 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from align.data.images import open_image
from align.data.pixels import image_array
from align.data.sentences import read_sentences
from align.encoders.transforms import to_rgb
from align.errors import BadInputError


def png16(path: Path, value: int, size: int = 16) -> Path:
    """A 16-bit greyscale PNG of constant ``value`` (0..65535)."""
    Image.fromarray(np.full((size, size), value, dtype=np.uint16)).save(path)
    return path


# ---- images of every mode --------------------------------------------------------------------------

def test_nearly_black_16bit_image_stays_nearly_black(tmp_path: Path) -> None:
    """Pillow's convert clips 16-bit values to 255: 2000 of 65535 (3% grey) came out white."""
    image = open_image(png16(tmp_path / "dark.png", 2000))
    assert np.asarray(to_rgb(image)).max() <= 10
    raw = Image.open(png16(tmp_path / "dark2.png", 2000))  # a PIL image handed straight to an encoder
    assert np.asarray(to_rgb(raw)).max() <= 10
    assert image_array(raw, 16, 1).max() <= 10 / 255


def test_16bit_image_embeds_like_its_8bit_equivalent(tmp_path: Path) -> None:
    from align.registry import VISION_ENCODERS

    encoder = VISION_ENCODERS.create("toy:cnn")
    dark16 = open_image(png16(tmp_path / "dark.png", 2056))  # 2056 / 257 = 8
    dark8, white8 = Image.new("L", (16, 16), 8), Image.new("L", (16, 16), 255)
    features = encoder.encode_images([dark16, dark8, white8])
    assert torch.allclose(features[0], features[1], atol=1e-5)
    assert not torch.allclose(features[0], features[2], atol=1e-3)


@pytest.mark.parametrize("array,expected", [
    (np.array([[0, 65535]], dtype=np.int32), [0, 255]),  # mode I holding 16-bit values
    (np.array([[0.0, 0.5]], dtype=np.float32), [0, 128]),  # mode F in [0, 1]
    (np.array([[-1000, 1000]], dtype=np.int32), [0, 255]),  # mode I beyond 16 bits: its own range
])
def test_wide_greyscale_modes_scaled_by_their_range(array: np.ndarray, expected: list[int]) -> None:
    assert np.asarray(to_rgb(Image.fromarray(array)))[0, :, 0].tolist() == expected


def test_palette_transparency_cmyk_and_bilevel(tmp_path: Path) -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0  # index 0 (black) is transparent
    palette.save(tmp_path / "p.png")
    rgb = np.asarray(to_rgb(open_image(tmp_path / "p.png")))
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [255, 0, 0]
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    assert np.abs(np.asarray(to_rgb(open_image(tmp_path / "c.jpg"))).astype(int) - [255, 0, 0]).max() < 8
    Image.new("1", (4, 4), 1).save(tmp_path / "b.png")
    assert open_image(tmp_path / "b.png").mode == "L" and image_array(open_image(tmp_path / "b.png"), 4, 1).min() == 1


def test_transparent_greyscale_pixels_do_not_show_their_hidden_value() -> None:
    """A fully transparent LA pixel's grey value is invisible; it must not reach the pixels."""
    la = Image.new("LA", (4, 4), (0, 0))  # black, fully transparent
    assert image_array(la, 4, 1).min() == 1.0  # composited onto white, like RGBA images
    assert np.asarray(to_rgb(la)).min() == 255


# ---- CSV manifests ---------------------------------------------------------------------------------

def write_manifest(folder: Path, text: str) -> Path:
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / name)
    path = folder / "m.csv"
    path.write_bytes(text.encode())
    return path


def test_unclosed_quote_does_not_swallow_the_rows_after_it(tmp_path: Path) -> None:
    from align.data.manifest import Manifest

    path = write_manifest(tmp_path, 'image,caption\na.png,"a red cat\nb.png,a dog\nc.png,"a bird"\n')
    with pytest.raises(BadInputError, match=r"m\.csv, line 2: unclosed quote") as caught:
        Manifest(path).load("all")
    assert "\n" not in str(caught.value)


def test_quoted_commas_and_doubled_quotes_still_work(tmp_path: Path) -> None:
    from align.data.manifest import Manifest

    path = write_manifest(tmp_path, 'image,caption\na.png,"a cat, asleep"\nb.png,"the ""best"" dog"\n')
    assert Manifest(path).load("all").captions == [["a cat, asleep"], ['the "best" dog']]


def test_csv_row_numbers_ignore_unicode_line_separators(tmp_path: Path) -> None:
    from align.data.manifest import Manifest

    path = write_manifest(tmp_path, "image,caption\na.png,one\u2028two\nb.png,\nc.png,x\n")
    with pytest.raises(BadInputError, match=r"m\.csv, line 3: empty caption"):
        Manifest(path).load("all")


# ---- text files ------------------------------------------------------------------------------------

def test_sentences_split_on_newlines_only(tmp_path: Path) -> None:
    """str.splitlines also breaks at \\u2028, \\x0c, \\x1c, \\x85 and a lone \\r: row numbers shifted."""
    path = tmp_path / "s.txt"
    path.write_bytes("one\u2028still one\ntwo\x0cstill two\r\nthree\x85\x1c\rstill three\n".encode())
    assert read_sentences(path) == ["one\u2028still one", "two\x0cstill two", "three\x85\x1c\rstill three"]


def test_sentence_error_names_the_line_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_bytes("a\u2029b\nc\x0bd\n\ne\n".encode())
    with pytest.raises(BadInputError, match=r"s\.txt, line 3: empty sentence"):
        read_sentences(path)


def test_templates_and_classes_files_count_lines_like_an_editor(tmp_path: Path) -> None:
    from align.data.options import resolve_classes
    from align.data.prompts import read_templates

    templates = tmp_path / "t.txt"
    templates.write_bytes("a {c}\x0cphoto\nno placeholder\n".encode())
    with pytest.raises(BadInputError, match=r"t\.txt, line 2: template without"):
        read_templates(str(templates))
    classes = tmp_path / "classes.txt"
    classes.write_bytes("red\u2028apple\ngreen\n".encode())
    assert resolve_classes(classes) == ("red\u2028apple", "green")
