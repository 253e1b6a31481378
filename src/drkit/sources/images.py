"""Image-mode normalisation: every source hands out "L" or "RGB" pixels, decoded one way.

Why its own module: the "one image mode per source" rule (alpha dropped, 16-bit scaled by >> 8,
palettes via RGBA) is what makes a store's pixels reproducible whichever file format or loader
delivered them; file sources, array sources and the inspect/eval paths all convert through here.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from ..errors import SourceError

MODES: tuple[str, ...] = ("L", "RGB")
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
)
#: PIL modes of 16/32-bit integer images, scaled to 8 bit by ``>> 8``
_HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I")


def to_native(img: Image.Image) -> Image.Image:
    """Reduce any PIL mode to "L" or "RGB" with explicit, documented rules.

    * alpha (RGBA, LA, PA, P with transparency) is *dropped*, as torchvision/timm loaders do with
      ``convert("RGB")`` — the pixels the teachers were trained on;
    * 16/32-bit integer images are scaled to 8 bit by ``>> 8`` (values clipped to 0..65535 first),
      because PIL's own ``convert("L")`` clips everything above 255 to white;
    * float ("F") images are treated as 0..255 (rounded, clipped), as PIL does;
    * "1" becomes 0/255; CMYK, YCbCr, HSV use PIL's conversion to RGB.
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in _HIGH_BIT_DEPTH:
        arr = np.asarray(img).astype(np.int64)
        arr = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(arr)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    if mode in ("1", "LA", "La"):
        return img.convert("L")
    if mode in ("P", "PA"):
        # via RGBA so palette transparency never warns; the alpha is then dropped like RGBA's
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Bring an image of any PIL mode to ``mode`` ("L" or "RGB")."""
    native = to_native(img)
    return native if native.mode == mode else native.convert(mode)


def open_image(path: str, mode: str, data: bytes | None = None) -> Image.Image:
    """Decode a file (or its already read bytes ``data``) fully into memory in ``mode``; any
    failure names the file."""
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            img.load()
            out = to_mode(img, mode)
            if out is img:  # closing the file would release the pixels it shares
                out = img.copy()
        return out
    except SourceError:
        raise
    except Exception as exc:  # PIL raises many types for bad files; all mean "cannot decode"
        raise SourceError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from exc


def read_file(path: str) -> bytes:
    """A file's bytes; a failure names the file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SourceError(f"cannot read image {path}: {exc.strerror or exc}") from exc


def read_image_size(path: str) -> tuple[int, int]:
    """(H, W) from the header only: PIL opens lazily and decodes no pixels."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as exc:
        raise SourceError(f"cannot read image header {path}: {type(exc).__name__}: {exc}") from exc
    return int(height), int(width)


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """PIL image in L or RGB -> uint8 CHW tensor (a fresh, writable copy)."""
    arr = np.array(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    return torch.from_numpy(arr)


def uint8_to_pil(t: torch.Tensor) -> Image.Image:
    """uint8 CHW tensor with 1 or 3 channels -> PIL image in L or RGB."""
    arr = t.numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(np.ascontiguousarray(arr[0]))
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))
