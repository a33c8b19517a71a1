/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Name validation and escaping (see names.h for the rules).  The UTF-8
 * check rejects overlong forms, surrogates and code points past U+10FFFF,
 * so a name that passes is printable by h5dump and h5py alike.
 */
#include <string.h>

#include "io/names.h"

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        len = 2, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int ckpt__name_check_n(const char *name, size_t len, const char *what, ckpt__err *err)
{
    if (!name)
        return ckpt__err_set(err, CKPT_EINVAL, "%s is NULL", what);
    if (len == 0)
        return ckpt__err_set(err, CKPT_EINVAL, "%s is empty", what);
    if (len > CKPT_MAX_NAME)
        return ckpt__err_set(err, CKPT_EINVAL, "%s is %zu bytes long (at most %d)", what, len,
                             CKPT_MAX_NAME);
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x20 || s[i] == 0x7F)
            return ckpt__err_set(err, CKPT_EINVAL,
                                 "%s has control character 0x%02x at byte %zu", what, s[i], i);
        size_t k = utf8_len(s + i, len - i);
        if (k == 0)
            return ckpt__err_set(err, CKPT_EINVAL, "%s is not valid UTF-8 at byte %zu", what,
                                 i);
        i += k;
    }
    return 0;
}

int ckpt__name_check(const char *name, const char *what, ckpt__err *err)
{
    if (!name)
        return ckpt__err_set(err, CKPT_EINVAL, "%s is NULL", what);
    size_t len = strnlen(name, CKPT_MAX_NAME + 1);
    return ckpt__name_check_n(name, len, what, err);
}

void ckpt__name_escape(const char *name, char *out)
{
    size_t o = 0;
    for (size_t i = 0; name[i]; i++) {
        char c = name[i];
        if (c == '%' || c == '/' || (i == 0 && c == '.')) {
            static const char hex[] = "0123456789ABCDEF";
            out[o++] = '%';
            out[o++] = hex[(unsigned char)c >> 4];
            out[o++] = hex[(unsigned char)c & 15];
        } else {
            out[o++] = c;
        }
    }
    out[o] = '\0';
}

const char *ckpt__name_printable(const char *name, char *out, size_t cap)
{
    if (!name)
        return "(null)";
    const unsigned char *s = (const unsigned char *)name;
    size_t n = strnlen(name, 4 * CKPT_MAX_NAME), o = 0;
    for (size_t i = 0; i < n && o + 5 < cap;) {
        size_t k = s[i] < 0x20 || s[i] == 0x7F ? 0 : utf8_len(s + i, n - i);
        if (k == 0) {
            out[o++] = '?';
            i++;
        } else {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
    return out;
}
