/*
 * doubles.h - TEST DOUBLES: stand-ins that tests use to drive control flow deterministically.
 * They are linked into the tests only, never into libllmos or the program.
 *
 * scripted_test_backend: an llm_backend that answers from a script instead of a model. Each
 * step is JSON text:
 *   {"content": "...", "tool_calls": [{"name": "...", "arguments": {...}}], "tokens": N,
 *    "pieces": P, "delay_ms": D}
 * (all optional; tokens is what it reports as completion_tokens, default 1; prompt_tokens is
 * always 0; the content is streamed in P pieces with D ms before each, and the request's cancel
 * flag is checked before each piece). When the script runs out it repeats the last step if
 * `repeat`, else fails with LLMOS_ERR_LIMIT. Every request it receives is recorded byte for
 * byte.
 */
#ifndef LLMOS_TESTS_DOUBLES_H
#define LLMOS_TESTS_DOUBLES_H

#include "llmos/backend.h"
#include "llmos/scan.h"

LLMOS_NODISCARD llmos_err scripted_test_backend_new(const char *const *steps, size_t n_steps,
                                                    bool repeat, llm_backend **out);
/* Everything it was sent, all requests concatenated: the messages and tools JSON as dumped. */
const char *scripted_test_backend_sent(llm_backend *b, size_t *len);
/* Requests answered so far. */
size_t scripted_test_backend_calls(llm_backend *b);
/* The context window it reports (default 1 Mi tokens); it counts a prompt as llm_count_prompt
 * estimates (about four bytes a token plus framing), so tests of the context manager can
 * choose a small window. */
void scripted_test_backend_set_context(llm_backend *b, size_t tokens);

/* obedient_test_backend: a worst-case model for `llmos scan` (tests/doubles/obedient_backend.c):
 * it obeys every probe of `probes` (borrowed) whose parts all appear in what it is sent, once,
 * and otherwise does the user's task as an agent would (calls the tool the user named, asks the
 * quarantined model about a handle, shows the answer's handle with send_message, answers). */
LLMOS_NODISCARD llmos_err obedient_test_backend_new(const scan_probes *probes, llm_backend **out);

#endif
