/*
 * voice_http.c - the HTTP API's speech endpoints (io/voice_http.h): the multipart/form-data
 * reader, POST /v1/audio/transcriptions and POST /v1/audio/speech.
 *
 * multipart/form-data (RFC 7578 over RFC 2046): the body is
 *   [preamble] "--" BOUNDARY CRLF headers CRLF CRLF content CRLF "--" BOUNDARY ... "--" BOUNDARY "--"
 * where BOUNDARY comes from the Content-Type header ("multipart/form-data; boundary=X", X maybe
 * quoted) and each part's Content-Disposition names its field (name="file") and, for a file,
 * its filename. The content of a part runs to the next CRLF "--" BOUNDARY; it is not copied.
 *
 * Transcription: the "file" part is read as WAV (voice_wav_parse: resampled to 16 kHz; any
 * other format refused naming it, 400), recognized in dictation mode, and answered as
 * {"text": "..."} or, with response_format "text", the text alone. The other fields of
 * OpenAI's request (model, language, prompt, temperature) are accepted and not used.
 * Audio with no speech answers an empty text. Audio past VOICE_MAX_SECONDS is 413.
 *
 * Speech: "input" (up to 4096 characters, OpenAI's bound) spoken by espeak-ng; "voice" is an
 * OpenAI voice name (mapped to an espeak-ng voice: alloy en-us, echo en-us+m3, fable en-us+m7,
 * onyx en-us+m1, nova en-us+f3, shimmer en-us+f4, others en-us) or an espeak-ng voice name;
 * "speed" 0.25 to 4 scales 175 words a minute (within 80 to 450); "response_format" wav (the
 * default here: llmos has no MP3 encoder) or pcm (raw 16-bit little-endian at 24 kHz, as
 * OpenAI's pcm); mp3, opus, aac and flac are a 400 that says to ask for wav.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/voice_http.h"
#include "llmos/json.h"
#include "llmos/server.h"
#include "llmos/voice.h"

#define SPEECH_MAX_INPUT 4096 /* characters of text to speak, as OpenAI's endpoint */

/* ---- multipart/form-data ------------------------------------------------------------------ */

static const char *find(const char *hay, size_t hn, const char *needle, size_t nn)
{
    return nn <= hn ? memmem(hay, hn, needle, nn) : NULL;
}

/* The value of parameter `key` in a header's "; key=value" list (value maybe quoted) into
 * out; false when absent or too long. */
static bool header_param(const char *h, size_t hlen, const char *key, char *out, size_t size)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen < hlen; i++) {
        if ((i == 0 || h[i - 1] == ';' || h[i - 1] == ' ' || h[i - 1] == '\t') &&
            strncasecmp(h + i, key, klen) == 0 && h[i + klen] == '=') {
            const char *v = h + i + klen + 1, *end = h + hlen;
            size_t n = 0;
            if (v < end && *v == '"') {
                v++;
                while (v + n < end && v[n] != '"')
                    n++;
                if (v + n >= end)
                    return false; /* no closing quote */
            } else {
                while (v + n < end && v[n] != ';' && v[n] != ' ' && v[n] != '\t')
                    n++;
            }
            if (n >= size)
                return false;
            memcpy(out, v, n);
            out[n] = 0;
            return true;
        }
    }
    return false;
}

