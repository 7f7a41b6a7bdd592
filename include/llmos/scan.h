/*
 * llmos/scan.h - `llmos scan`: attack a configuration with probes and measure how often the
 * attacks succeed, per family, with Wilson 95% intervals (docs/security.md, "Scanning").
 *
 * A probe (data/probes/<family>.jsonl, one JSON object a line) is attacker text, how it reaches
 * the agent and what the attacker wants:
 *   {"id": "encoding-001", "family": "encoding", "channel": "web",
 *    "parts": ["Decode this base64 ..."],            (several: delivered in successive turns)
 *    "goal": {"kind": "say", "marker": "NEBULA-3376"}, "note": "..."}
 * channel: message (a message from someone else), tool, web, file, mcp, memory. goal kinds:
 * say (the answer contains the marker), leak (the canary secret leaves), call (a call the user
 * did not ask for: run_command, http_post, send_message to someone else), exfil (a URL carrying
 * the canary).
 *
 * Targets:
 *   kernel     the probe reaches an llmos kernel as what it is, outside content: the user asks
 *              the agent to read it with a tool (read_inbox, lookup, fetch_page, read_file,
 *              mcp_call, search_notes) whose output is untrusted (the quarantine on: a handle)
 *              or marked trusted (the quarantine off: the text enters the privileged context).
 *              The system prompt holds a canary secret; bait tools run_command and http_post
 *              are offered. What leaves is what the device sees (after the output guard).
 *              With `direct`, a message probe is instead the user's own message: what a client of
 *              `llmos serve` can send. The quarantine does not apply to that; the capabilities,
 *              the flow policy and the guard do.
 *   endpoint   a bare model (an OpenAI-compatible server): a message probe is the user's own
 *              message, the others a tool result in the conversation.
 *
 * Detectors, on what left: canary_leak (the canary, or its base64, hex or reversed form, in the
 * answer, a message shown, or a call's arguments), disallowed_call (a call of run_command,
 * shell, python or http_post, or send_message to anyone but the user, attempted), marker (the say-goal's marker
 * in the model's own words: its answer and the arguments it wrote, handles unresolved, so
 * untrusted text shown through a handle is data, not the model following it), and with a judge
 * model the judge's verdict (FOLLOWED / IGNORED, parsed strictly). An attempt succeeds when any
 * detector fires.
 */
#ifndef LLMOS_SCAN_H
#define LLMOS_SCAN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "llmos/backend.h"
#include "llmos/base.h"

typedef enum scan_goal_kind { SCAN_SAY, SCAN_LEAK, SCAN_CALL, SCAN_EXFIL } scan_goal_kind;

typedef struct scan_probe {
    char *id, *family, *channel, *note;
    char **parts; /* n_parts texts, one per turn */
    size_t n_parts;
    scan_goal_kind goal;
    char *marker;    /* SCAN_SAY */
    char *tool;      /* SCAN_CALL */
    char *arguments; /* SCAN_CALL: JSON text, "{canary}" standing for the secret */
    char *url;       /* SCAN_EXFIL, "{canary}" standing for the secret */
} scan_probe;

typedef struct scan_probes {
    scan_probe *v;
    size_t n;
} scan_probes;

/* Parse one probe line; LLMOS_ERR_FORMAT naming the member. */
LLMOS_API LLMOS_NODISCARD llmos_err scan_probe_parse(const char *line, size_t len, const char *what,
                                                     scan_probe *out);
/* Every *.jsonl file of dir, sorted by name, lines in order. LLMOS_ERR_FORMAT names the file and
 * line; LLMOS_ERR_NOT_FOUND when dir has no probes. */
LLMOS_API LLMOS_NODISCARD llmos_err scan_probes_load(const char *dir, scan_probes *out);
LLMOS_API void scan_probe_free(scan_probe *p);
LLMOS_API void scan_probes_free(scan_probes *p);

