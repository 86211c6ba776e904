"""Pixel-identical images are found by their decoded pixels (not their files), within a split and across two."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from align.data.arrays import array_split
from align.data.duplicates import check_no_shared_images, duplicate_groups, pixel_hash, pixel_hashes, shared_images
from align.errors import BadInputError


def _split(name: str, images: np.ndarray) -> object:
    return array_split(dataset="toy", split=name, version="v", images=images, labels=np.zeros(len(images), dtype=np.int64),
                       class_names=("a",), templates=("{c}",), item_ids=[f"{name}/{i}" for i in range(len(images))])


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 6, 6), dtype=np.uint8)


def test_a_planted_shared_image_is_caught_and_named() -> None:
    fit, test = _images(20, 0), _images(10, 1)
    check_no_shared_images(_split("train", fit), _split("test", test))  # none shared: silent
    fit[13] = test[4]
    pairs = shared_images(_split("train", fit), _split("test", test))
    assert pairs == [(13, 4)]
    with pytest.raises(BadInputError, match=r"1 image\(s\) of split 'test'.*test/4 = train/13") as err:
        check_no_shared_images(_split("train", fit), _split("test", test))
    assert "\n" not in str(err.value)


def test_pixels_decide_not_files_modes_or_sizes() -> None:
    image = Image.fromarray(_images(1, 2)[0])
    again = [Image.open(io.BytesIO(_encoded(image, level))) for level in (0, 9)]  # other bytes, same pixels
    assert _encoded(image, 0) != _encoded(image, 9)
    assert {pixel_hash(x) for x in again} == {pixel_hash(image)}
    assert pixel_hash(image.convert("RGB")) != pixel_hash(image)  # same values, another mode
    flat = np.asarray(image).reshape(3, 12)
    assert pixel_hash(Image.fromarray(flat)) != pixel_hash(image)  # same bytes, another size
    one_pixel = np.asarray(image).copy()
    one_pixel[0, 0] ^= 1
    assert pixel_hash(Image.fromarray(one_pixel)) != pixel_hash(image)


def test_duplicate_groups_within_a_split() -> None:
    images = _images(8, 3)
    images[5] = images[1]
    images[7] = images[1]
    assert duplicate_groups(pixel_hashes(_split("all", images))) == [[1, 5, 7]]


def _encoded(image: Image.Image, level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()
