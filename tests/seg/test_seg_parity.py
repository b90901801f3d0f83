"""Export parity, task-aware: per-pixel agreement and Dice for segmenters; classifiers unchanged."""

import numpy as np
import pytest

from cloudcover.export import parity


def test_segmentation_rows_hand_computed():
    y = np.array([[[1, 1], [0, 255]]], np.uint8)  # one 2 x 2 patch, the last pixel nodata
    ref = np.array([[[[2.0], [1.0]], [[-1.0], [3.0]]]], np.float32)  # float model: cloud, cloud, clear, (cloud)
    q = np.array([[[[2.0], [-0.5]], [[-1.0], [-3.0]]]], np.float32)  # int8: misses the second pixel
    row = parity.compare("tflite int8", "m.tflite", 10, q, ref, y, task="segmentation")
    assert row.score_name == "dice" and row.task == "segmentation"
    assert row.agreement == pytest.approx(2 / 3)  # of the 3 valid pixels; the nodata one is not counted
    assert row.accuracy == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))  # Dice of the int8 mask: TP 1, FN 1
    assert row.max_abs_logit_diff == pytest.approx(6.0)
    assert row.max_abs_prob_diff == pytest.approx(1 / (1 + np.exp(-3)) - 1 / (1 + np.exp(3)))
    ref_row = parity.compare("keras fp32", "model.keras", 10, ref, ref, y, task="segmentation")
    g = parity.goals([ref_row, row])["tflite int8"]
    assert g["dice_drop_points"] == pytest.approx((1.0 - 2 / 3) * 100) and not g["drop_ok"]
    table = parity.markdown([ref_row, row], 1)
    assert "| dice | agreement (pixels) |" in table and "dice drop +33.33 points" in table


def test_classification_rows_keep_their_meaning():
    ref = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    q = np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    row = parity.compare("tflite int8", "m.tflite", 10, q, ref, np.array([0, 1, 1]))
    assert row.score_name == "accuracy" and row.accuracy == pytest.approx(1 / 3) and row.agreement == pytest.approx(2 / 3)
    assert "accuracy_drop_points" in parity.goals([parity.compare("k", "k", 1, ref, ref, np.array([0, 1, 1])), row])[
        "tflite int8"]
