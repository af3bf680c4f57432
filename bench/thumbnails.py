"""Thumbnail cost per image (chat/files/images.py): CPU time and peak memory, by kind of upload.

Each case is generated once (a smooth gradient with noise, so neither JPEG nor PNG compresses
it to nothing), then image_info_and_thumbnail() runs on it in a fresh process: CPU time of
the thread (time.thread_time_ns, median of the runs) and how much the process's peak RSS grew
(VmHWM), which is the memory a worker thread needs per image in flight. The figures
decide where thumbnails are made: a few ms fits a small thread pool beside the request; a
large part of a second per image, or hundreds of MB, belongs to a bounded worker.

Run:  .venv/bin/python bench/thumbnails.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("JPEG 12 MP photo (4000x3000)", "JPEG", (4000, 3000)),
    ("PNG 12 MP screenshot-sized (4000x3000)", "PNG", (4000, 3000)),
    ("PNG 48 MP, just under the cap (8000x6000)", "PNG", (8000, 6000)),
    ("JPEG 2 MP phone screenshot (1170x2532)", "JPEG", (1170, 2532)),
    ("WebP 2 MP (1920x1080)", "WEBP", (1920, 1080)),
    ("GIF 0.3 MP, 20 frames (640x480)", "GIF", (640, 480)),
]

_MEASURE = r"""
import json, re, statistics, sys, time
from pathlib import Path
from chat.files.images import image_info_and_thumbnail
# VmHWM, not ru_maxrss: Linux starts a child's ru_maxrss at its parent's RSS.
def peak_kib():
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
path, runs = sys.argv[1], int(sys.argv[2])
before = peak_kib()
times = []
for _ in range(runs):
    start = time.thread_time_ns()
    info = image_info_and_thumbnail(path)
    times.append((time.thread_time_ns() - start) / 1e6)
grew = peak_kib() - before
print(json.dumps({"ms": statistics.median(times), "grew_mib": grew / 1024, "thumb_kib": len(info.thumbnail or b"") / 1024}))
"""


def make(fmt: str, size: tuple[int, int], path: Path) -> None:
    w, h = size
    gradient = Image.linear_gradient("L").resize(size)
    # Noise at half size, scaled up: as hard to compress for this purpose, four times cheaper to make.
    noise = Image.effect_noise((w // 2, h // 2), 40).resize(size)
    im = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.ROTATE_180)))
    if fmt == "GIF":
        frames = [im.rotate(i * 18).convert("P") for i in range(20)]
        frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=50)
    else:
        im.save(path, fmt, quality=90, compress_level=1)  # compress_level: PNG only, fast to make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(f"{'case':45} {'file MB':>8} {'CPU ms':>8} {'peak RSS +MiB':>14} {'thumb KiB':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, fmt, size in CASES:
            path = Path(tmp) / f"case.{fmt.lower()}"
            make(fmt, size, path)
            out = subprocess.run(
                [sys.executable, "-c", _MEASURE, str(path), str(args.runs)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )
            r = json.loads(out.stdout)
            mb = path.stat().st_size / 1e6
            print(f"{label:45} {mb:8.1f} {r['ms']:8.1f} {r['grew_mib']:14.0f} {r['thumb_kib']:10.1f}")


if __name__ == "__main__":
    main()
