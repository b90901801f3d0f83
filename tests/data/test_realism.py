"""The realism benchmark's own parts: real truth read right, masks scored right, statistics and error breakdown
computed right, bad input refused. Oracles: the shared data's README table, hand-made arrays, hand-counted
cases. (Training the demo models is the benchmark itself, `python -m cloudcover.train.data.realism`.)"""

import json

import numpy as np
import pytest

from cloudcover.train.data import realism
from cloudcover.train.errors import CloudcoverError

# Pixel shares of thick + thin cloud in manual_hq / gt, from shared/data/README.md (measured there independently).
README_COVERAGE = {"clear": 0.00, "almost-clear": 14.51, "low-cloudy": 14.71, "mid-cloudy": 21.66,
                   "cloudy": 56.81, "38cloud_patch_192_10_by_12": 30.74}


def test_real_patches_carry_the_coverage_of_the_data_readme(shared_data):
    patches = {p.name: p for p in realism.real_patches(shared_data)}
    assert set(patches) == set(README_COVERAGE)
    for name, pct in README_COVERAGE.items():
        p = patches[name]
        assert p.coverage_pct == pytest.approx(pct, abs=0.01)
        assert p.truth.shape == p.valid.shape and p.image.is_file()
        assert 100.0 * p.truth.sum() / p.valid.sum() == pytest.approx(pct, abs=0.01)
    assert patches["cloudy"].source == "cloudsen12" and patches["38cloud_patch_192_10_by_12"].source == "38cloud"


def test_score_mask_hand_counted():
    truth = np.zeros((4, 4), bool)
    truth[:2, :2] = True  # 4 cloud pixels
    pred = np.zeros((4, 4), bool)
    pred[:2, 1:3] = True  # 4 predicted, 2 of them right: IoU 2 / 6
    valid = np.ones((4, 4), bool)
    iou, cov = realism.score_mask(pred, truth, valid)
    assert iou == pytest.approx(2 / 6) and cov == pytest.approx(25.0)
    valid[:, 2:] = False  # 8 valid pixels; pred keeps 2 (both right), truth 4: IoU 2 / 4, coverage 2 / 8
    iou, cov = realism.score_mask(pred, truth, valid)
    assert iou == pytest.approx(0.5) and cov == pytest.approx(25.0)
    empty = np.zeros((4, 4), bool)
    assert realism.score_mask(empty, empty, np.ones((4, 4), bool)) == (None, 0.0)
    # a clear patch with one false pixel: no IoU (it would be 0 for any error), coverage 1 / 16
    assert realism.score_mask(pred & (np.arange(16).reshape(4, 4) == 1), empty, np.ones((4, 4), bool)) == (None, 6.25)


def test_label_stats_on_a_hand_made_scene():
    # 192 px: left half clear ground at 0.1, right half cloud in 2 x 2 blocks alternating 0.3 / 0.5 (a
    # checkerboard at the 96 px model scale: every neighbour differs by 0.2); an 8-px shadow stub is too
    # small to report (< 20 pixels at 96 px).
    refl = np.full((3, 192, 192), 0.1)
    codes = np.zeros((192, 192), np.uint8)
    codes[:, 96:] = 1
    blocks = (np.add.outer(np.arange(96), np.arange(48)) % 2).repeat(2, 0).repeat(2, 1)
    refl[:, :, 96:] = np.where(blocks == 1, 0.5, 0.3)
    codes[:8, 0] = 3
    st = realism.label_stats(refl, codes, np.ones((192, 192), bool))
    f = dict(zip(realism.STAT_FIELDS, st["clear"]))
    assert f["red"] == pytest.approx(0.1) and f["red_std"] == pytest.approx(0.0, abs=1e-6)
    assert f["texture"] == pytest.approx(0.0, abs=1e-6) and f["share_pct"] == pytest.approx(50.0, abs=1.1)
    c = dict(zip(realism.STAT_FIELDS, st["cloud"]))
    assert c["red"] == pytest.approx(0.4) and c["red_std"] == pytest.approx(0.1, abs=1e-6)
    assert c["texture"] == pytest.approx(0.2, abs=1e-6) and c["red_p5"] == pytest.approx(0.3)
    assert st["thick"] == st["cloud"] and st["thin"] is None and st["shadow"] is None


