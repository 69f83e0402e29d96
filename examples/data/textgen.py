"""Deterministic rendering of text lines, text pages and natural-ish scenes for quantsim's real-data sets.

Everything here depends only on numpy, PIL and the DejaVu fonts (Debian: python3-numpy, python3-pil,
fonts-dejavu-core), needs no network, and is reproducible: sample i of a set with seed s is drawn from
numpy.random.default_rng([s, i, stream]) alone, so any prefix of a set (the committed fixtures, for instance) can be
regenerated on its own.

Two stages, kept apart so that the C++ peer tests can redo the second one exactly:
  1. render_*():   uint8 pixels, already resized to the model's geometry (the "rendered pixels before
                   normalization"), plus the valid width for padded lines.
  2. *_to_input(): uint8 -> float32 model input, exactly as PaddleOCR's inference scripts do it.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
# Regular, bold and condensed faces of the three families; italics are left out (PaddleOCR's training data has few).
FONT_FILES = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerifCondensed.ttf", "DejaVuSerifCondensed-Bold.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
]

LICENSE_DIR = "/usr/share/common-licenses"
# Disjoint source files per split (no file feeds two splits; symlinks such as GPL -> GPL-3 are not used), so the
# calibration, evaluation and training sets never share a sentence.
TEXT_SOURCES = {
    "calib": ["Apache-2.0", "Artistic", "BSD", "MPL-1.1"],
    "eval": ["GPL-3", "GFDL-1.3"],
    "train": ["GPL-1", "GPL-2", "LGPL-2", "LGPL-2.1", "LGPL-3", "MPL-2.0", "CC0-1.0", "GFDL-1.2"],
}

# PaddleOCR geometry.
CLS_H, CLS_W = 48, 192
REC_H, REC_W = 48, 320
DET_SIZE = 640
# PaddleOCR's detector NormalizeImage: scale 1/255, ImageNet mean/std listed in RGB order but applied by channel
# index to the BGR image cv2 decodes. We reproduce that literally (channel 0 = blue, normalized with 0.485/0.229).
DET_MEAN = (0.485, 0.456, 0.406)
DET_STD = (0.229, 0.224, 0.225)
# torchvision ImageNet normalization (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCENE_SIZE = 224

# Separate random streams per purpose, so adding a draw to one stage never shifts another.
_STREAM_TEXT, _STREAM_STYLE, _STREAM_NOISE, _STREAM_LAYOUT = 1, 2, 3, 4


def sample_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), int(stream)])


# ---------------------------------------------------------------------------------------------------------------
# Text
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-.,;:()/&%]*")


def load_words(source: str, charset: set[str] | None = None) -> list[str]:
    """Tokens of the license texts of one split, in reading order (duplicates kept, so frequent words stay frequent).

    charset, when given, drops tokens with characters a recognizer dictionary lacks."""
    if source not in TEXT_SOURCES:
        raise ValueError(f"unknown text source '{source}' (expected one of {', '.join(TEXT_SOURCES)})")
    words: list[str] = []
    for name in TEXT_SOURCES[source]:
        path = os.path.join(LICENSE_DIR, name)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for tok in _TOKEN.findall(text):
            tok = tok.rstrip(".,;:)(")
            if len(tok) < 1 or len(tok) > 18:
                continue
            if charset is not None and any(c not in charset for c in tok):
                continue
            words.append(tok)
    if len(words) < 500:
        raise RuntimeError(f"text source '{source}' yields only {len(words)} words; are {LICENSE_DIR}/* present?")
    return words


def draw_phrase(words: list[str], rng: np.random.Generator, min_chars: int, max_chars: int) -> str:
    """A run of consecutive words (real word order) between min_chars and max_chars long."""
    for _ in range(50):
        start = int(rng.integers(0, len(words)))
        phrase = words[start]
        i = start + 1
        target = int(rng.integers(min_chars, max_chars + 1))
        while len(phrase) < target and i < len(words) and len(phrase) + 1 + len(words[i]) <= max_chars:
            phrase += " " + words[i]
            i += 1
        if min_chars <= len(phrase) <= max_chars:
            # Occasionally mix in digits and capitals as real documents do.
            r = rng.random()
            if r < 0.08:
                phrase = phrase.upper()
            elif r < 0.16 and len(phrase) + 5 <= max_chars:
                phrase = f"{phrase} {int(rng.integers(1, 2100))}"
            return phrase
    return words[int(rng.integers(0, len(words)))][:max_chars]


# ---------------------------------------------------------------------------------------------------------------
# Rendering
@dataclass
class line_style:
    font_file: str
    font_size: int
    text_rgb: tuple[int, int, int]
    bg_rgb: tuple[int, int, int]
    margin_x: float  # fraction of the ink height
    margin_y: float
    blur: float
    noise_sigma: float


_FONT_CACHE: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}


def font(file: str, size: int) -> ImageFont.FreeTypeFont:
    key = (file, size)
    if key not in _FONT_CACHE:
        path = os.path.join(FONT_DIR, file)
        if not os.path.exists(path):
            raise RuntimeError(f"font {path} missing: install fonts-dejavu-core")
        _FONT_CACHE[key] = ImageFont.truetype(path, size)
    return _FONT_CACHE[key]


def draw_style(rng: np.random.Generator, gray: bool, size_range=(26, 44)) -> line_style:
    bg = int(rng.integers(185, 256))
    fg = int(rng.integers(0, 90))
    if gray:
        bg_rgb = (bg,) * 3
        text_rgb = (fg,) * 3
    else:
        tint = rng.integers(-18, 19, size=3)
        bg_rgb = tuple(int(np.clip(bg + t, 150, 255)) for t in tint)
        # Mostly near-black ink, sometimes dark blue/red/green.
        ink = rng.integers(-30, 31, size=3) if rng.random() < 0.3 else rng.integers(-8, 9, size=3)
        text_rgb = tuple(int(np.clip(fg + t, 0, 120)) for t in ink)
    return line_style(
        font_file=FONT_FILES[int(rng.integers(0, len(FONT_FILES)))],
        font_size=int(rng.integers(size_range[0], size_range[1] + 1)),
        text_rgb=text_rgb,
        bg_rgb=bg_rgb,
        margin_x=float(rng.uniform(0.05, 0.35)),
        margin_y=float(rng.uniform(0.08, 0.30)),
        blur=float(rng.uniform(0.0, 0.9)) if rng.random() < 0.5 else 0.0,
        noise_sigma=float(rng.uniform(0.0, 7.0)),
    )


def render_line(text: str, style: line_style, noise_rng: np.random.Generator, gray: bool) -> np.ndarray:
    """A text line cropped to its ink plus a small margin: uint8 [H, W, 3] (RGB) or [H, W] when gray."""
    f = font(style.font_file, style.font_size)
    left, top, right, bottom = f.getbbox(text)
    ink_h = max(1, bottom - top)
    mx = int(round(style.margin_x * ink_h)) + 1
    my = int(round(style.margin_y * ink_h)) + 1
    w, h = (right - left) + 2 * mx, ink_h + 2 * my
    mode = "L" if gray else "RGB"
    img = Image.new(mode, (w, h), style.bg_rgb[0] if gray else style.bg_rgb)
    ImageDraw.Draw(img).text((mx - left, my - top), text, font=f, fill=style.text_rgb[0] if gray else style.text_rgb)
    if style.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(style.blur))
    a = np.asarray(img, dtype=np.float32)
    if style.noise_sigma > 0:
        a = a + noise_rng.normal(0.0, style.noise_sigma, size=a.shape).astype(np.float32)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def resize_bilinear(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """cv2.resize(INTER_LINEAR)-style bilinear resize (half-pixel centres, edge clamp, no antialiasing), uint8 out."""
    in_h, in_w = img.shape[:2]
    if (in_w, in_h) == (out_w, out_h):
        return img.copy()

    def axis(n_out: int, n_in: int):
        src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0.0, n_in - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, wy = axis(out_h, in_h)
    x0, x1, wx = axis(out_w, in_w)
    a = img.astype(np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    wx3 = wx[None, :, None]
    top = a[y0][:, x0] * (1 - wx3) + a[y0][:, x1] * wx3
    bot = a[y1][:, x0] * (1 - wx3) + a[y1][:, x1] * wx3
    out = top * (1 - wy[:, None, None]) + bot * wy[:, None, None]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out[:, :, 0] if img.ndim == 2 else out


def paddle_resize_width(h: int, w: int, target_h: int, max_w: int) -> int:
    """PaddleOCR's ClsResizeImg / resize_norm_img: keep the aspect ratio, squeeze lines wider than max_w."""
    ratio = w / float(h)
    return max_w if math.ceil(target_h * ratio) > max_w else int(math.ceil(target_h * ratio))


