/* Writes an ImageFolder tree of Fashion-MNIST pictures for tests/e2e_images.sh, with
 * libjpeg and libpng themselves (no Python imaging needed):
 *
 *   write_test_images ROOT PER_CLASS
 *
 * ROOT/<class>/ for three classes (Trouser, Bag, Sneaker: told apart easily), PER_CLASS
 * pictures each, cycling through the kinds of file graft decodes: baseline RGB JPEG,
 * progressive grayscale JPEG, PNG gray, RGB, RGBA, palette, 16-bit RGB, interlaced gray +
 * alpha, in several sizes (the 28x28 picture scaled up or stretched by nearest neighbour)
 * and extensions in any case. Then the broken files the converter must list and skip:
 * truncated JPEGs (in the data, in the headers) and PNG, an empty file, random bytes, a CMYK JPEG,
 * and a file that is a PNG named .jpg (readable: decoders go by content, as PIL does). Prints how
 * many valid files each class got. */
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/data/idx.h"

static const int classes[3] = {1, 8, 7};
static const char *const names[3] = {"Trouser", "Bag", "Sneaker"};

/* The picture scaled to w x h (nearest neighbour), `channels` 1, 3 or 4, tinted per class. */
static unsigned char *picture(const uint8_t *src, int w, int h, int channels, int label) {
    unsigned char *p = malloc((size_t)w * (size_t)h * (size_t)channels);
    if (!p) exit(1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = src[(y * 28 / h) * 28 + x * 28 / w];
            unsigned char *o = p + ((size_t)y * (size_t)w + (size_t)x) * (size_t)channels;
            o[0] = (unsigned char)v;
            if (channels >= 3) {
                o[1] = (unsigned char)(v * (label + 1) / 3);
                o[2] = (unsigned char)(255 - v);
            }
            if (channels == 4) o[3] = (unsigned char)(x * 255 / w);
        }
    return p;
}

static void write_jpeg(const char *path, const unsigned char *pixels, int w, int h, int channels,
                       int progressive) {
    FILE *f = fopen(path, "wb");
    if (!f) exit(1);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = channels == 4 ? 4 : channels;
    c.in_color_space = channels == 1 ? JCS_GRAYSCALE : channels == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)c.next_scanline * (size_t)w * (size_t)channels);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    if (fclose(f) != 0) exit(1);
}

/* color_type: PNG_COLOR_TYPE_*; 16-bit doubles every sample; palette: 16 gray levels. */
static void write_png(const char *path, const unsigned char *pixels, int w, int h, int color_type,
                      int bit16, int interlace) {
    FILE *f = fopen(path, "wb");
    if (!f) exit(1);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) exit(1);
    png_init_io(png, f);
    int channels = color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_PALETTE ? 1
                   : color_type == PNG_COLOR_TYPE_GRAY_ALPHA                                 ? 2
                   : color_type == PNG_COLOR_TYPE_RGB                                        ? 3
                                                                                             : 4;
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bit16 ? 16 : 8, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_color palette[16];
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        for (int i = 0; i < 16; i++)
            palette[i].red = palette[i].green = palette[i].blue = (png_byte)(i * 17);
        png_set_PLTE(png, info, palette, 16);
    }
    png_write_info(png, info);
    int bytes = bit16 ? 2 : 1;
    size_t rowbytes = (size_t)w * (size_t)channels * (size_t)bytes;
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    unsigned char *data = malloc(rowbytes * (size_t)h);
    if (!rows || !data) exit(1);
    for (size_t i = 0; i < (size_t)w * (size_t)h * (size_t)channels; i++) {
        unsigned char v = pixels[i];
        if (color_type == PNG_COLOR_TYPE_PALETTE) v = (unsigned char)(v / 17);
        if (bit16) {
            data[2 * i] = v;
            data[2 * i + 1] = (unsigned char)(i * 37);
        } else {
            data[i] = v;
        }
    }
    for (int y = 0; y < h; y++)
        rows[y] = data + (size_t)y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(data);
    if (fclose(f) != 0) exit(1);
}

