/* Text that comes from files (tensor and class names, paths, keys, a checkpoint's
 * problem) made safe for a terminal or a log: nothing in it can move the cursor, change
 * colours or the window title, or start a line of its own that looks like graft's. */
#ifndef GRAFT_ESCAPE_H
#define GRAFT_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

/* Copy text into out (size >= 1 bytes, always NUL-terminated) with escaped:
 *   control characters and DEL   \n \r \t, others as \x1b
 *   C1 controls (U+0080-U+009F), bidirectional overrides and isolates (U+202A-U+202E,
 *   U+2066-U+2069)               as \u0085, \u202e
 *   bytes that are not UTF-8     as \xff
 * Printable ASCII and well-formed UTF-8 ("café", "猫") are kept as they are; a
 * backslash stays one backslash, so escaping escaped text changes nothing. Text that
 * does not fit is cut before a whole character or escape. Returns out. */
const char *graft_escape(char *out, size_t size, const char *text);

/* The escaped form of the one character at text (not at its NUL) into piece,
 * NUL-terminated: the character itself when it needs no escape. Returns how many bytes
 * of text it stands for (1-4). For writers of other quoted formats (YAML). */
int graft_escape_char(const char *text, char piece[8]);

/* The same escaping, written to out whole (no length limit). */
void graft_fputs_escaped(const char *text, FILE *out);

/* Room for escaping n bytes: the longest escape is 6 bytes per input byte. */
#define GRAFT_ESCAPED_SIZE(n) (6 * (n) + 1)

#endif
