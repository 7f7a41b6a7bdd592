/*
 * edit_distance.c - Levenshtein distance, for "did you mean" suggestions (commands, names).
 *
 * The classic dynamic programme keeps one row of the table: row[j] is the distance between
 * the first i bytes of the longer string and the first j of the shorter one. Names are short,
 * so the row lives on the stack; longer strings get it from the heap.
 */
#include <stdint.h>
#include <stdlib.h>

#include "llmos/base.h"

#define ROW_ON_STACK 128

size_t llmos_edit_distance(const char *a, size_t na, const char *b, size_t nb)
{
    if (nb > na) { /* the row runs over the shorter string */
        const char *t = a;
        a = b;
        b = t;
        size_t tn = na;
        na = nb;
        nb = tn;
    }
    size_t stack_row[ROW_ON_STACK + 1];
    size_t *row = stack_row;
    if (nb > ROW_ON_STACK) {
        row = malloc((nb + 1) * sizeof *row);
        if (!row)
            return SIZE_MAX;
    }
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0]; /* distance(a[0..i-1), b[0..j-1)) */
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]); /* substitute (or keep) */
            if (up + 1 < best)                           /* delete a[i-1] */
                best = up + 1;
            if (row[j - 1] + 1 < best) /* insert b[j-1] */
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    size_t d = row[nb];
    if (row != stack_row)
        free(row);
    return d;
}
