/*
 * testutil.h - what many tests need: run the llmos program and capture its output, find the
 * shared reference data or skip visibly without it, make and remove temporary directories.
 * Linked into every test.
 */
#ifndef LLMOS_TESTUTIL_H
#define LLMOS_TESTUTIL_H

#include "llmos/base.h"

/* Run `[ENV...] llmos ARGS` through the shell (fmt is a shell fragment: quote arguments
 * yourself; a leading "VAR=value " sets the environment). stdout goes to *out, stderr to
 * *err (either may be NULL to discard). Returns the exit status, or -1 if the program did not
 * exit normally. Uses LLMOS_BIN, which ctest sets to the built program. */
int tu_run_llmos(llmos_buf *out, llmos_buf *err, const char *fmt, ...) LLMOS_PRINTF(3, 4);

/* The shared reference data (models, vocabularies, chat templates) lives in the folder named
 * by LLMOS_TESTDATA, which ctest sets from the CMake cache variable of the same name (default:
 * ../shared/testdata beside the source tree). Tests never download it.
 *
 * Inside a test: the path of `relative` (a file or folder under the data) in out[size],
 * returned. When the data folder or that file is absent it says which file it looked for and
 * where the data lives, appends "<test program>: <reason>" to the file named by LLMOS_SKIP_LOG
 * (when set; CI fails on any line there) and skips the test with cmocka's skip(), which does
 * not return. Not for group setups, which cannot skip: they use tu_testdata_find. */
const char *tu_testdata_path(char *out, size_t size, const char *relative);

/* For group setups: the same path in out[size], or false (quietly) when it is absent. The
 * tests that need what the setup loaded call tu_testdata_path for the same file, which skips
 * them visibly. */
bool tu_testdata_find(char *out, size_t size, const char *relative);

/* Inside a test: say why on stderr (a printf format) and skip, for a reason other than the
 * test data (a missing tool, program or CPU feature). Not written to LLMOS_SKIP_LOG. */
void tu_skip(const char *fmt, ...) LLMOS_PRINTF(1, 2);

/* mkdtemp under /tmp named llmos-test-<tag>-XXXXXX; the path goes to out[size]. */
bool tu_mkdtemp(const char *tag, char *out, size_t size);
/* rm -rf path (only paths under /tmp/llmos-test-, as a guard). */
void tu_rmrf(const char *path);

#endif