def test_edge_profile_on_a_hand_made_ramp():
    # 128 px at the 509 px scale: ground 0.2 everywhere; cloud labelled from column 64 on, lifted by 0.01 per pixel
    # of distance from the label edge (the k-th labelled column is k + 1 pixels in); a dark shadow (0.05) on 100
    # of the 128 rows of the 12 columns 13-24 px outside the edge must be left out of that bin.
    refl = np.full((3, 128, 128), 0.2)
    codes = np.zeros((128, 128), np.uint8)
    codes[:, 64:] = 1
    refl[:, :, 64:] += 0.01 * (np.arange(64) + 1)
    codes[:100, 40:52] = 3
    refl[:, :100, 40:52] = 0.05
    prof = realism.edge_profile(refl, codes, np.ones((128, 128), bool))
    assert len(prof) == len(realism.EDGE_BINS) - 1
    # bins (-24,-12] (-12,-6] (-6,-3] (-3,0] | (0,3] (3,6] (6,12] (12,24] (24,48]: inside, medians of the lifts
    # 0.01 x {1..3}, {4..6}, {7..12}, {13..24}, {25..48}; outside, clear ground at 0 (the shadow left out)
    np.testing.assert_allclose(prof, [0, 0, 0, 0, 0.02, 0.05, 0.095, 0.185, 0.365], atol=1e-9)
    # a coarser patch (every pixel 2 px of 509, as a 256 px synthetic patch): the k-th labelled column sits at
    # 2 (k + 1) px, so (0,3] holds lift 0.01 and (24,48] the columns 13-24 px in
    small = realism.edge_profile(refl[:, :64, 32:96], codes[:64, 32:96], np.ones((64, 64), bool), px_509=2.0)
    np.testing.assert_allclose(small[4:], [0.01, 0.025, 0.05, 0.095, 0.185], atol=1e-9)
    assert realism.edge_profile(refl, np.zeros_like(codes), np.ones((128, 128), bool)) == [None] * 9


def test_error_breakdown_counts_by_morphology_and_edge_distance(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [("ROI_1/a", 10.0, "haze"), ("ROI_1/b", 30.0, "haze"), ("ROI_2/c", 73.0, "cumulus"), ("ROI_2/d", 0.0, "none")]
    (raw / "synth.json").write_text(json.dumps({"patches": [
        {"image": f"{i}/S2L1C.tif", "coverage_pct": c, "morphology": m} for i, c, m in rows]}))
    pred = tmp_path / "predictions.csv"
    pred.write_text("patch_id,true,predicted\n"
                    "ROI_1__a,clouds_0_25,clouds_25_50\nROI_1__b,clouds_25_50,clouds_25_50\n"
                    "ROI_2__c,clouds_50_75,clouds_75_100\nROI_2__d,clouds_0_25,clouds_0_25\n")
    out = realism.error_breakdown(raw, pred, [0.0, 25.0, 50.0, 75.0, 100.0])
    assert out["errors_by_morphology"] == {"cumulus": {"wrong": 1, "of": 1}, "haze": {"wrong": 1, "of": 2},
                                           "none": {"wrong": 0, "of": 1}}
    assert out["wrong_distance_to_class_edge_pts"] == [2.0, 15.0]


def test_a_folder_without_real_patches_is_refused_and_nothing_written(tmp_path):
    out = tmp_path / "report"
    with pytest.raises(CloudcoverError, match="no real CloudSEN12 or 38-Cloud patches"):
        realism.main(["--shared", str(tmp_path / "empty"), "--work", str(tmp_path / "work"), "--out", str(out)])
    assert not out.exists() and not (tmp_path / "work").exists()


def test_runs_with_other_augmentation_get_their_own_folder_name():
    from cloudcover.train.cli import parse_augment

    assert realism._augment_tag(parse_augment("hflip,vflip")) == ""  # the demo's runs keep their old names
    assert realism._augment_tag(parse_augment("hflip,vflip,contrast=0.4,blur=1")) == "_aug-hflip-vflip-contrast0.4-blur1"
    assert realism._augment_tag(parse_augment("none")) == "_aug-none"
    # the labelled rim names data and runs too (the demo scenes: _rim12)
    assert realism._rim_tag(0.0) == "_rim0" and realism._rim_tag(12.0) == "_rim12" and realism._rim_tag(7.5) == "_rim7.5"
