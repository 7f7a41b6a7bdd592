/*
 * llmos/memory.h - memory: the user's store as llmos's parts open it, the embedder archival
 * memory uses, and what the kernel keeps there (its processes and the recall log).
 *
 *   home       where a user's data lives: $LLMOS_HOME, else $XDG_DATA_HOME/llmos, else
 *              ~/.local/share/llmos; the encrypted store is <home>/store, and the freshness
 *              records that catch an older copy of it put back are in <home>/freshness
 *   opening    memory_open unlocks (or creates) that store with the passphrase from the
 *              caller, $LLMOS_PASSPHRASE or a prompt the device supplies, and gives archival
 *              memory its embedder; memory_open_ephemeral makes a store that lives in memory
 *              only (the shell's --no-store), so that every device runs on a store
 *   embedders  the engine's (the mean of a GGUF model's last hidden states, "engine:<name>"):
 *              a model named, or the caller's own (the shell embeds with its chat model); the
 *              lexical one ("lexical-v1": hashed words and word pairs, which finds shared words,
 *              not meaning) only when asked for by name. A store remembers which embedder made
 *              its vectors (setting "archival.embedder" = "NAME DIM") and refuses another;
 *              memory_reembed moves it to a new one
 *   processes  the kernel's process records (one JSON object each) and the recall log (every
 *              user message and answer, searchable with FTS5), written through memory_proc_*
 *              and memory_recall_add so that the kernel never touches the schema
 *
 * docs/memory.md describes each piece, the context manager and paging with them.
 */
#ifndef LLMOS_MEMORY_H
#define LLMOS_MEMORY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/backend.h"
#include "llmos/base.h"
#include "llmos/storage.h"

/* The user's llmos home (see above); a static string, never NULL. */
LLMOS_API const char *memory_home(void);

/* How a device asks its user for a secret: write `prompt`, read one line without echo into
 * out[0..size) (NUL-terminated). LLMOS_ERR_CANCELLED when the user gave up (Ctrl-C). */
typedef llmos_err (*memory_ask_fn)(void *ctx, const char *prompt, char *out, size_t size);

typedef enum memory_embed {
    MEMORY_EMBED_DEFAULT, /* embed_model, else $LLMOS_EMBED_MODEL, else embed_backend, else
                             the lexical embedder if the store records it, else
                             embed_fallback_model; else refused, saying how to choose */
    MEMORY_EMBED_NONE,    /* no embedder (ps, kill, audit: no model load); archival add and
                             search then fail with a message saying so */
} memory_embed;

typedef struct memory_params {
    const char *home;        /* NULL = memory_home() */
    bool create;             /* create a missing store (the passphrase is asked twice) */
    const char *passphrase;  /* NULL = $LLMOS_PASSPHRASE, else asked through `ask` */
    const uint8_t *data_key; /* or the store's data key (32 bytes): an existing store only */
    memory_ask_fn ask;       /* NULL: a passphrase that is needed and missing is an error */
    void *ask_ctx;           /*   saying how to give one */
    memory_embed embed;      /* which embedder archival memory gets */
    const char *embed_model; /* GGUF file of the engine embedder, or "lexical" by name */
    const char *embed_fallback_model; /* the model to embed with when nothing is named and the
                                         store is not lexical ($LLMOS_MODEL for the CLI) */
    llm_backend *embed_backend;       /* with no model named: embed with this backend (borrowed; the
                                         shell's own model, as a fork) */
    bool check_embedder;              /* refuse a store whose memories another embedder made */
    bool archival_optional;           /* ...or, instead of refusing (or failing when embed_backend
                                         cannot embed), open it with archival memory off and say why
                                         in memory_note: the shell can still converse */
    bool ephemeral;                   /* a store in memory only (memory_open_ephemeral) with the
                                         embedder the rest of the parameters pick */
    bool start_over;                  /* a store whose database is gone starts over empty
                                         (store_options.start_over; `llmos memory reset`) */
    bool allow_rollback;              /* open a store older than its freshness record, loudly and
                                         audited (store_options.allow_rollback); also when
                                         $LLMOS_ALLOW_ROLLBACK is 1 */
} memory_params;

typedef struct memory memory;

