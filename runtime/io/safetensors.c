#include "safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/core/check.h"
#include "runtime/core/log.h"
#include "runtime/io/fs.h"
#include "safetensors_internal.h"

/* Tensor bytes are copied between the file and host memory without swapping. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "graft safetensors I/O assumes a little-endian host"
#endif

/* ---- dtypes ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t size;
} dtype_table[GRAFT_DTYPE_COUNT] = {
    [GRAFT_DTYPE_F32] = {"F32", 4},   [GRAFT_DTYPE_F16] = {"F16", 2},
    [GRAFT_DTYPE_BF16] = {"BF16", 2}, [GRAFT_DTYPE_I64] = {"I64", 8},
    [GRAFT_DTYPE_I32] = {"I32", 4},   [GRAFT_DTYPE_U8] = {"U8", 1},
    [GRAFT_DTYPE_U16] = {"U16", 2},
};

size_t graft_dtype_size(graft_dtype dtype) {
    if ((int)dtype < 0 || dtype >= GRAFT_DTYPE_COUNT) return 0;
    return dtype_table[dtype].size;
}

const char *graft_dtype_name(graft_dtype dtype) {
    if ((int)dtype < 0 || dtype >= GRAFT_DTYPE_COUNT) return "?";
    return dtype_table[dtype].name;
}

int graft_dtype_from_name(const char *name, graft_dtype *out) {
    if (!name) return 0;
    for (int d = 0; d < GRAFT_DTYPE_COUNT; d++) {
        if (strcmp(name, dtype_table[d].name) == 0) {
            if (out) *out = (graft_dtype)d;
            return 1;
        }
    }
    return 0;
}

/* ---- scalar conversions ------------------------------------------------------------- */

/* The bits of a float and back, without aliasing casts. */
static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

float graft_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mantissa << 13)); /* inf/NaN */
    if (exponent != 0) return f32_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    if (mantissa == 0) return f32_from_bits(sign); /* signed zero */
    /* Subnormal: mantissa * 2^-24. Normalise so the leading 1 becomes the implicit bit. */
    uint32_t e = 113;
    while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        e--;
    }
    return f32_from_bits(sign | (e << 23) | ((mantissa & 0x3ffu) << 13));
}

/* Shift right by `shift` (1..31) rounding to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t value, unsigned shift) {
    uint32_t kept = value >> shift;
    uint32_t rest = value & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (kept & 1u))) kept++;
    return kept;
}

uint16_t graft_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* quiet NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 (and inf) -> inf */
    if (a >= 0x38800000u) {                                  /* normal in fp16 (>= 2^-14) */
        /* Rebias the exponent (127 -> 15) and round the mantissa; a carry correctly
         * bumps the exponent, and 65504 is the largest value that gets here. */
        return (uint16_t)(sign | shift_round_even(a - (112u << 23), 13));
    }
    /* Subnormal or zero in fp16: value / 2^-24 rounded to an integer 0..0x400. */
    uint32_t exponent = a >> 23;
    if (exponent < 102) return sign; /* below 2^-25: rounds to zero (f32 subnormals too) */
    uint32_t mantissa = (a & 0x7fffffu) | 0x800000u;
    return (uint16_t)(sign | shift_round_even(mantissa, 126u - exponent));
}

float graft_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t graft_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding_bias) >> 16); /* overflow past max -> inf, as RNE says */
}

/* ---- small helpers ------------------------------------------------------------------- */

/* The 8-byte little-endian header length, from any alignment. */
static uint64_t load_u64_le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Strict UTF-8 check (no overlongs, surrogates or code points past U+10FFFF). Returns 1
 * if valid, else 0 with *bad_at set to the offset of the first bad sequence. */
int st_utf8_valid(const unsigned char *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0u) == 0xc0u) {
            len = 2, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0u) == 0xe0u) {
            len = 3, cp = c & 0x0fu, min = 0x800;
        } else if ((c & 0xf8u) == 0xf0u) {
            len = 4, cp = c & 0x07u, min = 0x10000;
        } else {
            break;
        }
        if (len > n - i) break;
        size_t k = 1;
        for (; k < len; k++) {
            if ((s[i + k] & 0xc0u) != 0x80u) break;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (k < len || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) break;
        i += len;
    }
    if (bad_at) *bad_at = i;
    return i == n;
}

/* Copy a name for an error message so the log stays one line of UTF-8: control bytes
 * become '?', so do all non-ASCII bytes of a name that is not UTF-8; long names are cut
 * at a character boundary and end in "...". */
