# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Turning untrusted upload bytes into a bounded uint8 RGB array, or a clear HTTP error.

Order of checks (each before the next costs memory or time):

1. the byte count (Flask's ``MAX_CONTENT_LENGTH`` already refused larger bodies with 413);
2. the *content* is sniffed by Pillow, restricted to plain raster formats (no EPS/PDF plugins,
   which would start external programs); the file name and the declared type are ignored → 415;
3. the pixel count is read from the header, before any pixel is decoded → 413
   (decompression bombs: a 50 kB PNG can claim 100 000 × 100 000 pixels);
4. the pixels are decoded; a truncated or corrupt file fails here → 400;
5. EXIF orientation is applied (phone photos come upright) and the image is shrunk to at most
   ``max_work_pixels`` (JPEG decodes directly at a reduced scale via ``draft``), which bounds the
   memory and the time of the model call whatever the upload.

Nothing is written to disk here; the bytes live in memory only.
"""
from __future__ import annotations

import dataclasses
import io
import math
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Raster formats a browser or a camera produces. Pillow sniffs the content among these only.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


class UploadError(ValueError):
    """An upload (or request) that cannot be served: HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """An upload decoded to what the model will see."""

    rgb: np.ndarray  # (H, W, 3) uint8, after orientation and shrinking
    original_size: tuple  # (height, width) as stored in the file, before orientation
    format: str  # the sniffed format, e.g. "JPEG"
    scale: float  # working width / width after orientation (1.0 when not shrunk)


def working_size(height: int, width: int, max_pixels: int) -> tuple:
    """(height, width) scaled down, aspect kept, so that height × width ≤ ``max_pixels``."""
    if height * width <= max_pixels:
        return height, width
    factor = math.sqrt(max_pixels / float(height * width))
    return max(1, int(height * factor)), max(1, int(width * factor))


def _open(data: bytes) -> Image.Image:
    """Pillow image of ``data`` (header only, nothing decoded yet) or UploadError 415/413."""
    if not data:
        raise UploadError(400, "the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise UploadError(415, "the upload is not an image in a supported format "
                               f"({', '.join(ACCEPTED_FORMATS)}); its content was checked, "
                               "not its name") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(413, "the image declares too many pixels") from None
    except (OSError, SyntaxError, ValueError) as err:  # a header Pillow cannot parse
        raise UploadError(400, f"the image header is corrupt: {err}") from None


def as_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB of any Pillow mode; 16-bit and float greyscale are scaled, not clipped at 255."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1e-12)
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def decode_upload(data: bytes, *, max_pixels: int, max_work_pixels: int) -> DecodedImage:
    """Decode upload bytes to a (H, W, 3) uint8 RGB array of at most ``max_work_pixels``.

    Raises UploadError: 400 empty/corrupt/truncated, 413 more than ``max_pixels`` pixels,
    415 not an image in ``ACCEPTED_FORMATS``.
    """
    image = _open(data)
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise UploadError(413, f"the image is {width}×{height} = {width * height:,} pixels; "
                                   f"the limit is {max_pixels:,} pixels")
        if image.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale when that still suffices
            image.draft("RGB", working_size(height, width, max_work_pixels)[::-1])
        if ImageFile.LOAD_TRUNCATED_IMAGES:  # never accept half an image, whatever the global
            raise UploadError(500, "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to "
                                   "decode uploads that could be truncated")
        try:
            image.load()
            rgb_image = as_rgb(ImageOps.exif_transpose(image))
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise UploadError(400, f"the {image.format} image is truncated or corrupt: {err}") \
                from None
    swapped = rgb_image.size != image.size  # EXIF rotation by 90° swaps the axes
    oriented_width = height if swapped else width  # at full resolution, before any draft
    work_h, work_w = working_size(rgb_image.height, rgb_image.width, max_work_pixels)
    if (work_h, work_w) != (rgb_image.height, rgb_image.width):
        rgb_image = rgb_image.resize((work_w, work_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return DecodedImage(np.asarray(rgb_image, dtype=np.uint8), (height, width), image.format,
                        rgb_image.width / float(oriented_width))
