"""Run-length encoding in Kaggle's convention: hand-made cases and an exact round trip on random masks."""

import numpy as np
import pytest

from cloudcover.train.data import rle


def test_hand_computed_column_major_one_based():
    # columns read top to bottom: [1, 1, 0] then [0, 1, 1] -> runs start at pixels 1 and 5, two long each
    m = np.array([[1, 0], [1, 1], [0, 1]], np.uint8)
    assert rle.encode(m) == "1 2 5 2"
    np.testing.assert_array_equal(rle.decode("1 2 5 2", (3, 2)), m)
    # a run crossing the bottom of a column continues at the top of the next one
    assert rle.encode(np.array([[0, 1], [0, 0], [1, 0]])) == "3 2"


def test_empty_and_full_masks():
    assert rle.encode(np.zeros((4, 5), bool)) == ""
    assert rle.encode(np.ones((4, 5), bool)) == "1 20"
    np.testing.assert_array_equal(rle.decode("", (4, 5)), np.zeros((4, 5), np.uint8))
    np.testing.assert_array_equal(rle.decode("1 20", (4, 5)), np.ones((4, 5), np.uint8))


def test_round_trip_on_random_masks():
    """Seeded random masks of random shape and density, from empty to full (hypothesis is not installed)."""
    rng = np.random.default_rng(1234)
    for i in range(300):
        h, w = rng.integers(1, 40, 2)
        density = [0.0, 1.0, rng.random()][i % 3]
        m = (rng.random((h, w)) < density).astype(np.uint8)
        text = rle.encode(m)
        back = rle.decode(text, (h, w))
        np.testing.assert_array_equal(back, m)
        # the runs cover exactly the mask's ones
        nums = [int(t) for t in text.split()]
        assert sum(nums[1::2]) == int(m.sum())


def test_bad_strings_are_errors():
    for bad, match in (("1 2 3", "odd number"), ("0 2", "outside"), ("5 10", "outside"), ("1 3 2 2", "overlap"),
                       ("a b", "non-integer")):
        with pytest.raises(ValueError, match=match):
            rle.decode(bad, (3, 3))
    with pytest.raises(ValueError, match="2-D"):
        rle.encode(np.zeros((2, 2, 2)))
