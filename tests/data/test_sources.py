"""The real CloudSEN12 and 38-Cloud samples give exactly the coverages measured in shared/data/README.md."""

import numpy as np
import pytest

from cloudcover.train.data.coverage import coverage_pct
from cloudcover.train.data.render import read_patch_rgb, render_rgb
from cloudcover.train.data.sources import Cloud38, CloudSEN12, get_source
from cloudcover.train.errors import CloudcoverError

# stratum: (thick+thin %, any non-zero incl. shadow %), from the README table
README = {"clear": (0.00, 0.00), "almost-clear": (14.51, 30.72), "low-cloudy": (14.71, 27.27),
          "mid-cloudy": (21.66, 27.15), "cloudy": (56.81, 77.99)}


def test_cloudsen12_samples_match_the_readme(shared_data):
    refs = CloudSEN12().find(shared_data / "cloudsen12")
    assert sorted(r.patch_id.split("__")[-1] for r in refs) == sorted(README)
    assert {r.roi for r in refs} == {"ROI_1746"}
    for ref in refs:
        s = CloudSEN12().read(ref)
        cloud, any_nonzero = README[ref.patch_id.split("__")[-1]]
        assert coverage_pct(s.mask, s.valid) == pytest.approx(cloud, abs=0.005)
        assert coverage_pct(s.mask, s.valid, count_shadow=True) == pytest.approx(any_nonzero, abs=0.005)
        assert s.valid.all() and s.crs is not None


def test_38cloud_sample_gives_its_gt_share(shared_data):
    (ref,) = Cloud38().find(shared_data / "38cloud")
    assert ref.roi == "LC08_L1TP_002053_20160520_20170324_01_T1"
    s = Cloud38().read(ref)
    assert s.rgb.shape == (3, 384, 384)
    assert coverage_pct(s.mask, s.valid) == pytest.approx(30.7, abs=0.05)


def test_scribble_labels_count_only_labelled_pixels(shared_data):
    refs = CloudSEN12().find(shared_data / "cloudsen12", label="manual_sc")
    s = CloudSEN12().read(next(r for r in refs if r.patch_id.endswith("mid-cloudy")))
    assert 0 < s.valid.mean() < 0.5  # most scribble pixels are nodata
    assert 0 < coverage_pct(s.mask, s.valid) < 100


def test_rendering_is_fixed_not_stretched(shared_data):
    cloudy = read_patch_rgb(shared_data / "cloudsen12/ROI_1746/high/cloudy/S2L1C.tif")
    clear = read_patch_rgb(shared_data / "cloudsen12/ROI_1746/high/clear/S2L1C.tif")
    assert cloudy.dtype == np.uint8 and cloudy.shape == (509, 509, 3)
    assert cloudy.mean() > clear.mean() + 15  # a per-image stretch would bring them together
    l8 = read_patch_rgb(shared_data / "38cloud/38-Cloud_training/train_red/"
                        "red_patch_192_10_by_12_LC08_L1TP_002053_20160520_20170324_01_T1.TIF")
    assert l8.shape == (384, 384, 3)


def test_render_rules_by_band_count():
    dn = np.full((13, 4, 4), 3000, np.uint16)
    dn[3], dn[2], dn[1] = 6000, 3000, 1000  # B4 red, B3 green, B2 blue
    rgb = render_rgb(dn, "cloudsen12")
    assert rgb.shape == (4, 4, 3) and rgb[0, 0, 0] == 255 and rgb[0, 0, 0] > rgb[0, 0, 1] > rgb[0, 0, 2]
    assert (render_rgb(np.zeros((3, 2, 2), np.float32), "cloudsen12") == 0).all()
    assert render_rgb(np.full((4, 2, 2), 20000, np.uint16), "38cloud").shape == (2, 2, 3)
    with pytest.raises(CloudcoverError, match="5 bands"):
        render_rgb(np.zeros((5, 2, 2), np.uint16), "cloudsen12")


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(CloudcoverError, match="cloudsen12, 38cloud"):
        get_source("landsat9")
