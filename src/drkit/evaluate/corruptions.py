"""ImageNet-C style corruptions (Hendrycks & Dietterich, 2019) with an explicit RNG.

Why not the ``imagecorruptions`` package: it draws from numpy's *global* RNG and hard-codes 224-px
constants (a 28-px image at severity 5 is a smear). Here a corruption is a pure function of
``(image, family, severity, rng)`` and :func:`corruption_seed` keys the generator per image, so an
evaluation is byte-identical whatever the batching.

Families: ImageNet-C's noise, blur and digital ones. Left out: frost (needs ImageNet-C's photographs),
snow and spatter (ImageMagick/OpenCV pipelines), saturate (a no-op on grey images), fog and glass blur
(not monotone in severity at 28-32 px).

Severity constants are ImageNet-C's. Photometric ones act per pixel and are used as they are; kernel
extents (blur radii and sigmas, pixelate's block size excess ``b - 1``, elastic displacement and
smoothing) are multiplied by ``s = sqrt(min(H, W) / 224)`` (:func:`spatial_scale`). Why the square root:
ImageNet's extents destroy a 28-px image, linear scaling makes low severities sub-pixel no-ops on uint8;
at 32 px it lands near what CIFAR-10-C hand-tuned (Gaussian blur σ 0.38 vs 0.4).

Small departures, each for a reason: the defocus disk is area-weighted (continuous in a non-integer
radius); motion blur is ImageMagick's kernel rebuilt in numpy; brightness is the exact HSV value shift
without a colour-space round trip (works for 1 channel); results are rounded rather than truncated.
"""
from __future__ import annotations

import io
import math
import zlib
from typing import Callable, Dict

import numpy as np
import torch

from ..errors import DrkitError

REFERENCE_SIZE = 224  # side length ImageNet-C's constants were tuned for
SEVERITIES = (1, 2, 3, 4, 5)

#: ``fn(x, severity, rng) -> y``: ``x`` float32 CHW in [0, 1]; ``y`` float CHW (clipped later)
CorruptionFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
#: family name -> corruption function (filled at the end of the module); use :func:`corrupt`
CORRUPTIONS: Dict[str, CorruptionFn] = {}


def spatial_scale(height: int, width: int) -> float:
    """Factor applied to ImageNet-C's kernel extents: ``sqrt(min(H, W) / 224)`` (module docstring)."""
    return math.sqrt(min(height, width) / REFERENCE_SIZE)


def corruption_seed(seed: int, family: str, severity: int, index: int) -> np.random.Generator:
    """Per-image generator; the family enters as the CRC-32 of its name, so adding one changes no other's draws."""
    return np.random.default_rng([int(seed), zlib.crc32(family.encode("utf-8")), int(severity), int(index)])


def corrupt(img: torch.Tensor, family: str, severity: int, rng: np.random.Generator) -> torch.Tensor:
    """``family`` at ``severity`` (1..5) on a uint8 CHW image (1 or 3 channels): a new uint8 CHW tensor."""
    fn = CORRUPTIONS.get(family)
    if fn is None:
        raise DrkitError(f"unknown corruption {family!r}; choose from {', '.join(sorted(CORRUPTIONS))}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise DrkitError(f"corruption severity must be an integer 1..5, got {severity!r}")
    if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8 or img.ndim != 3:
        raise ValueError("corrupt() expects a uint8 CHW torch tensor")
    if img.shape[0] not in (1, 3):
        raise ValueError(f"corrupt() expects 1 or 3 channels, got {img.shape[0]}")
    x = img.detach().cpu().numpy().astype(np.float32) / 255.0
    y = np.asarray(fn(x, int(severity), rng), dtype=np.float64)
    return torch.from_numpy(np.rint(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8))


# ----------------------------------------------------------------------------- helpers


def _to_pil(x: np.ndarray):
    from PIL import Image

    arr = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    # a 2-D uint8 array becomes mode "L", an HxWx3 one "RGB"
    return Image.fromarray(arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0)))


