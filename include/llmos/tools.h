/*
 * llmos/tools.h - the built-in tools the kernel offers to models, and the exact calculator's
 * engine.
 *
 * Each tool is one file in src/tools/ exporting one descriptor (llmos/kernel.h's ktool: name,
 * description, JSON Schema of its arguments, capability, whether its output is trusted, and
 * its run function over a narrow ktool_env), and one line in the kernel's table:
 *   tool_calculator       evaluate an arithmetic expression exactly (compute)
 *   tool_send_message     deliver a text to the user (message)
 *   tool_ask_quarantined  ask the quarantined model about an untrusted handle (quarantine)
 *   the memory calls (memory), MemGPT's, on the calling principal's memory:
 *     tool_core_memory_append, tool_core_memory_replace   edit a core block (always in view)
 *     tool_conversation_search                            search everything said (recall)
 *     tool_archival_memory_insert, _search                keep and find passages (archival)
 *   the workspace tools, on the calling process's own workspace (docs/tools.md):
 *     tool_python   run Python 3 code in the sandbox (exec; untrusted output)
 *     tool_shell    run a sh command line in the sandbox (exec; untrusted output)
 *     tool_files    list, read, write, patch workspace files (read; untrusted output)
 *   tool_browser    fetch a web page as text, SSRF-guarded (read; untrusted; llmos/browser.h)
 * and, made at run time from the user's servers file: mcp, the MCP servers' tools (exec;
 * untrusted; llmos/mcp.h's mcp_syscall_tool).
 *
 * The calculator evaluates one arithmetic expression. Integers and rationals are exact (GMP):
 * decimal literals are exact fractions, so 0.1 + 0.2 is exactly 3/10. Irrational functions
 * (sqrt, exp, ln, sin, ...) are computed with MPFR at CALC_PRECISION_BITS bits and printed to
 * CALC_REAL_DIGITS significant digits, correctly rounded, trailing zeros trimmed.
 *
 * Syntax: numbers (123, 1.5, 2e-3, 0xff), + - * / ^ (also **; right associative), // (floor
 * division), % (modulo, sign of the divisor), postfix ! (factorial), unary minus, parentheses,
 * constants pi and e, and functions: sqrt cbrt exp ln log (1 or 2 args: log(x, base)) log2
 * log10 sin cos tan asin acos atan atan2 sinh cosh tanh asinh acosh atanh pow abs floor ceil
 * round gcd lcm mod factorial binomial (alias choose) min max.
 *
 * Results: an integer prints as its digits; a fraction as "p/q = d" when its decimal is exact
 * and short, else "p/q ≈ d" with 10 significant digits; an irrational value as its decimal.
 *
 * Limits, checked before computing: input at most CALC_MAX_INPUT bytes, nesting at most
 * CALC_MAX_DEPTH, every exact value at most CALC_MAX_DIGITS decimal digits (numerator and
 * denominator each), so 10^10^10 or 100000! fail at once with "result too large".
 */
#ifndef LLMOS_TOOLS_H
#define LLMOS_TOOLS_H

#include <jansson.h>
#include <stddef.h>

#include "llmos/base.h"
#include "llmos/kernel.h"

#define CALC_PRECISION_BITS 256
#define CALC_REAL_DIGITS    50
#define CALC_MAX_INPUT      4096
#define CALC_MAX_DEPTH      64
#define CALC_MAX_DIGITS     10000

/* Evaluate the NUL-terminated expression `expr` and append the result text to `out`.
 * Errors (nothing appended): LLMOS_ERR_INVALID for syntax errors, unknown names, division by
 * zero and domain errors, LLMOS_ERR_LIMIT for a too long or deep input or a too large result;
 * the detail message says what and at which column (1-based), e.g.
 * "unexpected ')' at column 7". */
LLMOS_API LLMOS_NODISCARD llmos_err calc_eval(const char *expr, llmos_buf *out);

/* The same for expr[0..len) (need not be NUL-terminated; a NUL byte inside is an error). */
LLMOS_API LLMOS_NODISCARD llmos_err calc_eval_n(const char *expr, size_t len, llmos_buf *out);

/* The tools' descriptors (see above). */
LLMOS_API extern const ktool tool_calculator;
LLMOS_API extern const ktool tool_send_message;
LLMOS_API extern const ktool tool_ask_quarantined;
LLMOS_API extern const ktool tool_core_memory_append;
LLMOS_API extern const ktool tool_core_memory_replace;
LLMOS_API extern const ktool tool_conversation_search;
LLMOS_API extern const ktool tool_archival_memory_insert;
LLMOS_API extern const ktool tool_archival_memory_search;
LLMOS_API extern const ktool tool_python;
LLMOS_API extern const ktool tool_shell;
LLMOS_API extern const ktool tool_files;
LLMOS_API extern const ktool tool_browser;

#endif