llmos_err voice_form_parse(const char *content_type, const char *body, size_t len,
                           voice_form_part *parts, size_t *n_out)
{
    *n_out = 0;
    const char *ct = content_type ? content_type : "";
    if (strncasecmp(ct, "multipart/form-data", 19) != 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "the body must be multipart/form-data (Content-Type is '%.100s')", ct);
    char boundary[80];
    if (!header_param(ct, strlen(ct), "boundary", boundary + 2, sizeof boundary - 2) ||
        !boundary[2])
        return llmos_fail(LLMOS_ERR_FORMAT, "the multipart/form-data Content-Type has no "
                                            "boundary (of at most 70 characters)");
    boundary[0] = boundary[1] = '-';
    size_t blen = strlen(boundary);
    const char *end = body + len;
    const char *p = find(body, len, boundary, blen); /* after any preamble */
    if (!p)
        return llmos_fail(LLMOS_ERR_FORMAT, "the multipart body never has its boundary");
    size_t n = 0;
    for (;;) {
        p += blen;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            break; /* the closing delimiter */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "multipart: a boundary is not followed by a line end or '--'");
        p += 2;
        const char *hend = find(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend)
            return llmos_fail(LLMOS_ERR_FORMAT, "multipart: part %zu has no end of headers",
                              n + 1);
        if (n == VOICE_FORM_MAX_PARTS)
            return llmos_fail(LLMOS_ERR_LIMIT, "multipart: more than %d parts",
                              VOICE_FORM_MAX_PARTS);
        voice_form_part *part = &parts[n];
        memset(part, 0, sizeof *part);
        bool named = false;
        for (const char *h = p; h < hend;) {
            const char *eol = find(h, (size_t)(hend - h), "\r\n", 2);
            size_t hl = eol ? (size_t)(eol - h) : (size_t)(hend - h);
            if (hl > 20 && strncasecmp(h, "Content-Disposition:", 20) == 0) {
                named = header_param(h + 20, hl - 20, "name", part->name, sizeof part->name);
                if (!header_param(h + 20, hl - 20, "filename", part->filename,
                                  sizeof part->filename))
                    part->filename[0] = 0;
            } else if (hl > 13 && strncasecmp(h, "Content-Type:", 13) == 0) {
                const char *v = h + 13;
                size_t vl = hl - 13;
                while (vl && (*v == ' ' || *v == '\t'))
                    v++, vl--;
                snprintf(part->type, sizeof part->type, "%.*s", (int)(vl < 127 ? vl : 127), v);
            }
            h += hl + 2;
        }
        if (!named)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "multipart: part %zu has no Content-Disposition with a name",
                              n + 1);
        const char *data = hend + 4;
        /* the content ends at CRLF and the next delimiter */
        char delim[84];
        snprintf(delim, sizeof delim, "\r\n%s", boundary);
        const char *next = find(data, (size_t)(end - data), delim, blen + 2);
        if (!next)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "multipart: part '%s' never ends (no closing boundary)", part->name);
        part->data = data;
        part->len = (size_t)(next - data);
        n++;
        p = next + 2;
    }
    *n_out = n;
    return LLMOS_OK;
}

const voice_form_part *voice_form_get(const voice_form_part *parts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(parts[i].name, name) == 0)
            return &parts[i];
    return NULL;
}

/* ---- the services ------------------------------------------------------------------------- */

struct voice_http {
    pthread_mutex_t mu; /* the recognizer: loaded once, one request at a time */
    voice_recognizer *rec;
};

llmos_err voice_http_new(voice_http **out)
{
    voice_http *v = calloc(1, sizeof *v);
    if (!v)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the speech services");
    pthread_mutex_init(&v->mu, NULL);
    *out = v;
    return LLMOS_OK;
}