def fit_line(line: np.ndarray, target_h: int, max_w: int) -> tuple[np.ndarray, int]:
    """Resizes a rendered line to height target_h and PaddleOCR's width, left-aligned in a max_w canvas.
    Returns (uint8 [target_h, max_w(, 3)] with zeros right of the line, valid width)."""
    h, w = line.shape[:2]
    rw = paddle_resize_width(h, w, target_h, max_w)
    resized = resize_bilinear(line, rw, target_h)
    out = np.zeros((target_h, max_w) + line.shape[2:], dtype=np.uint8)
    out[:, :rw] = resized
    return out, rw


# ---------------------------------------------------------------------------------------------------------------
# Model inputs (stage 2). The C++ peer tests implement the same three formulas.
def line_to_input(u8: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """[N, H, W(, 3)] uint8 RGB/gray + valid widths -> float32 [N, 3, H, W] in BGR order, (x/255 - 0.5)/0.5 inside
    the line and 0 in the right padding (PaddleOCR's cls and rec preprocessing)."""
    a = u8.astype(np.float32)
    if a.ndim == 3:
        a = np.repeat(a[..., None], 3, axis=3)
    a = a[..., ::-1]  # RGB -> BGR (PaddleOCR reads images with cv2)
    x = ((a / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2).astype(np.float32)
    cols = np.arange(u8.shape[2])[None, :]
    mask = cols < np.asarray(widths)[:, None]
    x *= mask[:, None, None, :]
    return np.ascontiguousarray(x)


def page_to_input(u8: np.ndarray) -> np.ndarray:
    """[N, H, W(, 3)] uint8 RGB/gray page -> float32 [N, 3, H, W]: BGR, (x/255 - mean[c])/std[c] with PaddleOCR's
    detector mean/std applied by channel index."""
    a = u8.astype(np.float32)
    if a.ndim == 3:
        a = np.repeat(a[..., None], 3, axis=3)
    a = a[..., ::-1] / 255.0
    x = (a - np.asarray(DET_MEAN, np.float32)) / np.asarray(DET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).astype(np.float32))


def scene_to_input(u8: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 RGB -> float32 [N, 3, H, W] with torchvision's ImageNet normalization (RGB)."""
    a = u8.astype(np.float32) / 255.0
    x = (a - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------
# Sets (stage 1)
def render_cls(count: int, seed: int, source: str, gray: bool = False):
    """Text-orientation classifier set: (uint8 [N,48,192(,3)], widths int32 [N], labels int64 [N], texts).
    Labels alternate 0 (upright) / 1 (rotated 180 degrees), so every set and every even batch is balanced."""
    words = load_words(source)
    n_ch = () if gray else (3,)
    u8 = np.zeros((count, CLS_H, CLS_W) + n_ch, np.uint8)
    widths = np.zeros(count, np.int32)
    labels = (np.arange(count) % 2).astype(np.int64)
    texts = []
    for i in range(count):
        text = draw_phrase(words, sample_rng(seed, i, _STREAM_TEXT), 3, 18)
        style = draw_style(sample_rng(seed, i, _STREAM_STYLE), gray)
        line = render_line(text, style, sample_rng(seed, i, _STREAM_NOISE), gray)
        if labels[i] == 1:
            line = np.ascontiguousarray(line[::-1, ::-1])
        u8[i], widths[i] = fit_line(line, CLS_H, CLS_W)
        texts.append(text)
    return u8, widths, labels, texts


def load_rec_dict(path: str) -> list[str]:
    """PaddleOCR recognizer classes: index 0 is the CTC blank, then one per dictionary line, then ' '."""
    with open(path, encoding="utf-8") as f:
        chars = [line.rstrip("\r\n") for line in f]
    if chars and chars[-1] == "":
        chars.pop()
    return ["<blank>"] + chars + [" "]


def render_rec(count: int, seed: int, source: str, classes: list[str], gray: bool = False):
    """Recognizer set: (uint8 [N,48,320(,3)], widths int32 [N], label indices int64 [N, 40] (-1 padded), texts)."""
    index = {c: i for i, c in enumerate(classes) if i > 0}
    words = load_words(source, charset=set(index))
    n_ch = () if gray else (3,)
    u8 = np.zeros((count, REC_H, REC_W) + n_ch, np.uint8)
    widths = np.zeros(count, np.int32)
    max_len = 40
    ids = np.full((count, max_len), -1, np.int64)
    texts = []
    for i in range(count):
        text = draw_phrase(words, sample_rng(seed, i, _STREAM_TEXT), 4, 24)
        style = draw_style(sample_rng(seed, i, _STREAM_STYLE), gray)
        line = render_line(text, style, sample_rng(seed, i, _STREAM_NOISE), gray)
        u8[i], widths[i] = fit_line(line, REC_H, REC_W)
        ids[i, : len(text)] = [index[c] for c in text[:max_len]]
        texts.append(text)
    return u8, widths, ids, texts


def render_page(seed: int, index: int, source_words: list[str], gray: bool = False, size: int = DET_SIZE):
    """A size x size page tiled with text lines. Returns (uint8 [size,size(,3)], boxes [[x0,y0,x1,y1], ...], texts)."""
    rng = sample_rng(seed, index, _STREAM_LAYOUT)
    bg = int(rng.integers(200, 256))
    if gray:
        page = Image.new("L", (size, size), bg)
    else:
        tint = rng.integers(-15, 16, size=3)
        base = np.clip(bg + tint, 170, 255).astype(np.float32)
        # A gentle illumination gradient, as on a photographed page.
        gy, gx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        g = 1.0 - float(rng.uniform(0, 0.12)) * (gx * rng.uniform(-1, 1) + gy * rng.uniform(-1, 1)) ** 2
        arr = np.clip(base[None, None, :] * g[..., None], 0, 255).astype(np.uint8)
        page = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(page)
    boxes, texts = [], []
    y = int(rng.integers(8, 40))
    k = 0
    while True:
        srng = sample_rng(seed, index * 1000 + k, _STREAM_STYLE)
        style = draw_style(srng, gray, size_range=(14, 40))
        f = font(style.font_file, style.font_size)
        x = int(rng.integers(8, size // 3))
        max_w = size - x - 8
        text = draw_phrase(source_words, sample_rng(seed, index * 1000 + k, _STREAM_TEXT), 3, 40)
        while text and f.getlength(text) > max_w:
            text = text.rsplit(" ", 1)[0] if " " in text else text[:-1]
        if not text:
            break
        left, top, right, bottom = f.getbbox(text)
        if y + (bottom - top) + 8 > size:
            break
        fill = style.text_rgb[0] if gray else style.text_rgb
        draw.text((x - left, y - top), text, font=f, fill=fill)
        boxes.append([x, y, x + right - left, y + bottom - top])
        texts.append(text)
        y += (bottom - top) + int(rng.integers(int(0.4 * style.font_size), int(1.8 * style.font_size) + 1))
        k += 1
    nrng = sample_rng(seed, index, _STREAM_NOISE)
    if nrng.random() < 0.5:
        page = page.filter(ImageFilter.GaussianBlur(float(nrng.uniform(0.2, 0.8))))
    a = np.asarray(page, np.float32)
    a = a + nrng.normal(0, float(nrng.uniform(0, 5)), size=a.shape).astype(np.float32)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8), boxes, texts


def render_det(count: int, seed: int, source: str, gray: bool = False):
    words = load_words(source)
    pages, all_boxes, all_texts = [], [], []
    for i in range(count):
        p, b, t = render_page(seed, i, words, gray)
        pages.append(p)
        all_boxes.append(b)
        all_texts.append(t)
    return np.stack(pages), all_boxes, all_texts


def render_scene(count: int, seed: int, source: str, size: int = SCENE_SIZE):
    """Natural-ish RGB images for ImageNet-style models: smooth colour fields, overlapping blurred shapes with
    shading and a few words. Not real photos (none can be downloaded), but with photo-like statistics: smooth
    regions, edges at many scales, saturated and muted colours."""
    words = load_words(source)
    out = np.zeros((count, size, size, 3), np.uint8)
    for i in range(count):
        rng = sample_rng(seed, i, _STREAM_LAYOUT)
        gy, gx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = np.clip(gx * rng.uniform(-1, 1) + gy * rng.uniform(-1, 1) + 0.5, 0, 1)[..., None]
        img = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(4, 12))):
            x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
            w, h = rng.uniform(0.1, 0.7, 2) * size
            col = tuple(int(v) for v in rng.uniform(0, 255, 3))
            if rng.random() < 0.5:
                draw.ellipse([x0, y0, x0 + w, y0 + h], fill=col)
            else:
                draw.polygon([tuple(p) for p in rng.uniform(-0.1, 1.1, (int(rng.integers(3, 6)), 2)) * size], fill=col)
        for _ in range(int(rng.integers(0, 3))):
            f = font(FONT_FILES[int(rng.integers(0, len(FONT_FILES)))], int(rng.integers(12, 36)))
            draw.text(tuple(rng.uniform(0, 0.7, 2) * size), draw_phrase(words, rng, 3, 14), font=f,
                      fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 2.0))))
        a = np.asarray(img, np.float32)
        shade = 1.0 - float(rng.uniform(0, 0.4)) * ((gx - rng.uniform()) ** 2 + (gy - rng.uniform()) ** 2)
        a = a * shade[..., None] + rng.normal(0, float(rng.uniform(1, 6)), a.shape)
        out[i] = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return out
