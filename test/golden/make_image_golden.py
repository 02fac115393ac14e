#!/usr/bin/env python3
"""Reference data for image.c (test/test_image.c), written to test/data/image/.

Run from the repository root (see test/golden/requirements.txt for the pinned environment):

    venv/bin/python test/golden/make_image_golden.py

Deterministic: synthetic pictures (gradients, shapes, a little hashed noise) and fixed encoder
settings, so two runs write identical files. What it writes:

  PNG decoding (each *.png next to *.ref.png = Pillow's Image.open(f).convert("RGB") saved as 8-bit RGB):
    rgb.png 67x45 RGB        rgba.png 40x30 RGBA        grey.png 33x21 L         la.png 20x14 LA
    pal.png 31x17 P + tRNS   rgb16.png 25x19 16-bit RGB  grey4.png 19x11 4-bit grey
    interlaced.png 29x23 Adam7 RGB
    grey16.png 17x9 16-bit grey: its .ref.png is the HIGH BYTE of each sample, not Pillow's result
      (Pillow opens it as mode "I;16" and convert("RGB") clips values > 255 to 255; vdp keeps the
      high byte like libpng's strip_16 and like Pillow does for 16-bit RGB). The script prints how
      many bytes differ from Pillow's convert("RGB") so the difference is on record.
  JPEG decoding (reference = Pillow's decode, convert("RGB")):
    j420.jpg (4:2:0), j422.jpg (4:2:2), j444.jpg, jprog.jpg (progressive), jgrey.jpg (L),
    jcmyk.jpg (CMYK, Adobe inverted), jexif2..8.jpg: EXIF orientation 2..8 whose reference is
    ImageOps.exif_transpose(...).convert("RGB"), like diffusers.utils.load_image.
  Lanczos (Image.resize((w, h), Image.LANCZOS)):
    big.png 300x170 RGB source; lz_<src>_<w>x<h>.png full references for a few sizes;
    lanczos_hashes.txt: "<src file> <w> <h> <fnv1a64 of the RGB bytes>" for many more sizes.
    Pillow 13 runs the vertical pass first when in_h - h > 0 and in_h - h > 2 * (in_w - w) (image.c); the
    sizes include both orders and the in_h - h == 2 * (in_w - w) boundary (57x25, 47x5, 250x70).
  Antialias (diffusers' _resize_with_antialiasing on Pillow-decoded pixels / 255 * 2 - 1, float32):
    aa_<src>_<h>x<w>.npy float32 [3, h, w]; sources: big.png cropped inputs written as aa_in_*.png.
    256x144 -> 56x56 has exactly the sigmas and kernel sizes (7 along W, 3 along H) of the real
    1024x576 -> 224x224 call while keeping the files small.
  npy parsing: f16.npy ('<f2' [2,3,5]) with f16_as_f32.npy (the same values as float32).
"""
import hashlib
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

OUT = Path("test/data/image")


