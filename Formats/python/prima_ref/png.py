"""A plain PNG reader for the reference package (no Pillow needed): the chunks a decoder needs and the scanline
unfiltering of non-interlaced images, at any bit depth (filters work on bytes, `bpp` bytes per pixel)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Tuple

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (palette images are not read here)


def read_chunks(path: "Path | str") -> Tuple[Tuple[int, int, int, int, int, int, int], bytes]:
    """(IHDR fields (width, height, depth, colour type, compression, filter, interlace), the IDAT bytes joined)."""
    data = Path(path).read_bytes()
    if data[:8] != SIGNATURE:
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    if ihdr is None:
        raise ValueError(f"{path}: no IHDR chunk")
    return ihdr, idat


def unfiltered(path: "Path | str", ihdr, idat: bytes) -> bytes:
    """The image's sample bytes, height × stride, with every scanline's filter (0–4) undone."""
    width, height, depth, colour, _, _, interlace = ihdr
    channels = CHANNELS.get(colour)
    if interlace or channels is None or depth not in (8, 16):
        raise ValueError(f"{path}: only non-interlaced 8- or 16-bit grey/RGB(A) PNGs are read here")
    bpp = channels * depth // 8
    stride = bpp * width
    raw = zlib.decompress(idat)
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            elif f != 0:
                raise ValueError(f"{path}: bad filter type {f}")
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return bytes(out)
