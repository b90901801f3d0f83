"""Grouped, stratified, seeded split."""

import pytest

from cloudcover.train.data.split import grouped_split, parse_split
from cloudcover.train.errors import CloudcoverError


def _data(n_roi=40, per_roi=8, k=4):
    groups = [f"ROI_{i}" for i in range(n_roi) for _ in range(per_roi)]
    labels = [j % k for i in range(n_roi) for j in range(per_roi)]
    return groups, labels


def test_no_roi_in_two_splits_and_fractions_met():
    groups, labels = _data()
    splits = grouped_split(groups, labels, (0.7, 0.15, 0.15), seed=0)
    for g in set(groups):
        assert len({s for gg, s in zip(groups, splits) if gg == g}) == 1
    n = {s: splits.count(s) for s in ("train", "val", "test")}
    assert n == {"train": 224, "val": 48, "test": 48}
    for s in ("val", "test"):  # stratified: each class equally present
        assert len({sum(1 for sp, lab in zip(splits, labels) if sp == s and lab == c) for c in range(4)}) == 1


def test_seed_changes_which_rois_but_is_deterministic():
    groups, labels = _data()
    a = grouped_split(groups, labels, (0.7, 0.15, 0.15), seed=0)
    assert a == grouped_split(groups, labels, (0.7, 0.15, 0.15), seed=0)
    assert a != grouped_split(groups, labels, (0.7, 0.15, 0.15), seed=1)


def test_unbalanced_groups_still_stay_whole():
    groups = ["a"] * 10 + ["b"] * 3 + ["c"] * 2 + ["d"] * 1
    labels = [0] * 10 + [1] * 3 + [0] * 2 + [1]
    splits = grouped_split(groups, labels, (0.6, 0.2, 0.2), seed=3)
    assert splits[:10] == ["train"] * 10
    assert len(set(splits[10:13])) == 1


@pytest.mark.parametrize("text", ["0.7,0.3", "0.5,0.3,0.3", "0,0.5,0.5", "a,b,c", "0.8,-0.1,0.3"])
def test_bad_split_flags(text):
    with pytest.raises(CloudcoverError, match="--split"):
        parse_split(text)
