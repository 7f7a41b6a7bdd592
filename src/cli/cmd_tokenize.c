/*
 * cmd_tokenize.c - `llmos tokenize`: show how a model's tokenizer splits a text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmos/tokenizer.h"

/* Print bytes between quotes: valid UTF-8 printable characters as they are, \n \t \r \\ \'
 * escaped, every other byte as \xNN. */
static void print_escaped(const char *s, size_t n)
{
    putchar('\'');
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c == '\\' || c == '\'')
            printf("\\%c", c);
        else if (k == 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0))
            printf("\\x%02X", c);
        else {
            fwrite(s + i, 1, k, stdout);
            i += k;
            continue;
        }
        i++;
    }
    putchar('\'');
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL;
    bool ids_only = false, special = false, add_special = false, end_opts = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!end_opts && strcmp(a, "--") == 0)
            end_opts = true;
        else if (!end_opts && strcmp(a, "--model") == 0) {
            if (i + 1 >= argc)
                return cli_usage_error("tokenize", "--model needs a file name");
            model = argv[++i];
        } else if (!end_opts && strcmp(a, "--ids") == 0)
            ids_only = true;
        else if (!end_opts && strcmp(a, "--special") == 0)
            special = true;
        else if (!end_opts && strcmp(a, "--add-special") == 0)
            add_special = true;
        else if (!end_opts && a[0] == '-' && a[1] != '\0')
            return cli_usage_error("tokenize", "unknown option '%s'", a);
        else if (text)
            return cli_usage_error("tokenize",
                                   "give one TEXT argument (quote it), got a second "
                                   "one: '%s'",
                                   a);
        else
            text = a;
    }
    if (!model)
        return cli_usage_error("tokenize", "--model FILE is required");
    if (!text)
        return cli_usage_error("tokenize", "no TEXT given (use - to read standard input)");

    llmos_buf input;
    buf_init(&input);
    llmos_err err = LLMOS_OK;
    if (strcmp(text, "-") == 0) {
        char chunk[65536];
        size_t n;
        while (!err && (n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
            err = buf_append(&input, chunk, n);
        if (!err && ferror(stdin))
            err = llmos_fail(LLMOS_ERR_IO, "tokenize: reading standard input failed");
    } else {
        err = buf_puts(&input, text);
    }
    if (err) {
        buf_free(&input);
        return cli_report(err);
    }

    tokenizer *t = NULL;
    err = cli_resolve_model(&model);
    if (!err)
        err = tok_load_file(model, &t);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!err)
        err = tok_encode(t, input.data ? input.data : "", input.len,
                         (special ? TOK_PARSE_SPECIAL : 0u) | (add_special ? TOK_ADD_SPECIAL : 0u),
                         &ids, &n_ids);
    if (err) {
        buf_free(&input);
        tok_free(t);
        return cli_report(err);
    }
    llmos_buf piece;
    buf_init(&piece);
    for (size_t i = 0; i < n_ids && !err; i++) {
        if (ids_only) {
            printf(i ? " %d" : "%d", (int)ids[i]);
            continue;
        }
        buf_clear(&piece);
        err = tok_token_bytes(t, ids[i], &piece);
        if (err)
            break;
        printf("%d\t", (int)ids[i]);
        print_escaped(piece.data ? piece.data : "", piece.len);
        putchar('\n');
    }
    if (ids_only && !err)
        putchar('\n');
    buf_free(&piece);
    buf_free(&input);
    free(ids);
    tok_free(t);
    if (err)
        return cli_report(err);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAILED;
}
