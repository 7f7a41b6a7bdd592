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
 *   embedders  the engine's (the mean of a GGUF model's last hidden states, "engine:<name>")
 *              when a model is named, else the lexical one ("lexical-v1": hashed words and word
 *              pairs, which finds shared words, not meaning). A store remembers which embedder
 *              made its vectors (setting "archival.embedder" = "NAME DIM") and refuses another
 *   processes  the kernel's process records (one JSON object each) and the recall log (every
 *              user message and answer, searchable with FTS5), written through memory_proc_*
 *              and memory_recall_add so that the kernel never touches the schema
 *
 * docs/memory.md describes each piece; the context manager and paging (issue "virtual memory")
 * will join them here.
 */
#ifndef LLMOS_MEMORY_H
#define LLMOS_MEMORY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"
#include "llmos/storage.h"

/* The user's llmos home (see above); a static string, never NULL. */
const char *memory_home(void);

/* How a device asks its user for a secret: write `prompt`, read one line without echo into
 * out[0..size) (NUL-terminated). LLMOS_ERR_CANCELLED when the user gave up (Ctrl-C). */
typedef llmos_err (*memory_ask_fn)(void *ctx, const char *prompt, char *out, size_t size);

typedef enum memory_embed {
    MEMORY_EMBED_DEFAULT, /* the engine's with embed_model or $LLMOS_EMBED_MODEL, else lexical */
    MEMORY_EMBED_NONE,    /* no embedder (ps, kill, audit: no model load); archival add and
                             search then fail with a message saying so */
} memory_embed;

typedef struct memory_params {
    const char *home;        /* NULL = memory_home() */
    bool create;             /* create a missing store (the passphrase is asked twice) */
    const char *passphrase;  /* NULL = $LLMOS_PASSPHRASE, else asked through `ask` */
    memory_ask_fn ask;       /* NULL: a passphrase that is needed and missing is an error */
    void *ask_ctx;           /*   saying how to give one */
    memory_embed embed;      /* which embedder archival memory gets */
    const char *embed_model; /* GGUF file of the engine embedder (MEMORY_EMBED_DEFAULT) */
    bool check_embedder;     /* refuse a store whose memories another embedder made */
    bool start_over;         /* a store whose database is gone starts over empty
                                (store_options.start_over; `llmos memory reset`) */
    bool allow_rollback;     /* open a store older than its freshness record, loudly and
                                audited (store_options.allow_rollback); also when
                                $LLMOS_ALLOW_ROLLBACK is 1 */
} memory_params;

typedef struct memory memory;

/* Open the user's store as `p` says. A missing store without `create` is LLMOS_ERR_NOT_FOUND
 * naming the folder; a wrong passphrase LLMOS_ERR_AUTH; a refused embedder LLMOS_ERR_INVALID
 * naming the one to use. Close with memory_close. */
LLMOS_NODISCARD llmos_err memory_open(const memory_params *p, memory **out);
/* A store that lives in memory only, with the lexical embedder: nothing reaches the disk and
 * everything is gone at memory_close. */
LLMOS_NODISCARD llmos_err memory_open_ephemeral(memory **out);
/* The store (owned by m). */
store *memory_store(memory *m);
/* "NAME DIM" of the embedder archival memory uses, or "none". */
const char *memory_embedder_name(const memory *m);
/* True for a store that lives in memory only. */
bool memory_is_ephemeral(const memory *m);
void memory_close(memory *m);

/* The lexical embedder "lexical-v1": each lower-cased word, and each pair of neighbouring
 * words, hashed (FNV-1a) to a signed slot of a 512-dimensional vector. Texts sharing words are
 * near; it knows nothing of meaning. Deterministic, no model needed. */
const store_embedder *memory_lexical_embedder(void);

/* ---- what the kernel keeps ---------------------------------------------------------------- */

/* A new process id (1, 2, ...; never reused in a store). */
LLMOS_NODISCARD llmos_err memory_proc_new_pid(store *s, int64_t *pid);
/* The highest pid handed out so far (0 when none). */
LLMOS_NODISCARD llmos_err memory_proc_last_pid(store *s, int64_t *pid);
/* Save the record of process pid (a JSON object, borrowed), replacing the last one. */
LLMOS_NODISCARD llmos_err memory_proc_save(store *s, int64_t pid, const json_t *record);
/* The record of process pid (new reference, caller decrefs); LLMOS_ERR_NOT_FOUND when there is
 * none; LLMOS_ERR_FORMAT when it is not a JSON object. */
LLMOS_NODISCARD llmos_err memory_proc_load(store *s, int64_t pid, json_t **record);
/* Append a message of process pid to the recall log (conversation "proc:<pid>"). */
LLMOS_NODISCARD llmos_err memory_recall_add(store *s, int64_t pid, const char *role,
                                            const char *content);

#endif