const char *st_shown(const char *name, char *buf, size_t cap) {
    size_t len = strlen(name);
    int is_utf8 = st_utf8_valid((const unsigned char *)name, len, NULL);
    size_t keep = len;
    if (keep + 1 > cap) {
        keep = cap - 4;
        while (keep > 0 && ((unsigned char)name[keep] & 0xc0u) == 0x80u)
            keep--;
    }
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)name[i];
        buf[i] = (c < 0x20 || c == 0x7f || (c >= 0x80 && !is_utf8)) ? '?' : (char)c;
    }
    if (keep < len) memcpy(buf + keep, "...", 3), keep += 3;
    buf[keep] = '\0';
    return buf;
}

/* "object", "array", ... for error messages. */
static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real number";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    }
    return "value";
}

/* A JSON value as shown in an error message: numbers by value, others by type. */
static const char *json_value_text(const json_t *v, char *buf, size_t cap) {
    if (json_is_integer(v))
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, cap, "%g", json_real_value(v));
    else
        snprintf(buf, cap, "a JSON %s", json_type_name(v));
    return buf;
}

/* ---- reader ---------------------------------------------------------------------------- */

/* A validation problem of the file at path: one line "PATH: message" from func;
 * returns GRAFT_ERR_FORMAT. */
__attribute__((format(printf, 3, 4))) static graft_status
problem(const char *func, const char *path, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    graft_log(GRAFT_LOG_ERROR, func, "%s: %s", path, text);
    return GRAFT_ERR_FORMAT;
}
#define PROBLEM(...) problem(__func__, path, __VA_ARGS__)

/* Validate one tensor entry of the header and fill *t (name not set here). */
static graft_status parse_tensor(const char *path, const char *name, const json_t *v,
                                 uint64_t data_bytes, graft_st_tensor *t) {
    char nm[160], buf[64], shp[256];
    st_shown(name, nm, sizeof nm);
    if (!json_is_object(v))
        return PROBLEM("tensor '%s' is a JSON %s, not an object", nm, json_type_name(v));

    const json_t *jdtype = json_object_get(v, "dtype");
    if (!json_is_string(jdtype)) return PROBLEM("tensor '%s' has no \"dtype\" string", nm);
    if (!graft_dtype_from_name(json_string_value(jdtype), &t->dtype)) {
        char dt[64];
        return PROBLEM("tensor '%s' has unknown dtype '%s' (graft reads F32, F16, BF16, I64, "
                       "I32, U8, U16)",
                       nm, st_shown(json_string_value(jdtype), dt, sizeof dt));
    }

    const json_t *jshape = json_object_get(v, "shape");
    if (!json_is_array(jshape)) return PROBLEM("tensor '%s' has no \"shape\" array", nm);
    size_t ndim = json_array_size(jshape);
    if (ndim > GRAFT_ST_MAX_DIMS)
        return PROBLEM("tensor '%s' has %zu dims, graft supports at most %d", nm, ndim,
                       GRAFT_ST_MAX_DIMS);
    uint64_t numel = 1;
    int has_zero = 0, overflow = 0;
    for (size_t d = 0; d < ndim; d++) {
        const json_t *jd = json_array_get(jshape, d);
        if (!json_is_integer(jd) || json_integer_value(jd) < 0)
            return PROBLEM("tensor '%s' shape dim %zu is %s, not a non-negative integer", nm, d,
                           json_value_text(jd, buf, sizeof buf));
        uint64_t dim = (uint64_t)json_integer_value(jd);
        t->shape[d] = (int64_t)dim;
        if (dim == 0)
            has_zero = 1;
        else if (numel > UINT64_MAX / dim)
            overflow = 1;
        else
            numel *= dim;
    }
    t->ndim = (int)ndim;
    if (has_zero) numel = 0, overflow = 0;
    graft_format_shape(shp, sizeof shp, t->ndim, t->shape);

    const json_t *joff = json_object_get(v, "data_offsets");
    const json_t *jbegin = json_array_get(joff, 0), *jend = json_array_get(joff, 1);
    if (!json_is_array(joff) || json_array_size(joff) != 2 || !json_is_integer(jbegin) ||
        !json_is_integer(jend) || json_integer_value(jbegin) < 0 || json_integer_value(jend) < 0)
        return PROBLEM("tensor '%s' needs \"data_offsets\": [begin, end] of two non-negative "
                       "integers",
                       nm);
    uint64_t begin = (uint64_t)json_integer_value(jbegin);
    uint64_t end = (uint64_t)json_integer_value(jend);
    if (begin > end)
        return PROBLEM("tensor '%s' data_offsets [%llu, %llu] has begin > end", nm,
                       (unsigned long long)begin, (unsigned long long)end);
    if (end > data_bytes)
        return PROBLEM("tensor '%s' data_offsets [%llu, %llu] run past the data region (%llu "
                       "bytes)",
                       nm, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)data_bytes);
    size_t esize = graft_dtype_size(t->dtype);
    if (overflow || numel > UINT64_MAX / esize)
        return PROBLEM("tensor '%s' shape %s has too many elements", nm, shp);
    uint64_t needed = numel * esize;
    if (end - begin != needed)
        return PROBLEM("tensor '%s' data_offsets [%llu, %llu] but shape %s %s needs %llu bytes", nm,
                       (unsigned long long)begin, (unsigned long long)end, shp,
                       graft_dtype_name(t->dtype), (unsigned long long)needed);
    /* end <= data_bytes <= SIZE_MAX, so these fit size_t. */
    t->numel = (size_t)numel;
    t->nbytes = (size_t)needed;
    t->offset = begin;
    return GRAFT_OK;
}

