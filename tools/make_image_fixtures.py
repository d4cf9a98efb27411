#!/usr/bin/python3
"""Reference fixtures for graft's image decoding and resizing, made with PIL (Pillow 9.4
as Debian 12 ships it; run by a developer, never by CI):

    /usr/bin/python3 tools/make_image_fixtures.py        # writes tests/fixtures/images/

Writes small source images in every colour type graft decodes (JPEG: baseline, progressive,
grayscale, CMYK; PNG: RGB, RGBA, gray, gray+alpha, palette with transparency, 1-bit,
16-bit gray) and, for 1 and 3 channels, what torchvision's pipeline makes of them:
    NAME.cC.u8              Image.open(f).convert(mode) as raw HWC bytes
    NAME.cC.shorter16.u8    Resize(16) + CenterCrop(16) (bilinear, antialiased) as CHW bytes
    NAME.cC.stretch20x12.u8 Resize((20, 12)) as CHW bytes
    NAME.cC.shorter48.u8    Resize(48) + CenterCrop(48) (upscaling)
tests/test_image.c compares graft's results with them."""
import math
import os

from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "images")
W, H = 41, 29


def pattern():
    """Smooth gradients plus sharp edges: both matter to a resampling filter."""
    im = Image.new("RGB", (W, H))
    px = im.load()
    for y in range(H):
        for x in range(W):
            r = int(127.5 + 127.5 * math.sin(x / 4.0 + y / 9.0))
            g = (x * 6 + y * 3) % 256
            b = 255 if (x // 5 + y // 4) % 2 else 20
            px[x, y] = (r, g, b)
    return im


def torchvision_resize(im, size):
    """torchvision.transforms.functional.resize on a PIL image (antialiased bilinear)."""
    if isinstance(size, int):
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (w, h) == (new_w, new_h):
            return im
        return im.resize((new_w, new_h), Image.BILINEAR)
    h, w = size
    return im.resize((w, h), Image.BILINEAR)


def center_crop(im, size):
    w, h = im.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


def chw(im):
    bands = im.split()
    return b"".join(b.tobytes() for b in bands)


def sources():
    rgb = pattern()
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize((W, H)))
    gray = rgb.convert("L")
    la = gray.copy()
    la.putalpha(Image.linear_gradient("L").resize((W, H)))
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    yield "rgb.png", lambda p: rgb.save(p)
    yield "rgba.png", lambda p: rgba.save(p)
    yield "gray.png", lambda p: gray.save(p)
    yield "gray_alpha.png", lambda p: la.save(p)
    yield "palette.png", lambda p: pal.save(p, transparency=3)
    yield "bilevel.png", lambda p: gray.convert("1").save(p)
    yield "gray16.png", lambda p: gray.point(lambda v: v * 257, "I").convert("I;16").save(p)
    yield "baseline.jpg", lambda p: rgb.save(p, quality=90)
    yield "progressive.jpg", lambda p: rgb.save(p, quality=90, progressive=True)
    yield "gray.jpg", lambda p: gray.save(p, quality=90)
    yield "cmyk.jpg", lambda p: rgb.convert("CMYK").save(p, quality=90)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, save in sources():
        path = os.path.join(OUT, name)
        save(path)
        if name == "cmyk.jpg":
            continue  # graft refuses CMYK JPEGs: no expected pixels
        for channels, mode in ((1, "L"), (3, "RGB")):
            im = Image.open(path)
            if name == "gray16.png":
                # PIL opens 16-bit gray as mode I and clips it to 255 on convert; graft keeps
                # the high byte of every sample, which is what the reference states here
                im = Image.frombytes("L", im.size, bytes(v >> 8 for v in im.getdata()))
            im = im.convert(mode)
            stem = os.path.join(OUT, f"{name}.c{channels}")
            open(stem + ".u8", "wb").write(im.tobytes())
            open(stem + ".shorter16.u8", "wb").write(chw(center_crop(torchvision_resize(im, 16), 16)))
            open(stem + ".stretch20x12.u8", "wb").write(chw(torchvision_resize(im, (20, 12))))
            open(stem + ".shorter48.u8", "wb").write(chw(center_crop(torchvision_resize(im, 48), 48)))
    print(f"fixtures written to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
