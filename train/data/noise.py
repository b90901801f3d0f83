"""Multi-scale (1/f^beta) noise fields by inverse FFT: the texture of ground and clouds.

One inverse real FFT per field gives every scale at once (no octave loop), which is what keeps
synthesis of 480 13-band 509 x 509 scenes well under a minute on two cores.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft


@lru_cache(maxsize=8)
def _radius(size: int) -> np.ndarray:
    fy = np.fft.fftfreq(size).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(size).astype(np.float32)[None, :]
    return np.sqrt(fy * fy + fx * fx)


def fractal(rng: np.random.Generator, size: int, beta: float, n: int = 1, scale_px: float | None = None,
            ) -> np.ndarray:
    """n periodic fields (n, size, size), zero mean, unit std, power spectrum ~ 1/f^beta.

    beta ~2 is rough (vegetation texture), ~3 is cloud-like, ~4 is smooth (land-cover regions).
    scale_px caps the largest feature: frequencies below 1/scale_px are flattened.
    """
    f0 = np.float32(1.0 / scale_px) if scale_px else np.float32(1.0 / size)
    r = _radius(size)
    amp = (r * r + f0 * f0) ** np.float32(-beta / 4.0)
    amp[0, 0] = 0.0
    shape = (n, size, size // 2 + 1)
    spec = (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32))
    spec *= amp
    field = scipy.fft.irfft2(spec.astype(np.complex64), s=(size, size), axes=(1, 2), workers=1)
    field -= field.mean(axis=(1, 2), keepdims=True)
    field /= field.std(axis=(1, 2), keepdims=True) + np.float32(1e-12)
    return field.astype(np.float32, copy=False)


def quantile_threshold(values: np.ndarray, n_above: int) -> float:
    """A threshold t with exactly n_above values > t (for distinct values): hits a target share exactly.

    np.quantile interpolates; here t sits halfway between the two order statistics around the cut, so
    `values > t` selects exactly n_above pixels. n_above 0 -> +inf, n_above == size -> -inf.
    """
    flat = values.ravel()
    n = flat.size
    if n_above <= 0:
        return float("inf")
    if n_above >= n:
        return float("-inf")
    k = n - n_above
    part = np.partition(flat, (k - 1, k))
    return float((np.float64(part[k - 1]) + np.float64(part[k])) / 2.0)
