/* JPEG and PNG decoding (see image_decode.h). Both libraries report errors by calling
 * a handler that must not return: libjpeg's default one calls exit(), libpng's aborts.
 * Ours longjmp back to the decode call, which then frees what it allocated. Everything
 * a decode changes after its setjmp lives in a context struct, not in locals, so the
 * longjmp cannot leave stale registers behind. */
#include "image_decode.h"

#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

void graft_image_free(graft_image *img) {
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* PIL's luma (ITU-R 601-2, 16-bit fixed point). */
static uint8_t luma(const uint8_t *rgb) {
    return (uint8_t)((rgb[0] * 19595u + rgb[1] * 38470u + rgb[2] * 7471u + 0x8000u) >> 16);
}

/* One decoded row of `in_channels` (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) into `out_channels`. */
static void convert_row(const uint8_t *in, int in_channels, uint8_t *out, int out_channels,
                        int width) {
    for (int x = 0; x < width; x++, in += in_channels) {
        int gray = in_channels <= 2;
        if (out_channels == 1) {
            *out++ = gray ? in[0] : luma(in);
        } else {
            out[0] = in[0];
            out[1] = gray ? in[0] : in[1];
            out[2] = gray ? in[0] : in[2];
            out += 3;
        }
    }
}

static graft_status check_size(uint32_t w, uint32_t h, char *why, size_t why_size) {
    if (w == 0 || h == 0) {
        snprintf(why, why_size, "image of %ux%u pixels", (unsigned)w, (unsigned)h);
        return GRAFT_ERR_FORMAT;
    }
    if ((size_t)w * h > GRAFT_IMAGE_MAX_PIXELS) {
        snprintf(why, why_size, "image of %ux%u pixels, more than the %zu allowed", (unsigned)w,
                 (unsigned)h, GRAFT_IMAGE_MAX_PIXELS);
        return GRAFT_ERR_UNSUPPORTED;
    }
    return GRAFT_OK;
}

/* ---- JPEG ---------------------------------------------------------------------------- */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr err; /* first: libjpeg hands the handlers a pointer to it */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int truncated;
    struct jpeg_decompress_struct cinfo;
    uint8_t *row;
    graft_status st;
} jpeg_ctx;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    cinfo->err->format_message(cinfo, ctx->message);
    longjmp(ctx->jump, 1);
}

/* Warnings: a file that ends early is decoded with gray filling the rest; PIL calls that
 * "image file is truncated" and so do we. Other warnings (extra bytes before a marker)
 * leave a usable image, as PIL finds too. */
static void jpeg_warn(j_common_ptr cinfo, int level) {
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) ctx->truncated = 1;
}

static graft_status decode_jpeg(jpeg_ctx *ctx, const uint8_t *data, size_t len, int channels,
                                graft_image *img, char *why, size_t why_size) {
    struct jpeg_decompress_struct *c = &ctx->cinfo;
    c->err = jpeg_std_error(&ctx->err);
    ctx->err.error_exit = jpeg_fail;
    ctx->err.emit_message = jpeg_warn;
    if (setjmp(ctx->jump)) {
        snprintf(why, why_size, "corrupt JPEG: %s", ctx->message);
        return GRAFT_ERR_FORMAT;
    }
    jpeg_create_decompress(c);
    jpeg_mem_src(c, data, (unsigned long)len);
    jpeg_read_header(c, TRUE);
    if (c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK) {
        snprintf(why, why_size, "%s JPEG is not supported (convert it to RGB first)",
                 c->jpeg_color_space == JCS_CMYK ? "CMYK" : "YCCK");
        return GRAFT_ERR_UNSUPPORTED;
    }
    ctx->st = check_size(c->image_width, c->image_height, why, why_size);
    if (ctx->st != GRAFT_OK) return ctx->st;
    c->out_color_space = c->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(c);
    int in_ch = c->output_components, w = (int)c->output_width, h = (int)c->output_height;
    img->pixels = malloc((size_t)w * (size_t)h * (size_t)channels);
    ctx->row = malloc((size_t)w * (size_t)in_ch);
    if (!img->pixels || !ctx->row) {
        snprintf(why, why_size, "out of memory");
        return GRAFT_ERR_NOMEM;
    }
    img->width = w;
    img->height = h;
    img->channels = channels;
    while (c->output_scanline < c->output_height && !ctx->truncated) {
        size_t y = c->output_scanline;
        JSAMPROW rows[1] = {ctx->row};
        jpeg_read_scanlines(c, rows, 1);
        convert_row(ctx->row, in_ch, img->pixels + y * (size_t)w * (size_t)channels, channels, w);
    }
    if (ctx->truncated) {
        snprintf(why, why_size, "truncated JPEG (the file ends before the image does)");
        return GRAFT_ERR_FORMAT;
    }
    jpeg_finish_decompress(c);
    return GRAFT_OK;
}

/* ---- PNG ----------------------------------------------------------------------------- */

