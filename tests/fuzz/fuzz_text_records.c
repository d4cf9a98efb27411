/* Labelled text records: the first byte picks the format (even: JSON Lines, odd: CSV),
 * the rest is the file, read with the fields "text" and "label", leniently and with
 * strict. Records must come in file order with their text and label intact, and a
 * strict read that succeeds must have skipped nothing and found the same records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "runtime/data/text_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    if (size < 1) return 0;
    graft_records_format format = data[0] % 2 ? GRAFT_RECORDS_CSV : GRAFT_RECORDS_JSONL;
    const char *dir = fuzz_tmpdir();
    fuzz_write(dir, "records", data + 1, size - 1);
    char path[4096];
    snprintf(path, sizeof path, "%s/records", dir);
    graft_text_records lenient, strict;
    graft_status s = graft_text_records_read(&lenient, path, format, "text", "label", 0);
    fuzz_check_memory(s, "graft_text_records_read");
    graft_status t = graft_text_records_read(&strict, path, format, "text", "label", 1);
    fuzz_check_memory(t, "graft_text_records_read --strict");
    for (size_t i = 0; s == GRAFT_OK && i < lenient.n; i++) {
        const graft_text_record *r = &lenient.items[i];
        if (!r->text || !r->label || r->text[r->text_len] != '\0') fuzz_fail("a record is unset");
        if (i > 0 && r->line <= lenient.items[i - 1].line) fuzz_fail("records out of order");
    }
    if (t == GRAFT_OK && (s != GRAFT_OK || strict.skipped || strict.n != lenient.n))
        fuzz_fail("a strict read differs from the lenient one");
    graft_text_records_free(&lenient);
    graft_text_records_free(&strict);
    return 0;
}
