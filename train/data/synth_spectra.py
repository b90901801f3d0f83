"""Band-consistent spectra for synthetic scenes: surface reflectance per cover, clouds, and the atmosphere.

All 13 Sentinel-2 bands (B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B10 B11 B12); the 4 Landsat bands of 38-Cloud are
taken from their Sentinel-2 equivalents (LANDSAT). Top-of-atmosphere reflectance of a clear pixel is

    toa_b = T_b * surface_b * light + P_b * aerosol

with T the two-way transmittance (B9 sits in a water-vapour band, B10 in a saturated one: the ground is
invisible at 1375 nm, which is why B10 shows only high, thin cloud), P the path radiance (blue-heavy:
Rayleigh). Values are rounded from published library spectra (USGS splib07, ASTER/ECOSTRESS) and
Sentinel-2 L1C scenes; what matters for a model is the ordering between covers per band, e.g. snow is
brighter than cloud in the visible and far darker in B11/B12, salt flats stay bright in SWIR (a hard case
even for 13-band models), water is dark beyond the red.
"""

from __future__ import annotations

import numpy as np

BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
LANDSAT = {"red": 3, "green": 2, "blue": 1, "nir": 7}  # 38-Cloud bands taken from the S2 spectra

COVER = ("vegetation", "soil", "water", "urban", "snow", "forest", "dry_vegetation", "sand", "salt", "roof")
VEG, SOIL, WATER, URBAN, SNOW, FOREST, DRYVEG, SAND, SALT, ROOF = range(len(COVER))
CONFOUNDERS = (SNOW, SAND, SALT, ROOF)  # bright and labelled clear

# Surface reflectance, B1 .. B12 (B10 is never seen through the atmosphere; kept equal to B9 for form).
SURFACE = np.array([
    [.030, .040, .080, .045, .120, .320, .400, .420, .430, .430, .430, .220, .100],  # vegetation (crops, grass)
    [.080, .090, .130, .190, .230, .260, .280, .290, .310, .310, .310, .380, .320],  # bare soil
    [.050, .055, .060, .035, .022, .012, .010, .010, .009, .008, .008, .005, .003],  # water
    [.100, .110, .130, .150, .170, .190, .200, .210, .220, .220, .220, .260, .230],  # urban (mixed)
    [.780, .800, .780, .760, .740, .700, .660, .620, .590, .540, .540, .070, .045],  # snow / ice: dark in SWIR
    [.020, .030, .050, .030, .070, .200, .250, .270, .280, .280, .280, .140, .060],  # forest
    [.060, .070, .100, .130, .170, .220, .250, .270, .290, .290, .290, .330, .240],  # dry vegetation
    [.120, .140, .200, .270, .310, .340, .360, .380, .400, .400, .400, .480, .420],  # bright sand
    [.450, .500, .550, .570, .580, .590, .590, .600, .600, .600, .600, .550, .480],  # salt flat: bright in SWIR
    [.300, .330, .360, .380, .400, .410, .420, .430, .440, .440, .440, .450, .400],  # bright roofs
], dtype=np.float32)
# Opaque water cloud at TOA; B10 is set per cloud layer by its height (high ice cloud bright, low cumulus dark).
CLOUD = np.array([.600, .590, .580, .570, .575, .580, .580, .580, .580, .480, .0, .420, .300], np.float32)
CLOUD_B10_HIGH = np.float32(0.45)  # B10 of an opaque cloud whose top is above the water vapour
TRANSMIT = np.array([.74, .80, .86, .90, .91, .92, .93, .93, .93, .40, .004, .95, .95], np.float32)
PATH = np.array([.110, .080, .050, .034, .028, .022, .018, .015, .013, .005, .0005, .003, .001], np.float32)
# Share of the surface signal left in cloud shadow: the diffuse skylight, more of it in the blue.
SHADOW_KEEP = np.array([.50, .46, .42, .38, .36, .34, .33, .33, .33, .33, .33, .30, .30], np.float32)
# Native resolution per band in 10 m pixels (B1, B9, B10 are 60 m; 20 m bands as 2 x 2 blocks).
COARSEN = (4, 1, 1, 1, 2, 2, 2, 1, 2, 4, 4, 2, 2)


def jittered_surface(rng: np.random.Generator) -> np.ndarray:
    """One place's signatures: a brightness factor per cover and a small per-band wobble (same shape)."""
    j = rng.normal(1.0, 0.08, size=(len(COVER), 1)) * rng.normal(1.0, 0.03, size=(len(COVER), 13))
    return (SURFACE * j.astype(np.float32)).astype(np.float32)
