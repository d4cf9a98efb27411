/* Labelled text records from JSON Lines or CSV files, for `graft data text --format`:
 *   jsonl  one JSON object per line (blank lines ignored); the text field must be a
 *          string, the label field a string or an integer (kept as its decimal text);
 *   csv    RFC 4180: a header row naming the fields, comma separated, fields in double
 *          quotes may hold commas, newlines and doubled quotes ""; LF or CRLF line ends;
 *          a UTF-8 byte order mark at the start is ignored.
 * A malformed record (bad JSON, a missing field, a text that is not a string, an empty
 * label, a CSV row with another number of fields, an unterminated quote) is reported as
 * "FILE:LINE: <problem>" and skipped, or with strict is the one error. A CSV header
 * without the named fields is always an error. */
#ifndef GRAFT_TEXT_RECORDS_H
#define GRAFT_TEXT_RECORDS_H

#include <stddef.h>

#include "runtime/core/status.h"

typedef enum { GRAFT_RECORDS_JSONL, GRAFT_RECORDS_CSV } graft_records_format;

typedef struct {
    char *text; /* text_len bytes, NUL-terminated */
    size_t text_len;
    char *label; /* NULL when read without a label field */
    size_t line; /* where the record starts, from 1 */
} graft_text_record;

typedef struct {
    graft_text_record *items;
    size_t n, cap;
    size_t skipped; /* malformed records left out */
} graft_text_records;

/* Read every record of path into *out (zeroed first; free with graft_text_records_free,
 * also after an error). label_field NULL: texts only (graft predict's inputs). */
graft_status graft_text_records_read(graft_text_records *out, const char *path,
                                     graft_records_format format, const char *text_field,
                                     const char *label_field, int strict);
void graft_text_records_free(graft_text_records *r);

#endif
