/*
 * llmos/grammar.h - grammar-constrained decoding: GBNF grammars, token masks, JSON Schema.
 *
 * A grammar is written in GBNF, the notation of llama.cpp's grammars (docs/grammar.md has the
 * subset): rules `name ::= alternatives`, `|`, `( )`, `* + ?`, `{m}`, `{m,}`, `{m,n}`,
 * character classes `[a-z]`, `[^...]`, `.`, string literals with escapes, `#` comments, and
 * `root` as the start rule.
 *
 * The matcher is a pushdown automaton whose state is a set of stacks (several parses may be
 * alive at once) plus a partial UTF-8 character: grammars speak in code points, tokens are byte
 * strings and may end in the middle of a character. States are interned and their byte
 * transitions memoised, so the matcher grows a DFA lazily as generation visits new states.
 *
 * Masking: a grammar_vocab is a byte trie over all tokens of a tokenizer, built once and
 * shared. grammar_mask walks the trie from the current state; a subtree whose prefix the
 * grammar cannot continue is skipped whole. A token is allowed iff the grammar can consume all
 * its bytes; an end-of-generation token iff the grammar is in an accepting state.
 *
 * How a sampler uses it, once per generated token (model logits are const: mask a copy):
 *
 *     memcpy(work, logits, n_vocab * sizeof *work);
 *     grammar_mask(g, v, work, n_vocab);        // disallowed logits become -INFINITY
 *     id = sampler_sample(s, work);
 *     if (tok_is_eog(t, id)) stop;               // only offered when grammar_accepting(g)
 *     grammar_accept(g, v, id);                  // advance; fails if id was not allowed
 *     if (grammar_done(g)) stop;                 // nothing but the end can follow
 *
 * The mask must come before top-k, top-p and min-p (as above, where sampler_sample runs its
 * whole chain on the masked copy): filtering first could keep only tokens the grammar refuses.
 * Penalties never revive a -INFINITY logit.
 *
 * Threads: a grammar_vocab is immutable and may be shared; a grammar (which holds the
 * matcher's state and caches) is used by one thread at a time.
 */
#ifndef LLMOS_GRAMMAR_H
#define LLMOS_GRAMMAR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"

typedef struct grammar grammar;
typedef struct grammar_vocab grammar_vocab;
typedef struct tokenizer tokenizer;

/* ---- grammars ------------------------------------------------------------------------------ */

/* Parse GBNF text[0..len) and prepare a matcher at the start of rule `root` (NULL = "root").
 * Errors are LLMOS_ERR_FORMAT with "grammar: line L, column C: what" for syntax errors,
 * undefined rules, and left recursion (a rule that can reach itself without consuming a
 * character, which a stack-based matcher cannot run). The caller frees *out with
 * grammar_free. */
LLMOS_API LLMOS_NODISCARD llmos_err grammar_parse(const char *text, size_t len, const char *root,
                                                  grammar **out);
LLMOS_API void grammar_free(grammar *g);

/* Back to the start state (before any byte). Keeps the caches. */
LLMOS_API void grammar_reset(grammar *g);

/* True when the bytes consumed so far form a complete sentence of the grammar (so an
 * end-of-generation token may be sampled). */
LLMOS_API bool grammar_accepting(const grammar *g);
/* True when the grammar is accepting and can take no further byte: generation must stop. */
LLMOS_API bool grammar_done(const grammar *g);

/* Consume s[0..n) from the current state. On LLMOS_ERR_INVALID (the bytes cannot continue a
 * sentence; the message says at which byte) the state is left as it was. */
LLMOS_API LLMOS_NODISCARD llmos_err grammar_accept_bytes(grammar *g, const char *s, size_t n);

/* True when s[0..n) as a whole is a sentence of the grammar (from the start state; the
 * current state is not changed). */
LLMOS_API bool grammar_matches(grammar *g, const char *s, size_t n);

/* Number of rules after rewriting (groups and repetitions become rules); for tests. */
LLMOS_API size_t grammar_n_rules(const grammar *g);

/* Forget the memoised states, transitions and masks (keeping the current state), so that the
 * next mask is computed from scratch. For benchmarks and tests; never needed otherwise (the
 * caches are bounded and rebuilt automatically). */
LLMOS_API LLMOS_NODISCARD llmos_err grammar_clear_caches(grammar *g);
/* Number of matcher states memoised so far (the lazily built DFA's size). */
LLMOS_API size_t grammar_n_states(const grammar *g);

/* ---- vocabularies and masks ----------------------------------------------------------------- */