/* Open the user's store as `p` says. A missing store without `create` is LLMOS_ERR_NOT_FOUND
 * naming the folder; a wrong passphrase LLMOS_ERR_AUTH; a refused embedder LLMOS_ERR_INVALID
 * naming the one to use. Close with memory_close. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_open(const memory_params *p, memory **out);
/* A store that lives in memory only, with the lexical embedder: nothing reaches the disk and
 * everything is gone at memory_close. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_open_ephemeral(memory **out);
/* The store (owned by m). */
LLMOS_API store *memory_store(memory *m);
/* "NAME DIM" of the embedder archival memory uses, or "none". */
LLMOS_API const char *memory_embedder_name(const memory *m);
/* Why archival memory is off (an embedder mismatch), "" when it is on. */
LLMOS_API const char *memory_note(const memory *m);
/* Re-embed every archival passage of the store (all principals) with m's embedder (the one
 * memory_open picked, the store's check skipped) and record it as the store's; *n passages. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_reembed(memory *m, size_t *n);
/* True for a store that lives in memory only. */
LLMOS_API bool memory_is_ephemeral(const memory *m);
LLMOS_API void memory_close(memory *m);

/* The lexical embedder "lexical-v1": each lower-cased word, and each pair of neighbouring
 * words, hashed (FNV-1a) to a signed slot of a 512-dimensional vector. Texts sharing words are
 * near; it knows nothing of meaning. Deterministic, no model needed. */
LLMOS_API const store_embedder *memory_lexical_embedder(void);

/* ---- the context manager (context.c) ---------------------------------------------------- */

typedef struct mctx_params {
    size_t window;   /* the model's context, tokens */
    size_t reserve;  /* tokens kept for the answer (at most half the window) */
    double pressure; /* share of the window at which the model is warned */
    double flush;    /* share at which the oldest messages are evicted (mpage_*) */
} mctx_params;

/* Defaults: reserve 512, pressure 0.70, flush 0.90; window unset. */
LLMOS_API mctx_params mctx_default_params(void);

/* How the model counts: the tokens a chat prompt of `messages` (+ `tools`) takes, template and
 * generation prompt included (llm_count_prompt). */
typedef struct mctx_counter {
    llmos_err (*count_prompt)(void *ctx, const json_t *messages, const json_t *tools, size_t *n);
    void *ctx;
} mctx_counter;

typedef struct mctx_in {
    const char *system;          /* the system prompt */
    const json_t *core;          /* core memory blocks [{"label", "value"}], may be NULL */
    const char *summary;         /* the recursive summary of evicted messages, NULL or "" */
    size_t evicted;              /* how many messages the summary stands for */
    const json_t *queue;         /* the messages in context, oldest first, no system message */
    const json_t *tools;         /* offered tools (OpenAI shape), may be NULL */
    const char *pressure_notice; /* told to the model when over the pressure threshold */
} mctx_in;

typedef struct mctx_out {
    json_t *messages;    /* what the model sees (owned) */
    json_t *tools;       /* the tools offered (owned; maybe fewer, without descriptions) */
    size_t tokens;       /* the prompt's tokens, as the model counts them */
    size_t full_tokens;  /* what the whole context would take (before any degradation): the
                            measure for the pressure and flush thresholds */
    size_t fixed_tokens; /* what the system message and the tools take alone (no queue) */
    size_t reserve;      /* room left for the answer (the caller's max_tokens at most this) */
    size_t first_kept;   /* index in the queue of the oldest message kept */
    bool pressure;       /* the full context is over the pressure threshold */
    bool short_system;   /* the one-line system prompt was used */
    char notes[512];     /* what was left out, "" when nothing */
} mctx_out;

/* Lay out the context of `in` within p->window, degrading in the order context.c states when it
 * does not fit; LLMOS_ERR_CONTEXT naming the numbers when even the minimum does not fit. Free
 * *out with mctx_out_free. */
LLMOS_API LLMOS_NODISCARD llmos_err mctx_layout(const mctx_params *p, const mctx_counter *c,
                                                const mctx_in *in, mctx_out *out);
LLMOS_API void mctx_out_free(mctx_out *out);

/* ---- paging (paging.c) -------------------------------------------------------------------- */

/* How many of the oldest messages of `queue` to evict so that the rest counts at most `target`
 * tokens (with `fixed`, the system message alone, counted in), cut where the kept queue may
 * start (never at a tool result whose call would go). *n is 0 when nothing needs to go. */
