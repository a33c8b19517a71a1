/* SPDX-License-Identifier: Apache-2.0 */
/* See table.h. */
#include "tools/table.h"

/* Length of the valid UTF-8 sequence at s, or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n = c < 0x80                  ? 1
               : c >= 0xC2 && c <= 0xDF ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                         : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* Display columns of a UTF-8 string, one per code point.  Wide (East
 * Asian) characters take two columns on a terminal and will shift a row;
 * counting them would need the locale, which a tool's output should not
 * depend on. */
size_t columns(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Writes s as a quoted JSON string: '"', '\' and control characters
 * escaped, UTF-8 passed through, any other byte replaced by U+FFFD. */
void json_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', f);
            fputc(*p++, f);
        } else if (*p < 0x20 || *p == 0x7F) {
            fprintf(f, "\\u%04x", (unsigned)*p++);
        } else {
            size_t n = utf8_seq(p);
            if (n == 0) {
                fputs("\\ufffd", f);
                p++;
            } else {
                fwrite(p, 1, n, f);
                p += n;
            }
        }
    }
    fputc('"', f);
}

/* "1.5 GiB": binary units with one decimal; plain bytes under 1 KiB. */
void human(uint64_t n, char out[32])
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(out, 32, "%llu B", (unsigned long long)n);
        return;
    }
    double v = (double)n / 1024.0;
    int u = 0;
    /* 1023.95 would print as "1024.0": move to the next unit instead. */
    while (v >= 1023.95 && u < 5) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, 32, "%.1f %s", v, units[u]);
}

/* "2024-05-01 13:07:55" in the local time zone. */
void local_time(int64_t unix_s, char out[32])
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (!localtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(out, 32, "@%lld", (long long)unix_s);
}

/* "[1024, 768]"; "[]" for a scalar.  Also valid JSON. */
void shape_text(int ndim, const int64_t *shape, char *out, size_t cap)
{
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < cap)
        snprintf(out + k, cap - k, "]");
}



/* Appends one formatted cell; -1 when out of memory (the table stays
 * consistent and must still be freed). */
int cell(table *t, const char *fmt, ...)
{
    if (t->ncols < 1 || t->ncols > TABLE_MAX_COLS)
        return -1;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **v = realloc(t->cells, cap * sizeof *v);
        if (!v)
            return -1;
        t->cells = v;
        t->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = len < 0 ? NULL : malloc((size_t)len + 1);
    if (!s)
        return -1;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    t->cells[t->n++] = s;
    return 0;
}

void table_free(table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->n = t->cap = 0;
}

static void pad(FILE *f, size_t n)
{
    while (n--)
        fputc(' ', f);
}

static void print_row(FILE *f, const table *t, const char *const *row,
                             const size_t *width)
{
    for (int c = 0; c < t->ncols; c++) {
        size_t gap = width[c] - columns(row[c]);
        if (c)
            fputs("  ", f);
        if (t->align[c] == 'r')
            pad(f, gap);
        fputs(row[c], f);
        /* No trailing blanks after the last column. */
        if (t->align[c] != 'r' && c + 1 < t->ncols)
            pad(f, gap);
    }
    fputc('\n', f);
}

/* Prints the header and every complete row. */
void table_print(FILE *f, const table *t)
{
    size_t width[TABLE_MAX_COLS] = {0};
    if (t->ncols < 1 || t->ncols > TABLE_MAX_COLS)
        return;
    for (int c = 0; c < t->ncols; c++)
        width[c] = columns(t->head[c]);
    for (size_t i = 0; i < t->n; i++) {
        size_t w = columns(t->cells[i]);
        size_t c = i % (size_t)t->ncols;
        if (w > width[c])
            width[c] = w;
    }
    print_row(f, t, t->head, width);
    for (size_t i = 0; i + (size_t)t->ncols <= t->n; i += (size_t)t->ncols)
        print_row(f, t, (const char *const *)&t->cells[i], width);
}
