/* YAML text -> a small node tree with 1-based line:column marks, through libyaml's
 * event API (so anchors, aliases, tags and extra documents can be refused by name
 * instead of being resolved silently). */
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_internal.h"

/* Deeper nesting than this is refused (the builder recurses once per level). */
#define CFG_MAX_DEPTH 32

typedef struct yaml_reader {
    yaml_parser_t parser;
    const cfg_where *w;
    const char *text;
    size_t len;
} yaml_reader;

/* Release a node and everything below it; NULL is fine. */
void cfg_node_free(cfg_node *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n_kids; i++)
        cfg_node_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

/* 1-based line and column of byte `offset` of the text (reader errors give offsets). */
static void offset_to_mark(const char *text, size_t len, size_t offset, unsigned long *line,
                           unsigned long *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* An error at a position of the text: "FILE:L:C: message", or for an override value
 * "override '...': message (column C of the value)". */
static graft_status fail_at_mark(yaml_reader *r, unsigned long line, unsigned long col,
                                 const char *msg, const char *hint) {
    if (r->w->file) return cfg_fail_at(r->w, line, col, NULL, "%s%s", msg, hint);
    /* An override's value: a column of its text, or its end (where libyaml's mark may
     * sit on a line after the last). */
    size_t offset = 0;
    for (unsigned long l = 1; l < line && offset < r->len; offset++)
        if (r->text[offset] == '\n') l++;
    offset += col - 1;
    if (offset >= r->len)
        return cfg_fail_at(r->w, 0, 0, NULL, "%s%s (at the end of the value)", msg, hint);
    return cfg_fail_at(r->w, 0, 0, NULL, "%s%s (column %zu of the value)", msg, hint, offset + 1);
}

/* Turn libyaml's error state into one line naming the position and the problem. */
static graft_status report_parser_error(yaml_reader *r) {
    yaml_parser_t *p = &r->parser;
    char msg[512];
    const char *problem = p->problem ? p->problem : "malformed YAML";
    unsigned long line, col;
    size_t index;
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        cfg_fail_at(r->w, 0, 0, NULL, "out of memory while parsing YAML");
        return GRAFT_ERR_NOMEM;
    case YAML_READER_ERROR:
        offset_to_mark(r->text, r->len, p->problem_offset, &line, &col);
        if (p->problem_value >= 0)
            snprintf(msg, sizeof msg, "syntax error: %s (byte 0x%02x)", problem,
                     (unsigned)p->problem_value);
        else
            snprintf(msg, sizeof msg, "syntax error: %s", problem);
        return fail_at_mark(r, line, col, msg, "");
    default:
        line = (unsigned long)p->problem_mark.line + 1;
        col = (unsigned long)p->problem_mark.column + 1;
        index = p->problem_mark.index;
        snprintf(msg, sizeof msg, "syntax error: %s", problem);
        /* libyaml reports a tab used for indentation as a character that cannot start
         * a token: say what it was (its other message already names the tab). */
        int tab = index < r->len && r->text[index] == '\t' && !strstr(problem, "tab");
        /* A glob such as *.bias is read as an alias: say so. */
        int alias = p->context && (strstr(p->context, "alias") || strstr(p->context, "anchor"));
        return fail_at_mark(r, line, col, msg,
                            tab     ? " (tabs are not allowed for indentation)"
                            : alias ? " (a value starting with '*' or '&' is an alias or anchor: "
                                      "quote it, e.g. '*.bias')"
                                    : "");
    }
}

/* Next event, or the parser's error reported. */
static graft_status next_event(yaml_reader *r, yaml_event_t *ev) {
    if (yaml_parser_parse(&r->parser, ev)) return GRAFT_OK;
    return report_parser_error(r);
}

/* An empty node at the event's start mark. */
static cfg_node *new_node(cfg_node_kind kind, const yaml_event_t *ev) {
    cfg_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->line = (unsigned long)ev->start_mark.line + 1;
    n->col = (unsigned long)ev->start_mark.column + 1;
    return n;
}