/* Validate and copy the __metadata__ object. */
static graft_status parse_metadata(const char *path, graft_st_file *f, const json_t *meta) {
    char nm[160];
    if (!json_is_object(meta))
        return PROBLEM("__metadata__ is a JSON %s, not an object", json_type_name(meta));
    size_t count = json_object_size(meta);
    if (count == 0) return GRAFT_OK;
    f->meta_keys = calloc(count, sizeof *f->meta_keys);
    f->meta_values = calloc(count, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) return GRAFT_ERR_NOMEM;
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)meta, key, value) {
        if (!json_is_string(value))
            return PROBLEM("__metadata__ value for key '%s' is a JSON %s, not a string",
                           st_shown(key, nm, sizeof nm), json_type_name(value));
        f->meta_keys[f->n_meta] = strdup(key);
        f->meta_values[f->n_meta] = strdup(json_string_value(value));
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1]) return GRAFT_ERR_NOMEM;
    }
    return GRAFT_OK;
}

/* Order tensors by data offset; names are unique so the order is total. */
static int compare_by_offset(const void *a, const void *b) {
    const graft_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Check that the tensors tile the data region exactly: no overlap, gap or tail. */
static graft_status check_layout(const char *path, const graft_st_file *f) {
    char nm1[160], nm2[160];
    uint64_t expected = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const graft_st_tensor *t = &f->tensors[i];
        if (t->offset < expected) {
            const graft_st_tensor *prev = &f->tensors[i - 1];
            return PROBLEM("tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
                           st_shown(prev->name, nm1, sizeof nm1), (unsigned long long)prev->offset,
                           (unsigned long long)(prev->offset + prev->nbytes),
                           st_shown(t->name, nm2, sizeof nm2), (unsigned long long)t->offset,
                           (unsigned long long)(t->offset + t->nbytes));
        }
        if (t->offset > expected)
            return PROBLEM("%llu unused bytes in the data region before tensor '%s' at %llu",
                           (unsigned long long)(t->offset - expected),
                           st_shown(t->name, nm1, sizeof nm1), (unsigned long long)t->offset);
        expected = t->offset + t->nbytes;
    }
    if (expected != f->data_bytes)
        return PROBLEM("%llu unused bytes at the end of the data region",
                       (unsigned long long)(f->data_bytes - expected));
    return GRAFT_OK;
}

/* Validate the mapped file and build the tensor and metadata tables in *f. */
static graft_status parse_file(const char *path, graft_st_file *f) {
    const unsigned char *bytes = f->map;
    uint64_t after_length = (uint64_t)f->map_bytes - 8;
    uint64_t header_bytes = load_u64_le(bytes);
    if (header_bytes > GRAFT_ST_MAX_HEADER_BYTES)
        return PROBLEM("header length %llu exceeds the %llu-byte limit",
                       (unsigned long long)header_bytes,
                       (unsigned long long)GRAFT_ST_MAX_HEADER_BYTES);
    if (header_bytes > after_length)
        return PROBLEM("header length %llu runs past the end of the file (%llu bytes follow "
                       "the length)",
                       (unsigned long long)header_bytes, (unsigned long long)after_length);
    const unsigned char *header = bytes + 8;
    size_t bad_at = 0;
    if (!st_utf8_valid(header, (size_t)header_bytes, &bad_at))
        return PROBLEM("header is not valid UTF-8 (byte 0x%02x at header offset %zu)",
                       header[bad_at], bad_at);
    f->header_bytes = header_bytes;
    f->data_region = header + header_bytes;
    f->data_bytes = (size_t)(after_length - header_bytes);

    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)header, (size_t)header_bytes, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return PROBLEM("header is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                       jerr.column);
    graft_status s = GRAFT_OK;
    if (!json_is_object(root)) {
        s = PROBLEM("header is a JSON %s, not an object", json_type_name(root));
        goto done;
    }
    size_t count = json_object_size(root);
    if (json_object_get(root, "__metadata__")) count--;
    if (count > 0) {
        f->tensors = calloc(count, sizeof *f->tensors);
        if (!f->tensors) {
            s = GRAFT_ERR_NOMEM;
            goto done;
        }
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (strcmp(key, "__metadata__") == 0) {
            s = parse_metadata(path, f, value);
        } else {
            graft_st_tensor *t = &f->tensors[f->n_tensors];
            s = parse_tensor(path, key, value, f->data_bytes, t);
            if (s != GRAFT_OK) break;
            t->name = strdup(key);
            if (!t->name) s = GRAFT_ERR_NOMEM;
            f->n_tensors++;
        }
        if (s != GRAFT_OK) break;
    }
    if (s != GRAFT_OK) goto done;
    if (f->n_tensors > 1) qsort(f->tensors, f->n_tensors, sizeof *f->tensors, compare_by_offset);
    s = check_layout(path, f);
    if (s != GRAFT_OK) goto done;
    for (size_t i = 0; i < f->n_tensors; i++)
        f->tensors[i].data = f->data_region + f->tensors[i].offset;
done:
    json_decref(root);
    return s;
}

