"""fidelity_bench's own logic: agreement counting by hand and `--qat-variant` parsing (the training it drives is
exercised by tests/train/test_qat.py and by running the bench itself)."""

from __future__ import annotations

import numpy as np
import pytest

from cloudcover.export.fidelity_bench import agreement, main, parse_variant, tie_bias
from cloudcover.train.errors import CloudcoverError


def test_agreement_counts_top1_flips_by_hand():
    ref = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [0.4, 0.6, 0.0]])
    int8 = np.array([[5, 1, 0], [3, 2, 1], [0, 0, 9], [1, 2, 0]])  # image 1 flips from class 1 to class 0
    assert agreement(int8, ref) == (0.75, 1)


def test_tie_bias_by_hand():
    ref = np.array([[1.0, 0.9, 0.0], [0.0, 2.0, 2.1]])
    # image 0: top two are classes 0, 1: (q1 - q0) - (0.9 - 1.0) = (0.5 - 1.0) + 0.1 = -0.4
    # image 1: top two are classes 1, 2: (q2 - q1) - (2.1 - 2.0) = (2.0 - 2.2) - 0.1 = -0.3
    q = np.array([[1.0, 0.5, 3.0], [0.0, 2.2, 2.0]])
    assert tie_bias(q, ref) == pytest.approx(-0.35)
    assert tie_bias(ref, ref) == 0.0


def test_variant_values_take_the_qat_settings_types():
    name, o = parse_variant("agree:distill=1,margin=0.5,quantize_output=false,epochs=8,lr=3e-5")
    assert name == "agree"
    assert o == {"distill": True, "margin": 0.5, "quantize_output": False, "epochs": 8, "lr": 3e-5}
    assert type(o["epochs"]) is int and type(o["margin"]) is float
    assert parse_variant("plain") == ("plain", {})


@pytest.mark.parametrize("spec", ["x:nosuch=1", "x:margin", "x:run=/tmp", "two words:margin=1", "x:epochs=abc",
                                  "x:distill=maybe"])
def test_bad_variants_are_refused(spec):
    with pytest.raises(CloudcoverError, match="bad --qat-variant"):
        parse_variant(spec)


@pytest.mark.parametrize("argv, says", [(["--qat-variant", "a:margin=1"], "--qat-epochs"),
                                        (["--qat-epochs", "1", "--qat-variant", "a:nosuch=1"], "nosuch")])
def test_bad_command_lines_are_usage_errors_before_any_training(tmp_path, capsys, argv, says):
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), *argv])
    assert e.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_logit_error_and_near_ties_by_hand():
    from cloudcover.export.fidelity_bench import logit_rmse, near_ties

    ref = np.array([[1.0, 0.95, 0.0], [2.0, 0.0, 0.0], [0.3, 0.25, 0.29]])
    assert near_ties(ref) == 2  # gaps 0.05, 2.0, 0.01
    assert near_ties(ref, gap=0.02) == 1
    int8 = ref + np.array([[0.3, 0.0, 0.0], [0.0, -0.3, 0.3], [0.0, 0.0, 0.0]])  # 3 errors of 0.3 in 9 logits
    assert logit_rmse(int8, ref) == pytest.approx(np.sqrt(3 * 0.09 / 9))