/* Index the tokens of `t` for masking: every token's bytes (tok_token_bytes; control tokens by
 * their text, so a grammar can ask for "<tool_call>" or "[TOOL_CALLS]"), and which tokens end a
 * generation (tok_is_eog). Tokens with no bytes are never allowed. Free with
 * grammar_vocab_free. Takes ~0.1 s for 150k tokens. */
LLMOS_API LLMOS_NODISCARD llmos_err grammar_vocab_new(const tokenizer *t, grammar_vocab **out);

/* The same from plain arrays (tests, remote vocabularies): n tokens with bytes pieces[i] of
 * lens[i] bytes; is_eog may be NULL (no end tokens). Arrays are copied. */
LLMOS_API LLMOS_NODISCARD llmos_err grammar_vocab_from_pieces(size_t n, const char *const *pieces,
                                                              const size_t *lens,
                                                              const bool *is_eog,
                                                              grammar_vocab **out);
LLMOS_API void grammar_vocab_free(grammar_vocab *v);
LLMOS_API size_t grammar_vocab_size(const grammar_vocab *v);

/* Set allowed[i] (bit i of a byte array of (n_vocab + 7) / 8 bytes) for every token the
 * grammar allows next. n_vocab must equal grammar_vocab_size(v). Returns the number allowed. */
LLMOS_API size_t grammar_allowed(grammar *g, const grammar_vocab *v, uint8_t *allowed,
                                 size_t n_vocab);

/* Set logits[i] = -INFINITY for every token the grammar does not allow next. n_vocab must
 * equal grammar_vocab_size(v) (LLMOS_ERR_INVALID otherwise). When nothing at all is allowed
 * (an impossible grammar) fails with LLMOS_ERR_INVALID and leaves logits unchanged. */
LLMOS_API LLMOS_NODISCARD llmos_err grammar_mask(grammar *g, const grammar_vocab *v, float *logits,
                                                 size_t n_vocab);

/* Advance by token `id`: its bytes, or for an end-of-generation token the end (allowed only
 * when grammar_accepting). LLMOS_ERR_INVALID when the token is not allowed (state kept). */
LLMOS_API LLMOS_NODISCARD llmos_err grammar_accept(grammar *g, const grammar_vocab *v, int32_t id);

/* ---- JSON Schema -> grammar (json_schema.c) ---------------------------------------------------
 */

/* Bounds on one schema, so that a request cannot hold the model for long while its schema is
 * compiled (a schema above them fails with LLMOS_ERR_LIMIT naming the bound and the value):
 * nesting of subschemas, object properties in the whole schema, and nodes (subschemas, enum
 * and const values; a $ref target counts once). At these bounds a schema compiles to a
 * grammar in tens of milliseconds, and an object's optional properties stay below the
 * matcher's limit of parses alive at once. */
#define JSCHEMA_MAX_DEPTH      64
#define JSCHEMA_MAX_PROPERTIES 2000
#define JSCHEMA_MAX_NODES      10000
/* And on one jschema_validate: the (subschema, value) pairs it may check (anyOf branches that
 * refer to the same definitions multiply; about 0.1 s of CPU). */
#define JSCHEMA_MAX_CHECK_STEPS 100000

/* Append to `out` a GBNF grammar whose root matches the JSON values valid against `schema`
 * (the subset in docs/grammar.md: type, properties, required, additionalProperties, enum,
 * const, minLength/maxLength, items, minItems/maxItems, anyOf/oneOf, $ref to #/$defs or
 * #/definitions). Properties come in the schema's order; whitespace is bounded. Rule names
 * are prefixed with `prefix` (NULL = ""), so that several schemas can share one grammar; the
 * start rule is `<prefix>root`. Unsupported keywords fail with LLMOS_ERR_UNSUPPORTED naming
 * the keyword and its path; a schema above the JSCHEMA_MAX_* bounds with LLMOS_ERR_LIMIT. */
LLMOS_API LLMOS_NODISCARD llmos_err jschema_to_grammar(const json_t *schema, const char *prefix,
                                                       llmos_buf *out);

/* Append a GBNF grammar for any JSON value (root) and object (`object`), with bounded
 * whitespace, numbers and nesting left free (response_format json_object). */
LLMOS_API LLMOS_NODISCARD llmos_err jschema_grammar_generic(llmos_buf *out);

/* Check `instance` against `schema` (the same subset). LLMOS_ERR_INVALID with a message naming
 * the path ("$.items[2].name: expected string, found integer") at the first violation;
 * `what` prefixes the message (NULL = "value"). LLMOS_ERR_LIMIT beyond
 * JSCHEMA_MAX_CHECK_STEPS. */
LLMOS_API LLMOS_NODISCARD llmos_err jschema_validate(const json_t *schema, const json_t *instance,
                                                     const char *what);

#endif