graft_status graft_st_open(graft_st_file *f, const char *path) {
    if (!f) return GRAFT_ERR_INVALID_ARG;
    memset(f, 0, sizeof *f);
    if (!path) {
        GRAFT_ERROR("no path given");
        return GRAFT_ERR_INVALID_ARG;
    }
    int fd;
    uint64_t file_bytes;
    GRAFT_TRY(graft_fs_open_regular(path, &fd, &file_bytes, GRAFT_LOG_ERROR));
    if (file_bytes < 8) {
        GRAFT_ERROR("%s: file is %llu bytes, too short for the 8-byte header length", path,
                    (unsigned long long)file_bytes);
        close(fd);
        return GRAFT_ERR_FORMAT;
    }
    if (file_bytes > SIZE_MAX) {
        GRAFT_ERROR("%s: file of %llu bytes is too large to map", path,
                    (unsigned long long)file_bytes);
        close(fd);
        return GRAFT_ERR_IO;
    }
    void *map = mmap(NULL, (size_t)file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        GRAFT_ERROR("%s: cannot map %llu bytes: %s", path, (unsigned long long)file_bytes,
                    strerror(map_errno));
        return GRAFT_ERR_IO;
    }
    f->map = map;
    f->map_bytes = (size_t)file_bytes;

    graft_status s = parse_file(path, f); /* logs what is malformed */
    if (s == GRAFT_OK) {
        f->path = strdup(path);
        if (!f->path) s = GRAFT_ERR_NOMEM;
    }
    if (s != GRAFT_OK) {
        if (s != GRAFT_ERR_FORMAT)
            GRAFT_ERROR("%s: %s while reading the header", path, graft_status_str(s));
        graft_st_close(f);
    }
    return s;
}

void graft_st_close(graft_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_bytes);
    for (size_t i = 0; i < f->n_tensors; i++)
        free((char *)f->tensors[i].name);
    free(f->tensors);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const graft_st_tensor *graft_st_find(const graft_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *graft_st_metadata_get(const graft_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

graft_status graft_st_read_f32(const graft_st_tensor *t, float *dst, size_t n) {
    if (!t || (!dst && n > 0)) return GRAFT_ERR_INVALID_ARG;
    if (n != t->numel) {
        char nm[160];
        GRAFT_ERROR("tensor '%s' has %zu elements, caller expects %zu",
                    st_shown(t->name, nm, sizeof nm), t->numel, n);
        return GRAFT_ERR_MISMATCH;
    }
    const unsigned char *src = t->data;
    if (n == 0) return GRAFT_OK;
    switch (t->dtype) {
    case GRAFT_DTYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        break;
    case GRAFT_DTYPE_F16:
    case GRAFT_DTYPE_BF16:
    case GRAFT_DTYPE_U16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, sizeof h);
            dst[i] = t->dtype == GRAFT_DTYPE_F16    ? graft_f16_to_f32(h)
                     : t->dtype == GRAFT_DTYPE_BF16 ? graft_bf16_to_f32(h)
                                                    : (float)h;
        }
        break;
    case GRAFT_DTYPE_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, sizeof v);
            dst[i] = (float)v;
        }
        break;
    case GRAFT_DTYPE_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, src + 4 * i, sizeof v);
            dst[i] = (float)v;
        }
        break;
    case GRAFT_DTYPE_U8:
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)src[i];
        break;
    default:
        return GRAFT_ERR_INVALID_ARG;
    }
    return GRAFT_OK;
}
