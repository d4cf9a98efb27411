/* Escaping file-derived text for terminals and logs (see escape.h). */
#include "escape.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (2-4), with its code point in *cp; 0
 * when s does not start one (a stray continuation byte, an overlong form, a surrogate,
 * past U+10FFFF, or cut short). */
static int utf8_sequence(const unsigned char *s, uint32_t *cp) {
    int len;
    uint32_t c, min;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, c = s[0] & 0x1fu, min = 0x80;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, c = s[0] & 0x0fu, min = 0x800;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, c = s[0] & 0x07u, min = 0x10000;
    else
        return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0; /* also stops at the NUL */
        c = c << 6 | (s[i] & 0x3fu);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    *cp = c;
    return len;
}

/* Code points that a terminal acts on or that reorder the text around them. */
static int is_invisible_control(uint32_t cp) {
    return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/* The escaped form of the character at s (not NUL) into piece (*n bytes, at most 6,
 * not terminated); returns how many bytes of s it stands for. */
static int escape_one(const unsigned char *s, char piece[8], size_t *n) {
    static const char *const named[] = {['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t"};
    uint32_t cp = 0;
    int len = *s < 0x80 ? 1 : utf8_sequence(s, &cp);
    int written;
    if (*s < sizeof named / sizeof named[0] && named[*s])
        written = snprintf(piece, 8, "%s", named[*s]);
    else if (*s < 0x20 || *s == 0x7f || len == 0)
        written = snprintf(piece, 8, "\\x%02x", *s); /* a control, or a byte that is not UTF-8 */
    else if (is_invisible_control(cp))
        written = snprintf(piece, 8, "\\u%04x", (unsigned)cp);
    else {
        memcpy(piece, s, (size_t)len);
        written = len;
    }
    *n = (size_t)written;
    return len == 0 ? 1 : len;
}

const char *graft_escape(char *out, size_t size, const char *text) {
    size_t used = 0;
    for (const unsigned char *s = (const unsigned char *)text; *s;) {
        char piece[8];
        size_t n;
        int len = escape_one(s, piece, &n);
        if (used + n >= size) break;
        memcpy(out + used, piece, n);
        used += n;
        s += len;
    }
    out[used] = '\0';
    return out;
}

void graft_fputs_escaped(const char *text, FILE *out) {
    for (const unsigned char *s = (const unsigned char *)text; *s;) {
        char piece[8];
        size_t n;
        s += escape_one(s, piece, &n);
        fwrite(piece, 1, n, out);
    }
}

int graft_escape_char(const char *text, char piece[8]) {
    size_t n;
    int len = escape_one((const unsigned char *)text, piece, &n);
    piece[n] = '\0';
    return len;
}