/* Copy the first `keep` bytes of src to dst (keep < 0: all but the last -keep). */
static void copy_prefix(const char *src, const char *dst, long keep) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    struct stat sb;
    if (!in || !out || stat(src, &sb) != 0) exit(1);
    if (keep < 0) keep += (long)sb.st_size;
    int ch;
    for (long n = 0; n < keep && (ch = fgetc(in)) != EOF; n++)
        if (fputc(ch, out) == EOF) exit(1);
    if (fclose(in) != 0 || fclose(out) != 0) exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: write_test_images ROOT PER_CLASS\n");
        return 2;
    }
    const char *root = argv[1];
    int per_class = (int)strtol(argv[2], NULL, 10);
    graft_idx img, lab;
    if (graft_idx_read(&img, GRAFT_FMNIST_DIR "/train-images-idx3-ubyte.gz") != GRAFT_OK ||
        graft_idx_read(&lab, GRAFT_FMNIST_DIR "/train-labels-idx1-ubyte.gz") != GRAFT_OK)
        return 1;
    mkdir(root, 0755);
    char path[4096], first_jpeg[4096] = "", first_png[4096] = "";
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", root, names[k]);
        mkdir(path, 0755);
        int written = 0;
        for (size_t i = 0; i < lab.count && written < per_class; i++) {
            if (lab.data[i] != classes[k]) continue;
            const uint8_t *src = img.data + i * img.item_size;
            int kind = written % 8, w = 28 + 8 * (written % 3), h = 28 + 6 * (written % 4);
            static const char *const ext[8] = {"jpg", "JPEG", "png", "PNG",
                                               "png", "png",  "png", "png"};
            snprintf(path, sizeof path, "%s/%s/%05d.%s", root, names[k], written, ext[kind]);
            int channels = kind == 1 || kind == 2 || kind == 5 ? 1
                           : kind == 4                         ? 4
                           : kind == 7                         ? 2
                                                               : 3;
            unsigned char *p = picture(src, w, h, channels == 2 ? 4 : channels, k);
            if (channels == 2) /* gray + alpha from the RGBA picture: keep bytes 0 and 3 */
                for (size_t j = 0; j < (size_t)w * (size_t)h; j++) {
                    p[2 * j] = p[4 * j];
                    p[2 * j + 1] = p[4 * j + 3];
                }
            switch (kind) {
            case 0:
                write_jpeg(path, p, w, h, 3, 0);
                break;
            case 1:
                write_jpeg(path, p, w, h, 1, 1);
                break;
            case 2:
                write_png(path, p, w, h, PNG_COLOR_TYPE_GRAY, 0, 0);
                break;
            case 3:
                write_png(path, p, w, h, PNG_COLOR_TYPE_RGB, 0, 0);
                break;
            case 4:
                write_png(path, p, w, h, PNG_COLOR_TYPE_RGB_ALPHA, 0, 0);
                break;
            case 5:
                write_png(path, p, w, h, PNG_COLOR_TYPE_PALETTE, 0, 0);
                break;
            case 6:
                write_png(path, p, w, h, PNG_COLOR_TYPE_RGB, 1, 0);
                break;
            default:
                write_png(path, p, w, h, PNG_COLOR_TYPE_GRAY_ALPHA, 0, 1);
                break;
            }
            free(p);
            if (kind == 0 && !first_jpeg[0]) snprintf(first_jpeg, sizeof first_jpeg, "%s", path);
            if (kind == 3 && !first_png[0]) snprintf(first_png, sizeof first_png, "%s", path);
            written++;
        }
        printf("%s %d\n", names[k], written);
    }
    /* broken files, in the first class; and a PNG named .jpg in the second */
    snprintf(path, sizeof path, "%s/%s/broken-truncated.jpg", root, names[0]);
    copy_prefix(first_jpeg, path, -200);
    snprintf(path, sizeof path, "%s/%s/broken-header.jpg", root, names[0]);
    copy_prefix(first_jpeg, path, 300);
    snprintf(path, sizeof path, "%s/%s/broken-truncated.png", root, names[0]);
    copy_prefix(first_png, path, 100);
    snprintf(path, sizeof path, "%s/%s/broken-empty.png", root, names[0]);
    copy_prefix(first_png, path, 0);
    snprintf(path, sizeof path, "%s/%s/broken-random.jpg", root, names[0]);
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    for (int i = 0; i < 500; i++)
        fputc((i * 7919) % 251, f);
    if (fclose(f) != 0) return 1;
    snprintf(path, sizeof path, "%s/%s/broken-cmyk.jpg", root, names[0]);
    unsigned char *cmyk = picture(img.data, 28, 28, 4, 0);
    write_jpeg(path, cmyk, 28, 28, 4, 0);
    free(cmyk);
    snprintf(path, sizeof path, "%s/%s/a-png-named.jpg", root, names[1]);
    copy_prefix(first_png, path, 1L << 30);
    graft_idx_free(&img);
    graft_idx_free(&lab);
    return 0;
}