def synth(w, h, seed):
    """Deterministic picture: gradients, a disc, a square, stripes and hashed noise (uint8 [h,w,3])."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 128 + 100 * np.sin(x * 0.37 + seed) * np.cos(y * 0.23 - seed)
    img = np.stack([r, g, b], -1)
    cx, cy, rad = w * 0.6, h * 0.45, min(w, h) * 0.3
    disc = (x - cx) ** 2 + (y - cy) ** 2 < rad**2
    img[disc] = [250, 30 + seed * 20, 40]
    sq = (x > w * 0.1) & (x < w * 0.3) & (y > h * 0.55) & (y < h * 0.9)
    img[sq] = [10, 10, 200]
    img[(x.astype(int) // 3) % 7 == 0] *= 0.5
    # hashed noise (no RNG state involved)
    n = ((x.astype(np.int64) * 73856093) ^ (y.astype(np.int64) * 19349663) ^ (seed * 83492791)) % 41 - 20
    img += n[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_chunk(typ, data):
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data) & 0xFFFFFFFF)


def write_png(path, rows_fn, w, h, color_type, depth, interlace=False):
    """Minimal PNG writer (filter 0) for the variants Pillow cannot write: 16-bit RGB, 4-bit grey,
    Adam7. rows_fn(xs, ys) returns the raw packed scanline bytes for the pixel columns xs of row ys."""
    raw = b""
    if not interlace:
        passes = [(0, 0, 1, 1)]
    else:  # Adam7 (x0, y0, dx, dy)
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    for x0, y0, dx, dy in passes:
        xs = list(range(x0, w, dx))
        if not xs:
            continue
        for yy in range(y0, h, dy):
            raw += b"\x00" + rows_fn(xs, yy)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9))
    data += png_chunk(b"IEND", b"")
    path.write_bytes(data)


def save_ref(img, path):
    """Saves an RGB PIL image losslessly (the C test loads it with its own PNG reader)."""
    assert img.mode == "RGB"
    img.save(path, optimize=False, compress_level=9)


def fnv1a64(b):
    """FNV-1a 64-bit hash of a byte string (test_image.c computes the same on its output)."""
    h = 0xCBF29CE484222325
    for byte in b:  # sequential by definition; fast enough for these sizes
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"make_image_golden: Pillow {Image.__version__}, torch {torch.__version__}, numpy {np.__version__}")

    # ---------------- PNG variants
    rgb = synth(67, 45, 1)
    Image.fromarray(rgb).save(OUT / "rgb.png")
    rgba = np.concatenate([synth(40, 30, 2), (np.arange(40 * 30).reshape(30, 40, 1) * 7 % 256).astype(np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(OUT / "rgba.png")
    grey = synth(33, 21, 3)[..., 1]
    Image.fromarray(grey, "L").save(OUT / "grey.png")
    la = np.stack([synth(20, 14, 4)[..., 0], synth(20, 14, 5)[..., 2]], -1)
    Image.fromarray(la, "LA").save(OUT / "la.png")
    pal = Image.fromarray(synth(31, 17, 6)).quantize(colors=13, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal.save(OUT / "pal.png", transparency=2)

    rgb16 = (synth(25, 19, 7).astype(np.uint16) * 257 + (np.arange(25 * 19 * 3).reshape(19, 25, 3) % 251).astype(np.uint16))
    write_png(OUT / "rgb16.png", lambda xs, y: rgb16[y, xs].astype(">u2").tobytes(), 25, 19, 2, 16)
    grey16 = (np.arange(17 * 9).reshape(9, 17) * 431 % 65536).astype(np.uint16)
    write_png(OUT / "grey16.png", lambda xs, y: grey16[y, xs].astype(">u2").tobytes(), 17, 9, 0, 16)

    grey4 = (np.arange(19 * 11).reshape(11, 19) * 5 % 16).astype(np.uint8)

    def pack4(xs, y):
        v = list(grey4[y, xs]) + ([0] if len(xs) % 2 else [])
        return bytes((v[i] << 4) | v[i + 1] for i in range(0, len(v), 2))

    write_png(OUT / "grey4.png", pack4, 19, 11, 0, 4)
    inter = synth(29, 23, 8)
    write_png(OUT / "interlaced.png", lambda xs, y: inter[y, xs].tobytes(), 29, 23, 2, 8, interlace=True)

    for name in ["rgb", "rgba", "grey", "la", "pal", "rgb16", "grey4", "interlaced"]:
        save_ref(Image.open(OUT / f"{name}.png").convert("RGB"), OUT / f"{name}.ref.png")
    # 16-bit grey: reference = high byte (see the docstring); record Pillow's (clipping) behaviour.
    hi = (grey16 >> 8).astype(np.uint8)
    save_ref(Image.fromarray(np.stack([hi] * 3, -1)), OUT / "grey16.ref.png")
    pil16 = np.asarray(Image.open(OUT / "grey16.png").convert("RGB"))
    print(f"  grey16.png: Pillow mode {Image.open(OUT / 'grey16.png').mode}; convert('RGB') differs from the "
          f"high byte in {(pil16 != np.stack([hi] * 3, -1)).sum()} of {pil16.size} bytes (Pillow clips)")

    # ---------------- JPEG variants
    photo = Image.fromarray(synth(64, 48, 9))
    photo.save(OUT / "j420.jpg", quality=90, subsampling=2)
    photo.save(OUT / "j422.jpg", quality=90, subsampling=1)
    photo.save(OUT / "j444.jpg", quality=90, subsampling=0)
    photo.save(OUT / "jprog.jpg", quality=85, progressive=True)
    photo.convert("L").save(OUT / "jgrey.jpg", quality=90)
    cmyk = Image.fromarray(np.concatenate([synth(30, 20, 10), synth(30, 20, 11)[..., :1]], -1), "CMYK")
    cmyk.save(OUT / "jcmyk.jpg", quality=92)
    for name in ["j420", "j422", "j444", "jprog", "jgrey", "jcmyk"]:
        im = Image.open(OUT / f"{name}.jpg")
        save_ref(im.convert("RGB"), OUT / f"{name}.ref.png")
    small = Image.fromarray(synth(12, 8, 12))
    for o in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        small.save(OUT / f"jexif{o}.jpg", quality=95, exif=exif.tobytes())
        save_ref(ImageOps.exif_transpose(Image.open(OUT / f"jexif{o}.jpg")).convert("RGB"), OUT / f"jexif{o}.ref.png")

    # ---------------- Lanczos
    big = synth(300, 170, 13)
    Image.fromarray(big).save(OUT / "big.png", compress_level=9)
    srcs = {"rgb.png": Image.open(OUT / "rgb.png").convert("RGB"), "big.png": Image.open(OUT / "big.png").convert("RGB")}
    full = [("rgb.png", 32, 24), ("rgb.png", 150, 100), ("rgb.png", 67, 90), ("rgb.png", 20, 45), ("rgb.png", 90, 20),
            ("big.png", 128, 72)]
    for src, w, h in full:
        save_ref(srcs[src].resize((w, h), Image.LANCZOS), OUT / f"lz_{src[:-4]}_{w}x{h}.png")
    sizes = [(67, 45), (1, 1), (1, 45), (67, 1), (2, 2), (3, 200), (200, 3), (66, 44), (68, 46), (134, 90),
             (201, 135), (13, 97), (97, 13), (33, 22), (22, 33), (64, 64), (17, 45), (67, 16), (5, 7), (671, 451),
             (57, 25), (57, 24), (47, 5), (47, 4)]
    big_sizes = [(1024, 576), (512, 288), (300, 170), (299, 169), (301, 171), (150, 85), (100, 100), (224, 224),
                 (37, 21), (600, 340), (75, 170), (300, 43), (1000, 9), (8, 1000), (123, 456), (250, 70), (250, 69),
                 (170, 300), (576, 102)]
    lines = []
    for src, lst in (("rgb.png", sizes), ("big.png", big_sizes)):
        for w, h in lst:
            out = np.asarray(srcs[src].resize((w, h), Image.LANCZOS))
            lines.append(f"{src} {w} {h} {fnv1a64(np.ascontiguousarray(out).tobytes()):016x}")
    (OUT / "lanczos_hashes.txt").write_text("\n".join(lines) + "\n")

    # ---------------- _resize_with_antialiasing
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    torch.set_num_threads(1)
    cases = [((0, 0, 256, 144), (56, 56)), ((100, 50, 148, 90), (32, 32)), ((0, 0, 30, 20), (64, 50)),
             ((10, 10, 290, 160), (35, 70))]
    for box, (ho, wo) in cases:
        crop = Image.fromarray(big).crop(box)
        iw, ih = crop.size
        crop.save(OUT / f"aa_in_{iw}x{ih}.png")
        a = np.asarray(Image.open(OUT / f"aa_in_{iw}x{ih}.png").convert("RGB")).astype(np.float32) / 255.0
        x = torch.from_numpy(a).permute(2, 0, 1)[None] * 2.0 - 1.0  # as pil_to_numpy/numpy_to_pt, then 2x-1
        y = _resize_with_antialiasing(x, (ho, wo))
        np.save(OUT / f"aa_{iw}x{ih}_{ho}x{wo}.npy", y[0].numpy().astype(np.float32))

    # ---------------- npy float16
    v = (np.arange(30, dtype=np.float32).reshape(2, 3, 5) - 11.3) * 0.37
    np.save(OUT / "f16.npy", v.astype("<f2"))
    np.save(OUT / "f16_as_f32.npy", v.astype("<f2").astype(np.float32))

    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"  wrote {len(list(OUT.iterdir()))} files, {total} bytes, to {OUT}")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(OUT.iterdir()))).hexdigest()
    print(f"  sha256 of all files: {digest}")


if __name__ == "__main__":
    sys.exit(main())
