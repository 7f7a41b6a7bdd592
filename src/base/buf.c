/*
 * buf.c - a growable byte string.
 *
 * Capacity doubles (amortised O(1) appends) and one byte beyond len is always reserved for a
 * terminating NUL, so text buffers can be used as C strings without a separate finish step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/base.h"

void buf_init(llmos_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_free(llmos_buf *b)
{
    if (!b)
        return;
    free(b->data);
    buf_init(b);
}

llmos_err buf_reserve(llmos_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return llmos_fail(LLMOS_ERR_LIMIT, "buffer: %zu + %zu bytes overflows size_t", b->len,
                          extra);
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return LLMOS_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return llmos_fail(LLMOS_ERR_NOMEM, "buffer: cannot grow to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return LLMOS_OK;
}

llmos_err buf_append(llmos_buf *b, const void *data, size_t n)
{
    llmos_err err = buf_reserve(b, n);
    if (err)
        return err;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return LLMOS_OK;
}

llmos_err buf_puts(llmos_buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

llmos_err buf_putc(llmos_buf *b, char c)
{
    return buf_append(b, &c, 1);
}

llmos_err buf_vprintf(llmos_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return llmos_fail(LLMOS_ERR_INVALID, "buffer: bad format string \"%s\"", fmt);
    llmos_err err = buf_reserve(b, (size_t)n);
    if (err)
        return err;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return LLMOS_OK;
}

llmos_err buf_printf(llmos_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    llmos_err err = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return err;
}

void buf_clear(llmos_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *buf_detach(llmos_buf *b, size_t *len)
{
    char *p = b->data;
    if (!p)
        p = calloc(1, 1);
    if (len)
        *len = b->len;
    buf_init(b);
    return p;
}
