"""chat/files/: an upload is what its bytes say, images are bomb-safe and lose their metadata,
names are data and never headers or paths, and the cap stops a stream while it is read (PROTOCOL.md 8)."""

from __future__ import annotations

import io
import itertools
import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from urllib.parse import unquote

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.http import HttpResponse
from PIL import ExifTags, Image, ImageCms, ImageOps

from chat import protocol
from chat.files.content import (
    MAX_NAME_BYTES,
    MAX_NAME_CHARS,
    OCTET_STREAM,
    RASTER_TYPES,
    clean_name,
    content_disposition,
    sniff_content_type,
)
from chat.files.images import MAX_IMAGE_PIXELS, NOT_AN_IMAGE, image_info_and_thumbnail
from chat.files.inspection import inspect_upload
from chat.files.storage import ORIGINALS, THUMBNAILS, FileTooLarge, copy_capped, storage_name

ROOT = Path(__file__).resolve().parent.parent


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(width: int, height: int, idat: bytes) -> bytes:
    """A PNG, 8-bit grey, of the given canvas and compressed pixel data, built by hand."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def served(data: bytes, name: str) -> tuple[str, str]:
    """The Content-Type and Content-Disposition a file of these bytes and this name is served with."""
    content_type = inspect_upload(io.BytesIO(data)).content_type
    return content_type, content_disposition(name, content_type)


# Type spoofing: the bytes decide, and nothing but a decodable raster image is inline.

HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.domain)</script><rect width='10' height='10'/></svg>"
)
# Starts with a GIF signature and is valid JavaScript: `GIF89a=1;alert(…)`.
GIF_JS = b"GIF89a=1;alert(document.domain);//" + b"\x00" * 64


@pytest.mark.parametrize(
    ("data", "name"),
    [(HTML, "cat.png"), (SVG, "logo.svg"), (SVG, "logo.png"), (GIF_JS, "anim.gif"), (b"", "empty.jpg")],
    ids=["html-named-png", "svg-with-script", "svg-named-png", "gif-js-polyglot", "empty"],
)
def test_spoofed_files_are_served_as_downloads_of_an_inert_type(data, name):
    content_type, disposition = served(data, name)
    assert content_type == OCTET_STREAM
    assert disposition.startswith("attachment;")


def test_a_polyglot_gif_header_is_sniffed_as_gif_but_not_kept_as_an_image():
    """The signature alone says GIF; only decoding decides that the file is a picture."""
    assert sniff_content_type(GIF_JS) == "image/gif"
    inspection = inspect_upload(io.BytesIO(GIF_JS))
    assert inspection.content_type == OCTET_STREAM
    assert inspection.thumbnail is None and inspection.width is None


def test_a_real_gif_carrying_script_in_a_comment_is_an_image_whose_thumbnail_drops_it():
    data = encode(Image.new("RGB", (40, 30), "green"), "GIF", comment=b"<script>alert(1)</script>")
    assert b"<script>" in data
    content_type, disposition = served(data, "x.html")
    assert content_type == "image/gif"
    assert disposition.startswith("inline;")
    assert b"script" not in inspect_upload(io.BytesIO(data)).thumbnail


def test_a_real_png_is_an_image_whatever_its_name():
    data = encode(Image.new("RGB", (20, 10), "red"), "PNG")
    content_type, disposition = served(data, "report.html")
    assert content_type == "image/png"
    assert disposition.startswith('inline; filename="report.html";')


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        (b"PK\x03\x04" + b"\x00" * 40, "application/zip"),
        (b"2026-12-03 07:00:01 INFO started\n", OCTET_STREAM),
        (b"<svg onload=alert(1)>", OCTET_STREAM),
        (b"FWS\x0a" + b"\x00" * 20, OCTET_STREAM),  # Flash: filetype knows it, a plugin would run it
        (b"\x00\x01\x02", OCTET_STREAM),
    ],
)
def test_sniffed_type_comes_from_the_signature(head, expected):
    assert sniff_content_type(head) == expected


def test_an_animated_png_is_a_png():
    frames = [Image.new("RGB", (10, 10), colour) for colour in ("red", "blue")]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    assert b"acTL" in data  # really an APNG
    assert sniff_content_type(data) == "image/png"


@pytest.mark.parametrize(
    "content_type",
    ["image/svg+xml", "text/html", "application/pdf", "image/bmp", "image/tiff", OCTET_STREAM, "text/plain"],
)
def test_everything_but_raster_images_is_an_attachment(content_type):
    assert content_disposition("f", content_type).startswith("attachment;")


@pytest.mark.parametrize("content_type", sorted(RASTER_TYPES))
def test_raster_images_are_inline(content_type):
    assert content_disposition("f", content_type).startswith("inline;")


# Decompression bombs.


def test_an_image_claiming_a_huge_canvas_yields_no_thumbnail():
    """100,000 x 100,000 pixels claimed by a file of a few dozen bytes: refused from the header."""
    data = grey_png(100_000, 100_000, zlib.compress(b"\x00" * 100))
    assert len(data) < 200
    assert image_info_and_thumbnail(io.BytesIO(data)) == NOT_AN_IMAGE
    inspection = inspect_upload(io.BytesIO(data))
    assert inspection.content_type == OCTET_STREAM and inspection.thumbnail is None


@pytest.fixture(scope="module")
def bomb_png(tmp_path_factory) -> Path:
    """10,000 x 10,000 grey pixels (100 MB decoded) in a file of about 100 KB."""
    width = height = 10_000
    assert MAX_IMAGE_PIXELS < width * height <= 2 * MAX_IMAGE_PIXELS  # past ours, under Pillow's error
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + one row
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(grey_png(width, height, idat))
    assert path.stat().st_size < 1_000_000
    return path


_MEASURE = r"""
import json, re, sys
from pathlib import Path
from chat.files.images import image_info_and_thumbnail
# VmHWM, the peak RSS of this process's memory map: unlike ru_maxrss it does not start at
# the parent's RSS (Linux carries that across fork and exec).
def peak_kib():
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
before = peak_kib()
info = image_info_and_thumbnail(sys.argv[1])
print(json.dumps({"width": info.width, "thumbnail": info.thumbnail is not None, "grew_kib": peak_kib() - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")
def test_a_highly_compressed_bomb_yields_no_thumbnail_and_is_never_decoded(bomb_png):
    """Measured in a fresh process: its peak memory grows by far less than the 100 MB decoded."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb_png)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    assert result["width"] is None and not result["thumbnail"]
    assert result["grew_kib"] < 20 * 1024


def test_a_truncated_image_is_a_plain_file():
    data = encode(Image.effect_noise((300, 300), 64).convert("RGB"), "PNG")
    broken = data[: len(data) // 2]
    assert image_info_and_thumbnail(io.BytesIO(broken)) == NOT_AN_IMAGE
    assert inspect_upload(io.BytesIO(broken)).content_type == OCTET_STREAM


# Thumbnails: small, upright, first frame, no metadata.


def gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCam"
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (48.0, 51.0, 24.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (2.0, 21.0, 3.0),
    }
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(Image.new("RGB", (1600, 1200), "orange"), "JPEG", exif=exif, icc_profile=icc)


def test_gps_exif_and_icc_of_the_upload_are_absent_from_the_thumbnail():
    data = gps_jpeg()
    original = Image.open(io.BytesIO(data))
    assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert "icc_profile" in original.info

    info = image_info_and_thumbnail(io.BytesIO(data))
    assert (info.width, info.height, info.thumbnail_type) == (1600, 1200, "image/webp")
    thumb = Image.open(io.BytesIO(info.thumbnail))
    assert thumb.format == "WEBP"
    assert dict(thumb.getexif()) == {}
    assert not {"exif", "icc_profile", "xmp"} & set(thumb.info)
    assert b"Exif" not in info.thumbnail and b"PhoneCam" not in info.thumbnail


@pytest.mark.parametrize(
    ("size", "thumb_size"),
    [((1200, 900), (400, 300)), ((300, 2000), (60, 400)), ((2000, 2000), (400, 400)), ((100, 50), (100, 50))],
)
def test_thumbnail_fits_400_by_400_and_is_never_enlarged(size, thumb_size):
    info = image_info_and_thumbnail(io.BytesIO(encode(Image.new("RGB", size, "teal"), "PNG")))
    assert (info.width, info.height) == size
    assert Image.open(io.BytesIO(info.thumbnail)).size == thumb_size


def quadrants() -> Image.Image:
    """600 x 300, four colours: top-left red, top-right green, bottom-left blue, bottom-right white."""
    im = Image.new("RGB", (600, 300))
    for box, colour in [
        ((0, 0, 300, 150), (255, 0, 0)),
        ((300, 0, 600, 150), (0, 255, 0)),
        ((0, 150, 300, 300), (0, 0, 255)),
        ((300, 150, 600, 300), (255, 255, 255)),
    ]:
        im.paste(colour, box)
    return im


def corner_colours(im: Image.Image) -> list[tuple[int, int, int]]:
    """The colour at each corner, a few pixels in, rounded to 0 or 255 per channel."""
    w, h = im.size
    rgb = im.convert("RGB")
    points = [(w // 8, h // 8), (w - w // 8, h // 8), (w // 8, h - h // 8), (w - w // 8, h - h // 8)]
    return [tuple(255 if c > 127 else 0 for c in rgb.getpixel(p)) for p in points]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_thumbnail_is_turned_upright_by_the_exif_orientation(orientation):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    data = encode(quadrants(), "JPEG", exif=exif, quality=95)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))

    info = image_info_and_thumbnail(io.BytesIO(data))
    thumb = Image.open(io.BytesIO(info.thumbnail))
    assert (info.width, info.height) == upright.size
    assert thumb.size == ((400, 200) if orientation < 5 else (200, 400))
    assert corner_colours(thumb) == corner_colours(upright)
    assert dict(thumb.getexif()) == {}  # the orientation tag went with the rest


def test_an_animated_gif_thumbnail_shows_its_first_frame():
    frames = [Image.new("RGB", (80, 60), colour) for colour in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    info = image_info_and_thumbnail(io.BytesIO(data))
    assert (info.width, info.height) == (80, 60)
    assert corner_colours(Image.open(io.BytesIO(info.thumbnail)))[0] == (255, 0, 0)


def test_transparency_survives_in_the_thumbnail():
    im = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    info = image_info_and_thumbnail(io.BytesIO(encode(im, "PNG")))
    assert Image.open(io.BytesIO(info.thumbnail)).convert("RGBA").getpixel((25, 25))[3] == 0


def test_only_the_sniffed_format_is_tried():
    """A PNG presented as a JPEG is not decoded by the PNG plugin behind the caller's back."""
    data = encode(Image.new("RGB", (10, 10)), "PNG")
    assert image_info_and_thumbnail(io.BytesIO(data), "image/jpeg") == NOT_AN_IMAGE
    assert image_info_and_thumbnail(io.BytesIO(data), "image/bmp") == NOT_AN_IMAGE
    assert image_info_and_thumbnail(io.BytesIO(data), "image/png").width == 10


def test_inspection_leaves_the_file_at_its_start():
    data = gps_jpeg()
    file = io.BytesIO(data)
    file.seek(100)
    assert inspect_upload(file).content_type == "image/jpeg"
    assert file.tell() == 0


# Names: data, never a header, never a path.


@pytest.mark.parametrize(
    "name",
    [
        "a.pdf\r\nSet-Cookie: session=evil",
        "a.pdf\nX-Accel-Redirect: /internal/secret",
        'a"; filename="evil.html',
        "a\x00b.pdf",
        "\u202egpj.exe",
        "日本語の資料.pdf",
        "ça va?.txt",
        "100%25.txt",
    ],
)
def test_a_name_cannot_add_or_end_a_header(name):
    value = content_disposition(name, "application/pdf")
    assert value.isascii() and value.isprintable()
    response = HttpResponse()
    response["Content-Disposition"] = value  # Django refuses CR, LF and NUL in a header
    assert re.fullmatch(r'attachment; filename="[^"\\]*"; filename\*=UTF-8\'\'[A-Za-z0-9%._~-]*', value)
    assert unquote(value.split("UTF-8''", 1)[1]) == clean_name(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("/abs/path/plan.pdf", "plan.pdf"),
        ("..", "file"),
        ("", "file"),
        ("  \x00\x07 ", "file"),
        ("a\r\nb.txt", "ab.txt"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("cafe\u0301.txt", "café.txt"),
        (None, "file"),
        ("\ud800x.txt", "x.txt"),
    ],
)
def test_names_are_cleaned(name, expected):
    assert clean_name(name) == expected


def test_a_long_name_is_capped_and_keeps_its_extension():
    for stem in ("x" * 1000, "é" * 1000, "😀" * 1000):
        cleaned = clean_name(stem + ".pdf")
        assert cleaned.endswith(".pdf")
        assert len(cleaned) <= MAX_NAME_CHARS and len(cleaned.encode("utf-8")) <= MAX_NAME_BYTES
        assert cleaned.startswith(stem[:10])


def test_storage_names_are_random_and_never_from_the_upload(tmp_path):
    names = {storage_name() for _ in range(1000)}
    assert len(names) == 1000
    assert all(re.fullmatch(r"attachments/([0-9a-f]{2})/\1[0-9a-f]{30}", n) for n in names)
    assert re.fullmatch(r"thumbnails/[0-9a-f]{2}/[0-9a-f]{32}", storage_name(THUMBNAILS))
    storage = FileSystemStorage(location=tmp_path)
    name = storage_name(ORIGINALS)
    assert storage.save(name, ContentFile(b"data")) == name
    assert (tmp_path / name).read_bytes() == b"data"


# The cap, while reading.


def test_the_capped_copy_stops_reading_as_soon_as_the_cap_is_passed():
    """An endless source (a 2 GB upload, as far as the copy can tell) is refused after three chunks."""
    read = 0

    def endless():
        nonlocal read
        for chunk in itertools.repeat(b"x" * 4):
            read += 1
            yield chunk

    dst = io.BytesIO()
    with pytest.raises(FileTooLarge) as refused:
        copy_capped(endless(), dst, limit=10)
    assert refused.value.code == protocol.TOO_LARGE
    assert read == 3
    assert dst.getvalue() == b"x" * 8  # nothing past the cap was written


def test_the_capped_copy_accepts_exactly_the_cap():
    dst = io.BytesIO()
    assert copy_capped([b"abc", b"", b"defg"], dst, limit=7) == 7
    assert dst.getvalue() == b"abcdefg"