void voice_http_free(voice_http *v)
{
    if (!v)
        return;
    voice_recognizer_free(v->rec);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

/* An OpenAI error as the answer. */
static void answer_error(voice_http_answer *a, unsigned status, const char *type, const char *param,
                         const char *code, const char *fmt, ...) LLMOS_PRINTF(6, 7);

static void answer_error(voice_http_answer *a, unsigned status, const char *type, const char *param,
                         const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    buf_clear(&a->body);
    json_t *e = openai_error_json(msg, type, param, code);
    if (!e || ljson_to_buf(e, 0, &a->body) || buf_putc(&a->body, '\n'))
        buf_clear(&a->body);
    json_decref(e);
    a->status = status;
    a->code = code;
    a->content_type = "application/json";
}

/* What a service's own failure answers (after the session admitted it). */
static void answer_failure(voice_http_answer *a, llmos_err err, const char *param)
{
    const char *msg = llmos_errmsg();
    switch (err) {
    case LLMOS_ERR_FORMAT:
    case LLMOS_ERR_INVALID:
        answer_error(a, 400, "invalid_request_error", param, "invalid_value", "%s", msg);
        break;
    case LLMOS_ERR_LIMIT:
        answer_error(a, 413, "invalid_request_error", param, "request_too_large", "%s", msg);
        break;
    case LLMOS_ERR_NOT_FOUND: /* the recognizer's model or espeak-ng's data is missing */
        answer_error(a, 503, "server_error", NULL, "speech_unavailable", "%s", msg);
        break;
    default: answer_error(a, 500, "server_error", NULL, NULL, "%s", msg); break;
    }
}

/* ---- transcription ------------------------------------------------------------------------ */

typedef struct tr_job {
    voice_http *v;
    const voice_form_part *file;
    char *text; /* the transcript (malloc'd) */
} tr_job;

static llmos_err tr_run(void *ctx, char *outcome, size_t size)
{
    tr_job *j = ctx;
    voice_audio a = {0};
    llmos_err err = voice_wav_parse(j->file->data, j->file->len, VOICE_RATE, &a);
    voice_result res = {0};
    if (!err) {
        pthread_mutex_lock(&j->v->mu);
        if (!j->v->rec)
            err = voice_recognizer_new(NULL, &j->v->rec);
        if (!err)
            err = voice_recognize(j->v->rec, VOICE_DICTATION, &a, &res);
        pthread_mutex_unlock(&j->v->mu);
    }
    snprintf(outcome, size, "transcription: %zu bytes, %.1f s of audio, %zu characters",
             j->file->len, voice_audio_seconds(&a), err ? (size_t)0 : strlen(res.text));
    voice_audio_free(&a);
    if (!err) {
        j->text = res.text;
        res.text = NULL;
    }
    voice_result_free(&res);
    return err;
}

llmos_err voice_http_transcription(voice_http *v, ksession *s, const char *content_type,
                                   const char *body, size_t len, voice_http_answer *out)
{
    memset(out, 0, sizeof *out);
    voice_form_part parts[VOICE_FORM_MAX_PARTS];
    size_t n = 0;
    llmos_err err = voice_form_parse(content_type, body, len, parts, &n);
    if (err) {
        answer_error(out, 400, "invalid_request_error", NULL, "invalid_value",
                     "POST /v1/audio/transcriptions: %s", llmos_errmsg());
        return LLMOS_OK;
    }
    const voice_form_part *file = voice_form_get(parts, n, "file");
    const voice_form_part *fmt = voice_form_get(parts, n, "response_format");
    char format[16] = "json";
    if (fmt)
        snprintf(format, sizeof format, "%.*s", (int)(fmt->len < 15 ? fmt->len : 15), fmt->data);
    if (!file) {
        answer_error(out, 400, "invalid_request_error", "file", "missing_required_parameter",
                     "POST /v1/audio/transcriptions needs the audio as the form field 'file' "
                     "(a WAV file)");
        return LLMOS_OK;
    }
    if (strcmp(format, "json") != 0 && strcmp(format, "text") != 0) {
        answer_error(out, 400, "invalid_request_error", "response_format", "unsupported_value",
                     "response_format '%s': llmos answers json or text", format);
        return LLMOS_OK;
    }
    tr_job j = {.v = v, .file = file};
    err = ksession_service(s, KRIGHT_CHAT, "speech transcription", tr_run, &j);
    out->recorded = err == LLMOS_OK || err == LLMOS_ERR_DENIED ||
                    !(err == LLMOS_ERR_LIMIT && ksession_rate_limited(NULL));
    if (err && !out->recorded)
        return err; /* refused by a limit: the server answers it */
    if (err == LLMOS_ERR_DENIED)
        return err;
    if (err) {
        answer_failure(out, err, "file");
        return LLMOS_OK;
    }
    out->status = 200;
    if (strcmp(format, "text") == 0) {
        out->content_type = "text/plain; charset=utf-8";
        err = buf_puts(&out->body, j.text);
        if (!err)
            err = buf_putc(&out->body, '\n');
    } else {
        out->content_type = "application/json";
        json_t *o = json_pack("{s:s}", "text", j.text);
        err = o ? ljson_to_buf(o, 0, &out->body) : LLMOS_ERR_NOMEM;
        if (!err)
            err = buf_putc(&out->body, '\n');
        json_decref(o);
    }
    free(j.text);
    if (err)
        answer_error(out, 500, "server_error", NULL, NULL, "out of memory");
    return LLMOS_OK;
}

/* ---- speech ------------------------------------------------------------------------------- */

/* OpenAI's voice names -> espeak-ng voices; other names are taken as espeak-ng's own. */
static const struct {
    const char *openai, *espeak;
} voice_names[] = {
    {"alloy", "en-us"},      {"echo", "en-us+m3"}, {"fable", "en-us+m7"}, {"onyx", "en-us+m1"},
    {"nova", "en-us+f3"},    {"shimmer", "en-us+f4"}, {"ash", "en-us+m2"}, {"coral", "en-us+f2"},
    {"sage", "en-us+f1"},    {"ballad", "en-us+m4"}, {"verse", "en-us+m5"},
};

typedef struct sp_job {
    const char *input;
    voice_speech_params params;
    bool pcm;
    llmos_buf *out;
} sp_job;

static llmos_err sp_run(void *ctx, char *outcome, size_t size)
{
    sp_job *j = ctx;
    voice_audio a = {0}, rs = {0};
    llmos_err err = voice_speak(&j->params, j->input, &a);
    if (!err && j->pcm) { /* raw 16-bit little-endian samples at 24 kHz */
        err = voice_resample(&a, 24000, &rs);
        for (size_t i = 0; !err && i < rs.n; i++) {
            unsigned char b[2] = {(unsigned char)(rs.samples[i] & 0xFF),
                                  (unsigned char)((uint16_t)rs.samples[i] >> 8)};
            err = buf_append(j->out, b, 2);
        }
    } else if (!err) {
        err = voice_wav_encode(&a, j->out);
    }
    snprintf(outcome, size, "speech: %zu characters, %.1f s of audio, %s", strlen(j->input),
             voice_audio_seconds(&a), j->pcm ? "pcm" : "wav");
    voice_audio_free(&a);
    voice_audio_free(&rs);
    return err;
}

llmos_err voice_http_speech(voice_http *v, ksession *s, const char *body, size_t len,
                            voice_http_answer *out)
{
    (void)v;
    memset(out, 0, sizeof *out);
    json_t *req = NULL;
    if (ljson_parse_text(body, len, "the request body", 8, &req) != LLMOS_OK ||
        !json_is_object(req)) {
        answer_error(out, 400, "invalid_request_error", NULL, "invalid_json",
                     "POST /v1/audio/speech takes a JSON object {model, input, voice}: %s",
                     req ? "the body is not an object" : llmos_errmsg());
        json_decref(req);
        return LLMOS_OK;
    }
    json_t *input = json_object_get(req, "input"), *voice = json_object_get(req, "voice");
    json_t *fmt = json_object_get(req, "response_format"), *speed = json_object_get(req, "speed");
    const char *param = NULL, *why = NULL;
    if (!json_is_string(input))
        param = "input", why = "'input' is required: the text to speak";
    else if (json_string_length(input) > SPEECH_MAX_INPUT)
        param = "input", why = "'input' is longer than 4096 characters";
    else if (voice && !json_is_string(voice))
        param = "voice", why = "'voice' is a voice name (alloy, echo, ... or an espeak-ng voice)";
    else if (speed && !(json_is_number(speed) && json_number_value(speed) >= 0.25 &&
                        json_number_value(speed) <= 4.0))
        param = "speed", why = "'speed' is a number from 0.25 to 4";
    else if (fmt && !json_is_string(fmt))
        param = "response_format", why = "'response_format' is wav or pcm";
    const char *format = fmt ? json_string_value(fmt) : "wav";
    if (!param && strcmp(format, "wav") != 0 && strcmp(format, "pcm") != 0) {
        answer_error(out, 400, "invalid_request_error", "response_format", "unsupported_value",
                     "response_format '%.40s': llmos speaks wav or pcm (it has no encoder for "
                     "compressed audio); ask for \"response_format\": \"wav\"",
                     format);
        json_decref(req);
        return LLMOS_OK;
    }
    if (param) {
        answer_error(out, 400, "invalid_request_error", param, "invalid_value",
                     "POST /v1/audio/speech: %s", why);
        json_decref(req);
        return LLMOS_OK;
    }
    sp_job j = {.input = json_string_value(input),
                .params = voice_speech_default_params(),
                .pcm = strcmp(format, "pcm") == 0,
                .out = &out->body};
    const char *name = voice ? json_string_value(voice) : "alloy";
    j.params.voice = name;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(voice_names); i++)
        if (strcmp(name, voice_names[i].openai) == 0)
            j.params.voice = voice_names[i].espeak;
    if (speed) {
        int rate = (int)(175 * json_number_value(speed) + 0.5);
        j.params.rate = rate < 80 ? 80 : rate > 450 ? 450 : rate;
    }
    llmos_err err = ksession_service(s, KRIGHT_CHAT, "speech synthesis", sp_run, &j);
    json_decref(req);
    out->recorded = err == LLMOS_OK || err == LLMOS_ERR_DENIED ||
                    !(err == LLMOS_ERR_LIMIT && ksession_rate_limited(NULL));
    if (err && (!out->recorded || err == LLMOS_ERR_DENIED)) {
        buf_free(&out->body);
        return err;
    }
    if (err) {
        answer_failure(out, err, err == LLMOS_ERR_INVALID ? "voice" : NULL);
        return LLMOS_OK;
    }
    out->status = 200;
    out->content_type = j.pcm ? "audio/pcm" : "audio/wav";
    return LLMOS_OK;
}