LLMOS_API LLMOS_NODISCARD llmos_err mpage_plan(const mctx_counter *c, const json_t *fixed,
                                               const json_t *queue, size_t target, size_t *n);
/* The request that asks a model to fold `evicted` into `summary`: a messages array (new
 * reference) for the model to answer in at most `max_words` words. */
LLMOS_API json_t *mpage_summary_request(const char *summary, const json_t *evicted,
                                        size_t max_words);
/* A summary made without a model, for when the model's would not fit or the model failed: the
 * old summary and one line per evicted message (its role and the start of its text), cut to
 * max_bytes from the front (the newest lines stay). *out malloc'd (caller frees). */
LLMOS_API LLMOS_NODISCARD llmos_err mpage_summary_fallback(const char *summary,
                                                           const json_t *evicted, size_t max_bytes,
                                                           char **out);

/* ---- what the kernel keeps ---------------------------------------------------------------- */

/* A new process id (1, 2, ...; never reused in a store). */
LLMOS_API LLMOS_NODISCARD llmos_err memory_proc_new_pid(store *s, int64_t *pid);
/* The highest pid handed out so far (0 when none). */
LLMOS_API LLMOS_NODISCARD llmos_err memory_proc_last_pid(store *s, int64_t *pid);
/* Save the record of process pid (a JSON object, borrowed), replacing the last one. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_proc_save(store *s, int64_t pid, const json_t *record);
/* The record of process pid (new reference, caller decrefs); LLMOS_ERR_NOT_FOUND when there is
 * none; LLMOS_ERR_FORMAT when it is not a JSON object. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_proc_load(store *s, int64_t pid, json_t **record);
/* Append a message of process pid of `principal` to the recall log (conversation
 * "proc:<pid>"). */
LLMOS_API LLMOS_NODISCARD llmos_err memory_recall_add(store *s, const char *principal, int64_t pid,
                                                      const char *role, const char *content);

/* ---- the memory calls (calls.c): what the memory tools and sessions do ------------------- */

#define MEMORY_CORE_DEFAULT_LIMIT 2000 /* bytes of a core block */
#define MEMORY_PAGE_MAX           50   /* results of one page of a search */

/* The core blocks of `principal`, oldest first; the first call for a principal creates
 * `persona` and `human` (empty until the model writes them). Free with store_core_blocks_free. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_core_list(store *s, const char *principal,
                                                     store_core_block **out, size_t *n);
/* Append `text` to block `label` (a new line; a new block when there is none). Over the block's
 * limit: LLMOS_ERR_LIMIT naming the limit and how far over. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_core_append(store *s, const char *principal,
                                                       const char *label, const char *text);
/* Replace the first `old` in block `label` by `text` ("" deletes it). LLMOS_ERR_NOT_FOUND when
 * the block or `old` is not there; LLMOS_ERR_LIMIT over the limit. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_core_replace(store *s, const char *principal,
                                                        const char *label, const char *old,
                                                        const char *text);
/* One page (page_size results, page from 0) of `principal`'s messages matching `query` (plain
 * words; "" lists the newest), between since and until (Unix seconds, 0 = open). An until
 * before since, or a page size over MEMORY_PAGE_MAX, is LLMOS_ERR_INVALID. Free with
 * store_messages_free. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_recall_search(store *s, const char *principal,
                                                         const char *query, int64_t since,
                                                         int64_t until, size_t page,
                                                         size_t page_size, store_message **out,
                                                         size_t *n);
/* Remember `text` in `principal`'s archival memory; `untrusted` when it came (in part) from
 * untrusted data: such passages come back as untrusted values, never as text (metadata
 * "origin"). */
LLMOS_API LLMOS_NODISCARD llmos_err memory_archival_insert(store *s, const char *principal,
                                                           const char *text, bool untrusted,
                                                           int64_t *id);
/* One page of `principal`'s archival passages nearest to `query`. Free with
 * store_archivals_free. */
LLMOS_API LLMOS_NODISCARD llmos_err memory_archival_search(store *s, const char *principal,
                                                           const char *query, size_t page,
                                                           size_t page_size, store_archival **out,
                                                           size_t *n);
/* Whether an archival passage is untrusted (its metadata says origin "untrusted"). */
LLMOS_API bool memory_archival_untrusted(const store_archival *a);

#endif
