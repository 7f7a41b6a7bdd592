/*
 * io/voice_http.h - the HTTP API's speech endpoints (private to src/io: http_server.c routes
 * to them): POST /v1/audio/transcriptions (multipart/form-data with a WAV "file") and
 * POST /v1/audio/speech (JSON {model, input, voice, response_format, speed} -> WAV), in the
 * shapes of OpenAI's audio API, and the multipart/form-data reader they use (fuzzed).
 *
 * Both run through the principal's kernel session as a service (ksession_service) under the
 * right "chat": speech in and out is how a chat client talks, so a key that may chat may use
 * them; they count against the key's request limits and each is audited as one "service"
 * record with sizes and durations, never the audio or the text.
 */
#ifndef LLMOS_IO_VOICE_HTTP_H
#define LLMOS_IO_VOICE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "llmos/base.h"
#include "llmos/kernel.h"

/* ---- multipart/form-data ------------------------------------------------------------------ */

#define VOICE_FORM_MAX_PARTS 16

typedef struct voice_form_part {
    char name[64];      /* the form field's name */
    char filename[256]; /* "" when the part is not a file */
    char type[128];     /* its Content-Type, "" when none */
    const char *data;   /* points into the body */
    size_t len;
} voice_form_part;

/* Split a multipart/form-data body (RFC 7578) by the boundary of its Content-Type header.
 * LLMOS_ERR_FORMAT naming what is wrong (not multipart, no boundary, a part without a name,
 * no closing delimiter), LLMOS_ERR_LIMIT past VOICE_FORM_MAX_PARTS parts. */
llmos_err voice_form_parse(const char *content_type, const char *body, size_t len,
                           voice_form_part *parts, size_t *n);
/* The part named name, NULL when there is none. */
const voice_form_part *voice_form_get(const voice_form_part *parts, size_t n, const char *name);

/* ---- the endpoints ------------------------------------------------------------------------ */

/* The server's speech services: one recognizer, loaded at the first transcription and used by
 * one request at a time. */
typedef struct voice_http voice_http;
llmos_err voice_http_new(voice_http **out);
void voice_http_free(voice_http *v);

/* What to answer: a status, a content type and the body (the caller frees it). */
typedef struct voice_http_answer {
    unsigned status;
    const char *content_type; /* static */
    llmos_buf body;
    const char *code;   /* the error code of a 4xx/5xx, else NULL */
    bool recorded;      /* the session audited the request (a service record or a refusal) */
} voice_http_answer;

/* Answer a request: LLMOS_OK with *out filled (2xx, or the client's mistake as an OpenAI error),
 * or the session's refusal (a right, a limit: DENIED, LIMIT) for the server to answer as it does
 * every session failure. */
llmos_err voice_http_transcription(voice_http *v, ksession *s, const char *content_type,
                                   const char *body, size_t len, voice_http_answer *out);
llmos_err voice_http_speech(voice_http *v, ksession *s, const char *body, size_t len,
                            voice_http_answer *out);

#endif
