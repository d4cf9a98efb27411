/* JSON over jansson for the files graft reads and writes (a checkpoint's state.json, a
 * dataset's index.json, evaluation results): loading a file, typed members with a
 * one-line error naming the file and the key, 64-bit digests as 16 hex digits, and
 * writing a value as a file.
 *
 * The graft_status getters log "PATH: missing \"KEY\"" or "PATH: \"KEY\" must be ...,
 * got VALUE" and return GRAFT_ERR_FORMAT. Their `member` is the name looked up in the
 * object; `key` is how the message names it ("shards[3].bytes"), NULL for member
 * itself. The int getters (graft_json_get_*) log nothing, for callers that word their
 * own message. */
#ifndef GRAFT_JSON_H
#define GRAFT_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/core/status.h"

/* Parse the whole file at path (a regular file of at most max_bytes, 0 = no bound, read
 * with graft_fs_read) with duplicate keys rejected. On failure returns NULL after one
 * logged line: the read error as graft_fs_read words it, or "PATH: invalid JSON at
 * line L, column C: TEXT" (GRAFT_ERR_FORMAT); *st (may be NULL) receives the status. */
json_t *graft_json_load_file(const char *path, size_t max_bytes, graft_status *st);
/* The same without logging (but at debug level) and with duplicate keys allowed, for probing a file
 * (is it ours? which step?): NULL on any failure. */
json_t *graft_json_try_load_file(const char *path, size_t max_bytes);

/* A short rendering of v for messages: compact JSON cut after 37 characters with "...",
 * "nothing" for NULL. Returns buf (or a constant). */
const char *graft_json_text(const json_t *v, char *buf, size_t size);

/* 1 and *out when member key of obj is an integer in [min, max], else 0. */
int graft_json_get_int(const json_t *obj, const char *key, long long min, long long max,
                       long long *out);
/* 1 and *out when s (may be NULL) is exactly 16 hex digits (either case), else 0. */
int graft_json_parse_hex64(const char *s, uint64_t *out);
/* The same for a JSON value (a string). */
int graft_json_get_hex64(const json_t *v, uint64_t *out);
/* v as the 16 lower-case hex digits graft writes digests as. */
void graft_json_hex64_text(char out[17], uint64_t v);

/* A required integer member in [min, max]. */
graft_status graft_json_int(const char *path, const json_t *obj, const char *member,
                            const char *key, long long min, long long max, long long *out);
/* A required string member; *out points into obj. */
graft_status graft_json_string(const char *path, const json_t *obj, const char *member,
                               const char *key, const char **out);
/* An optional member of 16 hex digits: *present = 0 (and *out untouched) when absent. */
graft_status graft_json_hex64(const char *path, const json_t *obj, const char *member,
                              const char *key, int *present, uint64_t *out);

/* x as a JSON number, or JSON null when x is NaN or infinite (JSON has no such numbers;
 * json_real alone returns NULL and the key would vanish). Every float graft writes into
 * JSON output goes through here. NULL only when memory ran out. */
json_t *graft_json_real_or_null(double x);

/* value as json_dumps(value, flags) text ending in a newline (malloc'd, *len bytes before
 * the NUL when len is not NULL); NULL when memory ran out. */
char *graft_json_dumps_line(const json_t *value, size_t flags, size_t *len);
/* Write value to path atomically (graft_fs_write_atomic) as graft_json_dumps_line. */
graft_status graft_json_write_atomic(const char *path, const json_t *value, size_t flags);

#endif
