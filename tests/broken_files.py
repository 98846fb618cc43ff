"""Damaged copies of image files, as users meet them: each function changes the file at `path`
in place (imported by the test modules; pytest puts tests/ on the path)."""

import functools
import os
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def break_crc(path) -> None:
    """Bit rot in a CRC: the first IDAT chunk's checksum no longer matches its (intact) data.
    Pillow does not check IDAT checksums; libpng, TensorFlow's decoder, does."""
    data = bytearray(open(path, "rb").read())
    start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    data[start + 8 + length] ^= 0xFF
    open(path, "wb").write(bytes(data))


def save_as_tiff(path) -> None:
    """The same picture written as TIFF under the .png name (Pillow opens it; TensorFlow's
    decoders know no TIFF)."""
    with Image.open(path) as image:
        image.load()
    image.save(path, format="TIFF")


def append_bytes(path) -> None:
    """Bytes after the IEND chunk (an interrupted copy onto an older, longer file)."""
    with open(path, "ab") as out:
        out.write(b"left over")


def make_fifo(path) -> None:
    """A named pipe in place of the file: opening it for reading waits for a writer."""
    os.remove(path)
    os.mkfifo(path)


@functools.cache
def huge_png_bytes(side: int = 16000) -> bytes:
    """A valid black 8-bit grayscale PNG of side x side pixels (1.1 MB for 16000: 256 Mpixels
    decode to 256 MB, 768 MB as RGB)."""
    row = b"\x00" * (side + 1)  # filter byte + pixels
    packer = zlib.compressobj(1)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def make_huge(path) -> None:
    """A 16000x16000 PNG in place of the file (Pillow calls it a decompression bomb)."""
    open(path, "wb").write(huge_png_bytes())
