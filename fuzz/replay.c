/*
 * replay.c - run a fuzz target over its seed corpus without libFuzzer.
 *
 * Linked with each fuzz/fuzz_<name>.c in ordinary (gcc) builds so that ctest feeds every file
 * of fuzz/corpus/<name>/ to LLVMFuzzerTestOneInput: the corpus, including inputs that once
 * crashed, stays a regression test even where clang is not used.
 *
 * usage: fuzz_<name> DIR_OR_FILE...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "llmos/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    llmos_buf b = {0};
    if (llmos_file_read_all(path, (size_t)1 << 30, &b) != LLMOS_OK) {
        fprintf(stderr, "replay: %s\n", llmos_errmsg());
        return 1;
    }
    /* Give the target an exact-size heap copy so ASan sees reads past the end. */
    uint8_t *copy = malloc(b.len ? b.len : 1);
    if (!copy) {
        buf_free(&b);
        return 1;
    }
    if (b.len)
        memcpy(copy, b.data, b.len);
    LLVMFuzzerTestOneInput(copy, b.len);
    free(copy);
    buf_free(&b);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: no such file or directory\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            failed += run_file(argv[i]);
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d)
            return 1;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            failed += run_file(path);
            files++;
        }
        closedir(d);
    }
    printf("replay: %d input(s), %d unreadable\n", files, failed);
    if (files == 0) {
        fprintf(stderr, "replay: empty corpus\n");
        return 1;
    }
    return failed ? 1 : 0;
}
