/*
 * testutil.h - what many tests need: run the llmos program and capture its output, find the
 * shared reference data, make and remove temporary directories. Linked into every test.
 */
#ifndef LLMOS_TESTUTIL_H
#define LLMOS_TESTUTIL_H

#include "llmos/base.h"

/* Run `[ENV...] llmos ARGS` through the shell (fmt is a shell fragment: quote arguments
 * yourself; a leading "VAR=value " sets the environment). stdout goes to *out, stderr to
 * *err (either may be NULL to discard). Returns the exit status, or -1 if the program did not
 * exit normally. Uses LLMOS_BIN, which ctest sets to the built program. */
int tu_run_llmos(llmos_buf *out, llmos_buf *err, const char *fmt, ...) LLMOS_PRINTF(3, 4);

/* The shared test data folder (LLMOS_TESTDATA) if it exists, else NULL: callers then skip with
 * a message saying so (tu_skip_without_testdata does both). */
const char *tu_testdata(void);
/* Path of a file under the test data folder in out[size]; false if the folder is absent. */
bool tu_testdata_path(char *out, size_t size, const char *relative);

/* mkdtemp under /tmp named llmos-test-<tag>-XXXXXX; the path goes to out[size]. */
bool tu_mkdtemp(const char *tag, char *out, size_t size);
/* rm -rf path (only paths under /tmp/llmos-test-, as a guard). */
void tu_rmrf(const char *path);

#endif