/* Append a child; 0 when out of memory (the caller still owns kid). */
static int add_kid(cfg_node *parent, cfg_node *kid) {
    if (parent->n_kids == parent->cap_kids) {
        size_t cap = parent->cap_kids ? 2 * parent->cap_kids : 8;
        /* sizeof *p, p an array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
        cfg_node **kids = realloc(parent->kids, cap * sizeof *kids);
        if (!kids) return 0;
        parent->kids = kids;
        parent->cap_kids = cap;
    }
    parent->kids[parent->n_kids++] = kid;
    return 1;
}

/* Refuse anchors (&x) and tags (!!str): a config means what it literally says. */
static graft_status check_anchor_tag(yaml_reader *r, const yaml_event_t *ev,
                                     const yaml_char_t *anchor, const yaml_char_t *tag) {
    unsigned long line = (unsigned long)ev->start_mark.line + 1;
    unsigned long col = (unsigned long)ev->start_mark.column + 1;
    char msg[256];
    if (anchor) {
        snprintf(msg, sizeof msg,
                 "anchors and aliases are not supported (found '&%.64s'; quote strings that "
                 "start with '&' or '*')",
                 (const char *)anchor);
        return fail_at_mark(r, line, col, msg, "");
    }
    if (tag) {
        const char *t = (const char *)tag, *core = "tag:yaml.org,2002:";
        int is_core = strncmp(t, core, strlen(core)) == 0;
        snprintf(msg, sizeof msg, "tags are not supported (found '%s%.64s')", is_core ? "!!" : "",
                 is_core ? t + strlen(core) : t);
        return fail_at_mark(r, line, col, msg, "");
    }
    return GRAFT_OK;
}

/* Build the node that starts with event `start` (owned by the caller), reading the
 * events of its children from the parser. */
static graft_status build_node(yaml_reader *r, const yaml_event_t *start, int depth,
                               cfg_node **out) {
    *out = NULL;
    unsigned long line = (unsigned long)start->start_mark.line + 1;
    unsigned long col = (unsigned long)start->start_mark.column + 1;
    char msg[256];
    if (start->type == YAML_ALIAS_EVENT) {
        snprintf(msg, sizeof msg,
                 "anchors and aliases are not supported (found '*%.64s'; quote strings that "
                 "start with '&' or '*')",
                 (const char *)start->data.alias.anchor);
        return fail_at_mark(r, line, col, msg, "");
    }
    if (start->type == YAML_SCALAR_EVENT) {
        GRAFT_TRY(check_anchor_tag(r, start, start->data.scalar.anchor, start->data.scalar.tag));
        const char *value = (const char *)start->data.scalar.value;
        size_t length = start->data.scalar.length;
        if (memchr(value, '\0', length))
            return fail_at_mark(r, line, col, "strings may not contain NUL characters", "");
        cfg_node *n = new_node(CFG_SCALAR, start);
        if (n) n->text = malloc(length + 1);
        if (!n || !n->text) {
            cfg_node_free(n);
            cfg_fail_at(r->w, 0, 0, NULL, "out of memory");
            return GRAFT_ERR_NOMEM;
        }
        memcpy(n->text, value, length);
        n->text[length] = '\0';
        n->plain = start->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        *out = n;
        return GRAFT_OK;
    }
    yaml_event_type_t end_type;
    cfg_node_kind kind;
    if (start->type == YAML_SEQUENCE_START_EVENT) {
        GRAFT_TRY(check_anchor_tag(r, start, start->data.sequence_start.anchor,
                                   start->data.sequence_start.tag));
        kind = CFG_SEQ;
        end_type = YAML_SEQUENCE_END_EVENT;
    } else if (start->type == YAML_MAPPING_START_EVENT) {
        GRAFT_TRY(check_anchor_tag(r, start, start->data.mapping_start.anchor,
                                   start->data.mapping_start.tag));
        kind = CFG_MAP;
        end_type = YAML_MAPPING_END_EVENT;
    } else {
        cfg_fail_at(r->w, 0, 0, NULL, "internal error: unexpected YAML event %d", (int)start->type);
        return GRAFT_ERR_INTERNAL;
    }
    if (depth >= CFG_MAX_DEPTH) {
        snprintf(msg, sizeof msg, "nesting deeper than %d levels", CFG_MAX_DEPTH);
        return fail_at_mark(r, line, col, msg, "");
    }
    cfg_node *n = new_node(kind, start);
    if (!n) {
        cfg_fail_at(r->w, 0, 0, NULL, "out of memory");
        return GRAFT_ERR_NOMEM;
    }
    for (;;) {
        yaml_event_t ev;
        graft_status s = next_event(r, &ev);
        if (s != GRAFT_OK) {
            cfg_node_free(n);
            return s;
        }
        if (ev.type == end_type) {
            yaml_event_delete(&ev);
            break;
        }
        cfg_node *kid = NULL;
        s = build_node(r, &ev, depth + 1, &kid);
        yaml_event_delete(&ev);
        if (s == GRAFT_OK && !add_kid(n, kid)) {
            cfg_node_free(kid);
            s = GRAFT_ERR_NOMEM;
            cfg_fail_at(r->w, 0, 0, NULL, "out of memory");
        }
        if (s != GRAFT_OK) {
            cfg_node_free(n);
            return s;
        }
    }
    *out = n;
    return GRAFT_OK;
}

/* Expect an event of `type` (stream/document framing). */
static graft_status expect_event(yaml_reader *r, yaml_event_type_t type, yaml_event_t *ev) {
    GRAFT_TRY(next_event(r, ev));
    if (ev->type != type) {
        unsigned long line = (unsigned long)ev->start_mark.line + 1;
        unsigned long col = (unsigned long)ev->start_mark.column + 1;
        yaml_event_delete(ev);
        return fail_at_mark(r, line, col, "syntax error: unexpected YAML structure", "");
    }
    return GRAFT_OK;
}

/* Stream start, at most one document, stream end; the document's node is the root. */
graft_status cfg_parse_yaml(const cfg_where *w, const char *text, size_t len, cfg_node **root) {
    *root = NULL;
    yaml_reader r;
    memset(&r, 0, sizeof r);
    r.w = w;
    r.text = text;
    r.len = len;
    if (!yaml_parser_initialize(&r.parser)) {
        cfg_fail_at(w, 0, 0, NULL, "out of memory");
        return GRAFT_ERR_NOMEM;
    }
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, len);

    cfg_node *node = NULL;
    yaml_event_t ev;
    graft_status s = expect_event(&r, YAML_STREAM_START_EVENT, &ev);
    if (s == GRAFT_OK) {
        yaml_event_delete(&ev);
        s = next_event(&r, &ev);
    }
    if (s == GRAFT_OK && ev.type == YAML_DOCUMENT_START_EVENT) {
        yaml_event_delete(&ev);
        s = next_event(&r, &ev);
        if (s == GRAFT_OK) {
            s = build_node(&r, &ev, 0, &node);
            yaml_event_delete(&ev);
        }
        if (s == GRAFT_OK) s = expect_event(&r, YAML_DOCUMENT_END_EVENT, &ev);
        if (s == GRAFT_OK) {
            yaml_event_delete(&ev);
            s = next_event(&r, &ev);
        }
        if (s == GRAFT_OK && ev.type == YAML_DOCUMENT_START_EVENT) {
            unsigned long line = (unsigned long)ev.start_mark.line + 1;
            unsigned long col = (unsigned long)ev.start_mark.column + 1;
            char msg[160];
            snprintf(msg, sizeof msg,
                     "multiple YAML documents are not supported (a second one starts here)");
            yaml_event_delete(&ev);
            s = fail_at_mark(&r, line, col, msg, "");
        }
    }
    if (s == GRAFT_OK) {
        if (ev.type != YAML_STREAM_END_EVENT) {
            unsigned long line = (unsigned long)ev.start_mark.line + 1;
            unsigned long col = (unsigned long)ev.start_mark.column + 1;
            s = fail_at_mark(&r, line, col, "syntax error: unexpected YAML structure", "");
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&r.parser);
    if (s != GRAFT_OK) {
        cfg_node_free(node);
        return s;
    }
    *root = node;
    return GRAFT_OK;
}