def _from_pil(im, channels: int) -> np.ndarray:
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """Area-weighted disk kernel (sums to 1), softened by a Gaussian of ``alias_blur`` px."""
    from scipy import ndimage

    half = int(math.ceil(radius + 3 * alias_blur)) + 1
    sub = 8  # supersampling per axis
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    grid = np.arange(-half, half + 1)
    fine = (grid[:, None] + offs[None, :]).ravel()
    yy, xx = np.meshgrid(fine, fine, indexing="ij")
    inside = (yy**2 + xx**2 <= radius**2).astype(np.float64)
    kernel = inside.reshape(grid.size, sub, grid.size, sub).mean(axis=(1, 3))
    if kernel.sum() == 0:  # radius below the supersampling grid: identity
        kernel[half, half] = 1.0
    kernel /= kernel.sum()
    if alias_blur > 0:
        kernel = ndimage.gaussian_filter(kernel, alias_blur, mode="constant")
    return kernel / kernel.sum()


# ----------------------------------------------------------------------------- noise
# Photometric: ImageNet-C constants as they are.

_GAUSSIAN_NOISE = (0.08, 0.12, 0.18, 0.26, 0.38)
_SHOT_NOISE = (60, 25, 12, 5, 3)
_IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)
_SPECKLE_NOISE = (0.15, 0.2, 0.35, 0.45, 0.6)


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive N(0, c²) noise per pixel and channel."""
    return x + rng.normal(0.0, _GAUSSIAN_NOISE[severity - 1], size=x.shape)


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon noise with ``c`` photons at full intensity."""
    c = _SHOT_NOISE[severity - 1]
    return rng.poisson(x * c) / c


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper on a fraction ``c`` of the values (skimage's ``s&p``, half salt)."""
    flipped = rng.random(x.shape) < _IMPULSE_NOISE[severity - 1]
    salt = rng.random(x.shape) < 0.5
    return np.where(flipped, salt, x)


def speckle_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative Gaussian noise ``x + x * N(0, c²)``."""
    return x + x * rng.normal(0.0, _SPECKLE_NOISE[severity - 1], size=x.shape)


# ----------------------------------------------------------------------------- blur
# Kernel extents scaled by spatial_scale().

_GAUSSIAN_BLUR = (1, 2, 3, 4, 6)  # sigma, px at 224
_DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # disk radius, alias blur
_MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # ImageMagick radius, sigma
# zoom factors: relative to the image already, not rescaled
_ZOOM_BLUR = tuple(np.arange(1, stop, step) for stop, step in ((1.11, .01), (1.16, .01), (1.21, .02), (1.26, .02),
                                                              (1.31, .03)))


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, σ = ImageNet-C σ × s (edge pixels repeated, as skimage does)."""
    from scipy import ndimage

    sigma = _GAUSSIAN_BLUR[severity - 1] * spatial_scale(*x.shape[1:])
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="nearest", truncate=4.0)


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Disk (out-of-focus) blur, radius and anti-alias σ × s; borders mirrored like cv2."""
    from scipy import ndimage

    radius, alias = (v * spatial_scale(*x.shape[1:]) for v in _DEFOCUS_BLUR[severity - 1])
    return ndimage.correlate(x, _disk(radius, alias)[None], mode="mirror")


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageMagick's ``-motion-blur`` at a random angle in [-45°, 45°]: ``2*ceil(radius)+1`` taps along a
    ray weighted ``exp(-i²/2σ²)``, radius and σ × s, taps splatted bilinearly (continuous in both)."""
    from scipy import ndimage

    s = spatial_scale(*x.shape[1:])
    radius, sigma = (v * s for v in _MOTION_BLUR[severity - 1])
    angle = math.radians(rng.uniform(-45.0, 45.0))
    taps = 2 * int(math.ceil(radius)) + 1
    half = taps + 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1))
    for i in range(taps):
        w = math.exp(-(i * i) / (2.0 * sigma * sigma))
        py, px = half + i * math.sin(angle), half + i * math.cos(angle)
        y0, x0 = int(math.floor(py)), int(math.floor(px))
        fy, fx = py - y0, px - x0
        for dy, dx, a, b in ((0, 0, 1 - fy, 1 - fx), (0, 1, 1 - fy, fx), (1, 0, fy, 1 - fx), (1, 1, fy, fx)):
            kernel[y0 + dy, x0 + dx] += w * a * b
    kernel /= kernel.sum()
    return ndimage.correlate(x, kernel[None], mode="nearest")


def zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Average of the image zoomed about its centre by each factor (radial streaks)."""
    from scipy import ndimage

    _, h, w = x.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    out = x.astype(np.float64).copy()
    factors = _ZOOM_BLUR[severity - 1]
    for z in factors:
        coords = [cy + (yy - cy) / z, cx + (xx - cx) / z]
        out += np.stack([ndimage.map_coordinates(ch, coords, order=1, mode="nearest") for ch in x])
    return out / (len(factors) + 1)


# ----------------------------------------------------------------------------- digital

_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
_BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
_JPEG_QUALITY = (25, 18, 15, 10, 7)
_PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)  # ImageNet-C resize factor c; block size b = 1/c px


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pull each channel towards its spatial mean by factor ``c``."""
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * _CONTRAST[severity - 1] + means


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Raise HSV value by ``c`` (clipped at 1): with H and S fixed RGB scales with V, so ``rgb * V'/V`` is
    skimage's hsv round trip exactly; black (V = 0) becomes grey ``V'``; one channel's V is the pixel."""
    v = x.max(axis=0, keepdims=True)
    v_new = np.minimum(v + _BRIGHTNESS[severity - 1], 1.0)
    ratio = np.divide(v_new, v, out=np.zeros_like(v), where=v > 0)
    return np.where(v > 0, x * ratio, v_new)


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Encode and decode as JPEG at ImageNet-C's quality (Pillow, deterministic)."""
    from PIL import Image

    buf = io.BytesIO()
    _to_pil(x).save(buf, format="JPEG", quality=_JPEG_QUALITY[severity - 1])
    return _from_pil(Image.open(buf), x.shape[0])  # Image.open rewinds the buffer


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Box-downsample then box-upsample; block size ``b' = 1 + (1/c - 1) * s`` px."""
    from PIL import Image

    _, h, w = x.shape
    block = 1.0 + (1.0 / _PIXELATE[severity - 1] - 1.0) * spatial_scale(h, w)
    small = (max(1, int(w / block)), max(1, int(h / block)))
    im = _to_pil(x).resize(small, Image.BOX).resize((w, h), Image.BOX)
    return _from_pil(im, x.shape[0])


_ELASTIC_ALPHA = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)
_ELASTIC_SIGMA = 0.01 * REFERENCE_SIZE  # px at 224: smoothing of the displacement field
_ELASTIC_MAX_D = 0.005 * REFERENCE_SIZE  # px at 224: amplitude of the raw uniform field


def _smoothed_unit_rms(sigma: float) -> float:
    """RMS of U(-1, 1) white noise after ``gaussian_filter(sigma, truncate=3)`` (interior)."""
    radius = int(3.0 * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    return math.sqrt(1.0 / 3.0) * float((k**2).sum())  # separable: sqrt(sum k2d^2) = sum k1d^2


def elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Smoothed random displacement field (Simard et al. 2003), growing with severity.

    Severities: ``imagecorruptions``' variant (Michaelis et al. 2019), because ``make_imagenet_c.py``'s
    adds an affine warp that *shrinks* with severity (mean |Δ| at 224 px: 16.6, 23.0, 3.6, 3.7, 3.5 grey
    levels). At 224 px: σ = 2.24 px, per-axis RMS displacement 1.0-2.5 px; both × s at other sizes, the
    RMS rescaled explicitly (below σ ≈ 1 px smoothing no longer shrinks the noise, and 32-px images
    would jitter by the full 224-px amount)."""
    from scipy import ndimage

    _, h, w = x.shape
    s = spatial_scale(h, w)
    rms_224 = _ELASTIC_ALPHA[severity - 1] * _ELASTIC_MAX_D * _smoothed_unit_rms(_ELASTIC_SIGMA)
    sigma = _ELASTIC_SIGMA * s
    gain = rms_224 * s / _smoothed_unit_rms(sigma)
    dy, dx = (ndimage.gaussian_filter(rng.uniform(-1.0, 1.0, (h, w)), sigma, mode="reflect", truncate=3) * gain
              for _ in range(2))
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.stack([ndimage.map_coordinates(ch, [yy + dy, xx + dx], order=1, mode="reflect") for ch in x])


CORRUPTIONS.update((fn.__name__, fn) for fn in (
    gaussian_noise, shot_noise, impulse_noise, speckle_noise, gaussian_blur, defocus_blur, motion_blur, zoom_blur,
    contrast, brightness, jpeg_compression, pixelate, elastic_transform))