typedef struct png_ctx {
    jmp_buf jump;
    char message[160];
    const uint8_t *data;
    size_t len, pos;
    png_structp png;
    png_infop info;
    uint8_t *decoded;
    png_bytep *rows;
} png_ctx;

static void png_fail(png_structp png, png_const_charp message) {
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->message, sizeof ctx->message, "%s", message);
    longjmp(ctx->jump, 1);
}

static void png_quiet(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_mem(png_structp png, png_bytep out, size_t n) {
    png_ctx *ctx = png_get_io_ptr(png);
    if (n > ctx->len - ctx->pos) png_error(png, "truncated PNG (the file ends before the image)");
    memcpy(out, ctx->data + ctx->pos, n);
    ctx->pos += n;
}

static graft_status decode_png(png_ctx *ctx, int channels, graft_image *img, char *why,
                               size_t why_size) {
    ctx->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, png_fail, png_quiet);
    ctx->info = ctx->png ? png_create_info_struct(ctx->png) : NULL;
    if (!ctx->info) {
        snprintf(why, why_size, "out of memory");
        return GRAFT_ERR_NOMEM;
    }
    if (setjmp(ctx->jump)) {
        snprintf(why, why_size, "%s%s",
                 strncmp(ctx->message, "truncated", 9) ? "corrupt PNG: " : "", ctx->message);
        return GRAFT_ERR_FORMAT;
    }
    png_set_read_fn(ctx->png, ctx, png_read_mem);
    /* we refuse oversized images ourselves, with the same limit for both formats */
    png_set_user_limits(ctx->png, 0x7fffffff, 0x7fffffff);
    png_read_info(ctx->png, ctx->info);
    png_uint_32 w = png_get_image_width(ctx->png, ctx->info);
    png_uint_32 h = png_get_image_height(ctx->png, ctx->info);
    graft_status st = check_size(w, h, why, why_size);
    if (st != GRAFT_OK) return st;
    png_set_expand(ctx->png); /* palette to RGB, low-bit gray to 8 bits, tRNS to alpha */
    png_set_strip_16(ctx->png);
    png_set_interlace_handling(ctx->png);
    png_read_update_info(ctx->png, ctx->info);
    int in_ch = png_get_channels(ctx->png, ctx->info);
    size_t rowbytes = png_get_rowbytes(ctx->png, ctx->info);
    if (in_ch < 1 || in_ch > 4 || rowbytes != (size_t)w * (size_t)in_ch) {
        snprintf(why, why_size, "PNG of %d channels in %zu bytes a row is not supported", in_ch,
                 rowbytes);
        return GRAFT_ERR_UNSUPPORTED;
    }
    ctx->decoded = malloc(rowbytes * h);
    ctx->rows = malloc(h * sizeof *ctx->rows);
    img->pixels = malloc((size_t)w * h * (size_t)channels);
    if (!ctx->decoded || !ctx->rows || !img->pixels) {
        snprintf(why, why_size, "out of memory");
        return GRAFT_ERR_NOMEM;
    }
    for (png_uint_32 y = 0; y < h; y++)
        ctx->rows[y] = ctx->decoded + y * rowbytes;
    png_read_image(ctx->png, ctx->rows);
    img->width = (int)w;
    img->height = (int)h;
    img->channels = channels;
    for (png_uint_32 y = 0; y < h; y++)
        convert_row(ctx->rows[y], in_ch, img->pixels + (size_t)y * w * (size_t)channels, channels,
                    (int)w);
    return GRAFT_OK;
}

graft_status graft_image_decode(const uint8_t *data, size_t len, int channels, graft_image *img,
                                char *why, size_t why_size) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memset(img, 0, sizeof *img);
    why[0] = '\0';
    graft_status st;
    if (channels != 1 && channels != 3) {
        snprintf(why, why_size, "%d channels asked for (1 or 3)", channels);
        return GRAFT_ERR_INVALID_ARG;
    }
    if (len == 0) {
        snprintf(why, why_size, "empty file");
        return GRAFT_ERR_FORMAT;
    }
    if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) {
        jpeg_ctx *ctx = calloc(1, sizeof *ctx);
        if (!ctx) return GRAFT_ERR_NOMEM;
        st = decode_jpeg(ctx, data, len, channels, img, why, why_size);
        jpeg_destroy_decompress(&ctx->cinfo);
        free(ctx->row);
        free(ctx);
    } else if (len >= 8 && memcmp(data, png_sig, 8) == 0) {
        png_ctx *ctx = calloc(1, sizeof *ctx);
        if (!ctx) return GRAFT_ERR_NOMEM;
        ctx->data = data;
        ctx->len = len;
        st = decode_png(ctx, channels, img, why, why_size);
        png_destroy_read_struct(ctx->png ? &ctx->png : NULL, ctx->info ? &ctx->info : NULL, NULL);
        free(ctx->decoded);
        free(ctx->rows);
        free(ctx);
    } else {
        snprintf(why, why_size, "not a JPEG or PNG file (unknown signature)");
        return GRAFT_ERR_FORMAT;
    }
    if (st != GRAFT_OK) graft_image_free(img);
    return st;
}