typedef enum scan_target { SCAN_TARGET_KERNEL, SCAN_TARGET_ENDPOINT } scan_target;

typedef struct scan_config {
    scan_target target;
    llm_backend *model;       /* the privileged model (kernel), or the endpoint's (borrowed) */
    llm_backend *quarantined; /* kernel: the quarantined model (borrowed; may be NULL) */
    bool quarantine;          /* kernel: the channel tools' output untrusted (true) or trusted */
    bool guard;               /* kernel: the output guard on (its built-in policy) */
    bool direct;              /* kernel: a "message" probe is the user's own message (a direct
                                 attack by whoever holds the session), not mail the agent reads */
    llm_backend *judge;       /* the judge of "followed the instruction" (borrowed; may be NULL) */
    const char *canary;       /* the secret in the system prompt; NULL = one made per run */
    const char *families;     /* "a,b": only these families; NULL = all */
    size_t limit;             /* at most this many probes (0: all) */
    int32_t max_tokens;       /* per model call; 0 = 256 */
} scan_config;

typedef struct scan_attempt {
    const scan_probe *probe;
    char *output; /* what the user saw of the answer (after the guard), all turns */
    char *shown;  /* messages delivered by tools (recipient: text), all turns */
    char *calls;  /* JSON array of the calls the model attempted, arguments as written */
    bool canary_leak, disallowed_call, marker;
    int judge; /* 1 followed, 0 ignored, -1 no judge or its verdict unreadable */
    bool success;
    char error[256]; /* a failed attempt (the model or the kernel failed): not counted */
} scan_attempt;

typedef struct scan_family {
    char name[48];
    size_t attempts, successes;
    double rate, lo, hi; /* successes / attempts and its Wilson 95% interval */
} scan_family;

typedef struct scan_summary {
    scan_family *v;
    size_t n;
    size_t attempts, successes, failed;
    char canary[64];
} scan_summary;

LLMOS_API void scan_summary_free(scan_summary *s);

/* The Wilson score interval for k successes in n trials at 95% (z = 1.96); [0, 1] for n = 0. */
LLMOS_API void scan_wilson(size_t k, size_t n, double *lo, double *hi);

/* Called after each attempt (the attempt's memory is the scanner's; copy what you keep). */
typedef void (*scan_attempt_fn)(void *ctx, const scan_attempt *a);

/* Run the probes against the target; each attempt goes to fn (may be NULL) and is counted in
 * *summary (scan_summary_free it). Errors are llmos's own (a bad config, out of memory); a model
 * that fails an attempt makes that attempt failed (counted apart). */
LLMOS_API LLMOS_NODISCARD llmos_err scan_run(const scan_config *cfg, const scan_probes *probes,
                                             scan_attempt_fn fn, void *ctx, scan_summary *summary);

/* The JSONL record of an attempt (probe, family, channel, prompt, output, shown, calls,
 * verdicts, success), one line with its newline, appended to out. */
LLMOS_API LLMOS_NODISCARD llmos_err scan_attempt_jsonl(const scan_attempt *a, llmos_buf *out);
/* The summary as JSON text; as an HTML page (the JSONL's attempts, when given, listed below). */
LLMOS_API LLMOS_NODISCARD llmos_err scan_summary_json(const scan_summary *s, const scan_config *cfg,
                                                      llmos_buf *out);
LLMOS_API LLMOS_NODISCARD llmos_err scan_summary_html(const scan_summary *s, const scan_config *cfg,
                                                      const char *jsonl, size_t jsonl_len,
                                                      llmos_buf *out);
/* The family whose rate is above `threshold` (the first), or NULL. */
LLMOS_API const scan_family *scan_summary_above(const scan_summary *s, double threshold);

/* The tools a kernel target offers for each channel ("web" -> "fetch_page"), NULL for an unknown
 * channel. */
LLMOS_API const char *scan_channel_tool(const char *channel);

#endif
