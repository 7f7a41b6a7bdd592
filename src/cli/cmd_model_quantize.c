/*
 * cmd_model_quantize.c - `llmos model quantize IN OUT TYPE`: write a quantized copy of a model.
 *
 * The work is quantize_model's (llmos/quantize.h); this file parses the command line, makes
 * the thread pool and prints one progress line per tensor on standard error. Ctrl-C stops the
 * work, leaves no temporary file behind and exits with status 130.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "llmos/quantize.h"

static void progress(void *user, size_t index, size_t n, const char *name, ggml_type from,
                     ggml_type to, double seconds)
{
    (void)user;
    fprintf(stderr, "[%4zu/%4zu] %-32s %-5s -> %-5s %7.2f s\n", index + 1, n, name,
            quant_type_name(from), quant_type_name(to), seconds);
}

int cmd_model_quantize(int argc, char **argv)
{
    const char *pos[3] = {0};
    int n_pos = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            char *end;
            errno = 0;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || errno || *end || v < 1 || v > 1024)
                return cli_usage_error("model quantize", "%s takes a thread count (1-1024)", a);
            threads = (int)v;
            i++;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("model quantize", "unknown option '%s'", a);
        } else if (n_pos == 3) {
            return cli_usage_error("model quantize", "too many arguments ('%s')", a);
        } else {
            pos[n_pos++] = a;
        }
    }
    if (n_pos != 3)
        return cli_usage_error("model quantize", "give IN OUT TYPE (e.g. model-f16.gguf "
                                                 "model-q4_k_m.gguf Q4_K_M)");
    if (!quantize_target_known(pos[2])) {
        size_t n;
        const char *const *names = quantize_target_names(&n);
        fprintf(stderr, "llmos model quantize: unknown TYPE '%s'; one of:", pos[2]);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %s", names[i]);
        fprintf(stderr, "\n");
        return CLI_USAGE;
    }
    llmos_pool *pool = NULL;
    llmos_err err = pool_new(threads, &pool);
    if (err)
        return cli_report(err);
    quantize_params p = {
        .target = pos[2], .pool = pool, .progress = progress, .cancel = cli_catch_sigint()};
    double t0 = llmos_time_now();
    err = quantize_model(pos[0], pos[1], &p);
    pool_free(pool);
    if (err)
        return cli_report(err);
    struct stat in_st, out_st;
    if (stat(pos[0], &in_st) == 0 && stat(pos[1], &out_st) == 0)
        fprintf(stderr, "llmos model quantize: wrote %s (%s): %.1f MiB from %.1f MiB in %.1f s\n",
                pos[1], pos[2], (double)out_st.st_size / (1 << 20),
                (double)in_st.st_size / (1 << 20), llmos_time_now() - t0);
    return CLI_OK;
}
