"""Coverage and binning as pure functions: the definition every other stage relies on."""

import numpy as np
import pytest

from cloudcover.train.data.coverage import (bin_index, class_names, coverage_pct, parse_bins, shadow_pct)
from cloudcover.train.errors import CloudcoverError


def test_thick_and_thin_are_cloud_shadow_only_on_request():
    mask = np.array([[0, 1], [2, 3]], np.uint8)
    assert coverage_pct(mask) == 50.0
    assert coverage_pct(mask, count_shadow=True) == 75.0
    assert shadow_pct(mask) == 25.0


def test_invalid_pixels_are_left_out():
    mask = np.array([[1, 1], [0, 0]], np.float32)
    valid = np.array([[True, False], [True, False]])
    assert coverage_pct(mask, valid) == 50.0
    with pytest.raises(ValueError, match="no valid pixels"):
        coverage_pct(mask, np.zeros_like(valid))


def test_codes_outside_cloudsen12_are_refused():
    with pytest.raises(ValueError, match="outside 0..3"):
        coverage_pct(np.array([0, 255], np.uint8))  # 38-Cloud gt must be converted first


@pytest.mark.parametrize("pct,expected", [(0, 0), (24.999, 0), (25, 1), (49.9, 1), (50, 2), (75, 3), (100, 3)])
def test_bins_are_half_open_and_the_last_closed(pct, expected):
    assert bin_index(pct, [0, 25, 50, 75, 100]) == expected


def test_bin_index_rejects_out_of_range():
    with pytest.raises(ValueError):
        bin_index(100.5, [0, 50, 100])


def test_class_names():
    assert class_names(parse_bins("0,25,50,75,100")) == ["clouds_0_25", "clouds_25_50", "clouds_50_75", "clouds_75_100"]
    assert class_names([0, 12.5, 100]) == ["clouds_0_12p5", "clouds_12p5_100"]


@pytest.mark.parametrize("text,match", [("0,50,50,100", "strictly increasing"), ("0,60,40,100", "strictly increasing"),
                                        ("10,50,100", "start at 0"), ("0,50,90", "end at 100"),
                                        ("0,a,100", "numbers"), ("100", "two edges"), ("0,nan,100", "finite")])
def test_parse_bins_errors_name_the_flag(text, match):
    with pytest.raises(CloudcoverError, match=match) as exc:
        parse_bins(text)
    assert "--bins" in str(exc.value) and "\n" not in str(exc.value)
