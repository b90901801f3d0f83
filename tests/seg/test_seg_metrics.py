"""Pixel metrics against hand-computed cases; nodata ignored; 38-Cloud scene stitching."""

import math

import numpy as np
import pytest

from cloudcover.train.seg_metrics import (
    Counts,
    confusion_counts,
    parse_patch_name,
    predict_mask,
    scene_metrics,
    scores,
    split_metrics,
    stitch,
)


def test_hand_computed_case():
    truth = np.array([[1, 1, 0, 0],
                      [1, 0, 0, 255]], np.uint8)
    pred = np.array([[1, 0, 1, 0],
                     [1, 0, 0, 1]], bool)  # the last pixel is nodata: ignored even though predicted cloud
    c = confusion_counts(pred, truth)
    assert c == Counts(tp=2, fp=1, fn=1, tn=3)
    s = scores(c)
    assert s["dice"] == pytest.approx(4 / 6)  # 2TP / (2TP + FP + FN)
    assert s["iou"] == pytest.approx(2 / 4)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["specificity"] == pytest.approx(3 / 4)
    assert s["accuracy"] == pytest.approx(5 / 7)


def test_empty_truth_and_empty_prediction_is_perfect_not_undefined():
    s = scores(confusion_counts(np.zeros((3, 3), bool), np.zeros((3, 3), np.uint8)))
    assert s["dice"] == s["iou"] == s["precision"] == s["recall"] == 1.0 and s["specificity"] == 1.0
    s = scores(confusion_counts(np.ones((3, 3), bool), np.zeros((3, 3), np.uint8)))
    assert s["dice"] == 0.0 and s["precision"] == 0.0 and s["specificity"] == 0.0 and s["recall"] == 1.0


def test_pooled_counts_are_not_the_mean_of_patch_ratios():
    # patch A: 1 cloud pixel found of 1; patch B: 0 of 3 found. Pooled recall 1/4, mean of patch recalls 1/2.
    truth = np.array([[[1, 0], [0, 0]], [[1, 1], [1, 0]]], np.uint8)
    logits = np.where(np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], bool), 3.0, -3.0)[..., None]
    m = split_metrics(logits, truth)
    assert m["recall"] == pytest.approx(1 / 4)
    assert m["dice"] == pytest.approx(2 / (2 + 0 + 3))
    assert m["per_patch"]["dice_mean"] == pytest.approx((1.0 + 0.0) / 2)


def test_threshold_is_a_probability():
    z = np.array([-0.1, 0.0, 0.1, math.log(0.8 / 0.2) - 1e-6, math.log(0.8 / 0.2) + 1e-6])
    np.testing.assert_array_equal(predict_mask(z, 0.5), [False, True, True, True, True])
    np.testing.assert_array_equal(predict_mask(z, 0.8), [False, False, False, False, True])


def test_patch_names():
    p = parse_patch_name("patch_192_10_by_12_LC08_L1TP_002053_20160520_20170324_01_T1")
    assert (p.number, p.row, p.col, p.scene) == (192, 10, 12, "LC08_L1TP_002053_20160520_20170324_01_T1")
    assert parse_patch_name("ROI_0001__20180101T000000") is None


def test_stitch_puts_each_patch_at_its_row_and_column():
    h, w = 3, 4
    names, masks = [], []
    for n, (r, c) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2), (3, 2)], 1):
        names.append(f"patch_{n}_{r}_by_{c}_SCENE_A")
        masks.append(np.full((h, w), 10 * r + c, np.uint8))
    names.append("patch_9_1_by_1_SCENE_B")
    masks.append(np.full((h, w), 7, np.uint8))
    scenes = stitch(names, masks, fill=255)
    a = scenes["SCENE_A"]
    assert a.shape == (3 * h, 2 * w)
    for r in (1, 2, 3):
        for c in (1, 2):
            block = a[(r - 1) * h:r * h, (c - 1) * w:c * w]
            expected = 255 if (r, c) == (3, 1) else 10 * r + c  # no patch at row 3, column 1
            assert (block == expected).all(), (r, c)
    assert scenes["SCENE_B"].shape == (h, w) and (scenes["SCENE_B"] == 7).all()


def test_scene_metrics_pool_each_scene():
    names = ["patch_1_1_by_1_S", "patch_2_1_by_2_S", "patch_1_1_by_1_T"]
    truths = [np.ones((2, 2), np.uint8), np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)]
    preds = [np.ones((2, 2), bool), np.ones((2, 2), bool), np.zeros((2, 2), bool)]
    m = scene_metrics(names, preds, truths, 0.5)
    assert m["n_scenes"] == 2
    assert m["scenes"]["S"]["dice"] == pytest.approx(8 / 12)  # TP 4, FP 4
    assert m["scenes"]["T"]["dice"] == 0.0
    assert m["mean_over_scenes"]["dice"] == pytest.approx((8 / 12 + 0) / 2)
    assert scene_metrics(["a", "b"], preds[:2], truths[:2], 0.5) is None
