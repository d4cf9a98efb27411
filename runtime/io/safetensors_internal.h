/* safetensors files (see safetensors.h): the reader and the dtypes in safetensors.c,
 * the writer in safetensors_write.c, these helpers shared between them. */
#ifndef GRAFT_SAFETENSORS_INTERNAL_H
#define GRAFT_SAFETENSORS_INTERNAL_H

#include <stddef.h>

/* Strict UTF-8 check (no overlongs, surrogates or code points past U+10FFFF). Returns 1
 * if valid, else 0 with *bad_at (may be NULL) set to the offset of the first bad
 * sequence. */
int st_utf8_valid(const unsigned char *s, size_t n, size_t *bad_at);

/* Copy a name for an error message so the log stays one line of UTF-8 (see
 * safetensors.c); returns buf. */
const char *st_shown(const char *name, char *buf, size_t cap);

#endif
