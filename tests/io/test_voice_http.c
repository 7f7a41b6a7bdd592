/*
 * test_voice_http.c - the speech endpoints of `llmos serve` (src/io/voice_http.c), driven by
 * libcurl over loopback in front of a kernel on a store in memory: POST /v1/audio/speech
 * answers WAV (and pcm) of the text, POST /v1/audio/transcriptions hears it back from a
 * multipart upload (json and text), silence is an empty text; the client's mistakes are 400s
 * in the OpenAI shape naming the field (not WAV, no file, mp3 asked for, too much text), a body
 * over the limit is 413; the right "chat" is needed (403, audited), the key's request limit
 * holds (429), and each request is audited once as a "service" record without its content.
 * And the multipart/form-data reader directly. (The official client: tests/io/node.)
 */
#include <curl/curl.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/voice_http.h"
#include "llmos/apikeys.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/server.h"
#include "llmos/voice.h"
#include "testutil.h"

typedef struct reply {
    long status;
    llmos_buf body;
    char type[128];
} reply;

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    reply *r = ctx;
    return buf_append(&r->body, data, size * n) ? 0 : size * n;
}

/* POST to path with key: a JSON body, or a multipart form (file bytes and more fields). */
static void request(uint16_t port, const char *path, const char *key, const char *json,
                    const void *file, size_t file_len, const char *format, reply *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[256], auth[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    curl_mime *mime = NULL;
    if (json) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    } else {
        mime = curl_mime_init(c);
        if (file) {
            curl_mimepart *p = curl_mime_addpart(mime);
            curl_mime_name(p, "file");
            curl_mime_filename(p, "speech.wav");
            curl_mime_type(p, "audio/wav");
            curl_mime_data(p, file, file_len);
        }
        curl_mimepart *m = curl_mime_addpart(mime);
        curl_mime_name(m, "model");
        curl_mime_data(m, "whisper-1", CURL_ZERO_TERMINATED);
        if (format) {
            curl_mimepart *f = curl_mime_addpart(mime);
            curl_mime_name(f, "response_format");
            curl_mime_data(f, format, CURL_ZERO_TERMINATED);
        }
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->type, sizeof r->type, "%s", ct ? ct : "");
    assert_int_equal(buf_putc(&r->body, 0), LLMOS_OK);
    r->body.len--;
    curl_mime_free(mime);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

/* The reply is an OpenAI error with this status, param and code. */
static void expect_error(reply *r, long status, const char *param, const char *code,
                         const char *says)
{
    if (r->status != status)
        fail_msg("status %ld, expected %ld: %s", r->status, status, r->body.data);
    json_t *j = json_loads(r->body.data, 0, NULL);
    assert_non_null(j);
    json_t *e = json_object_get(j, "error");
    if (param)
        assert_string_equal(ljson_get_string(e, "param", ""), param);
    if (code)
        assert_string_equal(ljson_get_string(e, "code", ""), code);
    if (says && !strstr(ljson_get_string(e, "message", ""), says))
        fail_msg("'%s' does not say '%s'", ljson_get_string(e, "message", ""), says);
    json_decref(j);
    buf_free(&r->body);
}

typedef struct fixture {
    memory *mem;
    kernel *k;
    apikeys *keys;
    ksession *auditor;
    http_server *srv;
    uint16_t port;
} fixture;

static void key_entry(llmos_buf *out, const char *principal, const char *key, const char *rest)
{
    unsigned char h[APIKEY_HASH_BYTES];
    char hex[2 * APIKEY_HASH_BYTES + 1];
    apikeys_hash(key, strlen(key), h);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    assert_int_equal(buf_printf(out, "%s{\"principal\":\"%s\",\"key_hash\":\"blake2b-256:%s\",%s}",
                                out->data[out->len - 1] == '[' ? "" : ",", principal, hex, rest),
                     LLMOS_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(memory_open_ephemeral(&f->mem), LLMOS_OK);
    kernel_config kc = {.st = memory_store(f->mem)}; /* no model: speech does not need one */
    assert_int_equal(kernel_new(&kc, &f->k), LLMOS_OK);
    ksession_params ap = {.principal = "auditor", .device = "test", .rights = KRIGHT_AUDIT};
    assert_int_equal(ksession_open(f->k, &ap, &f->auditor), LLMOS_OK);
    llmos_buf keys = {0};
    assert_int_equal(buf_puts(&keys, "{\"version\": 1, \"keys\": ["), LLMOS_OK);
    key_entry(&keys, "talker", "key-talker-0123456789", "\"rights\":[\"chat\"]");
    key_entry(&keys, "embedder", "key-embedder-0123456789", "\"rights\":[\"embed\"]");
    key_entry(&keys, "slow", "key-slow-0123456789",
              "\"rights\":[\"chat\"],\"limits\":{\"requests_per_minute\":1}");
    assert_int_equal(buf_puts(&keys, "]}"), LLMOS_OK);
    if (apikeys_parse(keys.data, keys.len, "test keys", &f->keys) != LLMOS_OK)
        fail_msg("%s", llmos_errmsg());
    buf_free(&keys);
    http_server_params p = http_server_default_params();
    p.port = 0;
    p.keys = f->keys;
    p.model_name = "none";
    p.max_body = 400000;
    assert_int_equal(http_server_start(f->k, &p, &f->srv), LLMOS_OK);
    f->port = http_server_port(f->srv);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    http_server_stop(f->srv);
    ksession_close(f->auditor);
    kernel_free(f->k);
    memory_close(f->mem);
    apikeys_free(f->keys);
    free(f);
    return 0;
}

typedef struct audit_query {
    const char *kind, *principal;
    int count;
    bool content_leaked;
} audit_query;

static bool audit_visit(const store_audit_record *rec, void *ctx)
{
    audit_query *q = ctx;
    if (strcmp(rec->kind, q->kind) == 0 && strstr(rec->payload, q->principal))
        q->count++;
    if (strstr(rec->payload, "weather"))
        q->content_leaked = true;
    return true;
}

static int audited(fixture *f, const char *kind, const char *principal, bool *leaked)
{
    audit_query q = {kind, principal, 0, false};
    assert_int_equal(ksession_audit(f->auditor, 1, audit_visit, &q), LLMOS_OK);
    if (leaked)
        *leaked = q.content_leaked;
    return q.count;
}

static const char *const talker = "key-talker-0123456789";

static void test_speech_and_back(void **state)
{
    fixture *f = *state;
    reply r;
    request(f->port, "/v1/audio/speech", talker,
            "{\"model\":\"tts-1\",\"input\":\"What is the weather like today?\",\"voice\":\"alloy\","
            "\"response_format\":\"wav\"}",
            NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.type, "audio/wav");
    voice_audio a = {0};
    assert_int_equal(voice_wav_parse(r.body.data, r.body.len, 0, &a), LLMOS_OK);
    assert_int_equal(a.rate, 22050);
    assert_true(voice_audio_seconds(&a) > 1.0);
    voice_audio_free(&a);
    /* back: the transcript has words of it */
    reply t;
    request(f->port, "/v1/audio/transcriptions", talker, NULL, r.body.data, r.body.len, NULL, &t);
    assert_int_equal(t.status, 200);
    assert_string_equal(t.type, "application/json");
    json_t *j = json_loads(t.body.data, 0, NULL);
    const char *text = ljson_get_string(j, "text", NULL);
    assert_non_null(text);
    assert_true(strstr(text, "what") || strstr(text, "weather") || strstr(text, "the"));
    reply tt;
    request(f->port, "/v1/audio/transcriptions", talker, NULL, r.body.data, r.body.len, "text",
            &tt);
    assert_int_equal(tt.status, 200);
    assert_string_equal(tt.type, "text/plain; charset=utf-8");
    assert_true(tt.body.len > 0 && tt.body.data[tt.body.len - 1] == '\n');
    json_decref(j);
    buf_free(&t.body);
    buf_free(&tt.body);
    /* pcm: 24 kHz raw samples */
    reply p;
    request(f->port, "/v1/audio/speech", talker,
            "{\"model\":\"tts-1\",\"input\":\"Hello.\",\"response_format\":\"pcm\",\"speed\":1.5}",
            NULL, 0, NULL, &p);
    assert_int_equal(p.status, 200);
    assert_string_equal(p.type, "audio/pcm");
    assert_true(p.body.len > 4000 && p.body.len % 2 == 0 && memcmp(p.body.data, "RIFF", 4) != 0);
    buf_free(&p.body);
    /* silence: an empty text */
    voice_audio quiet = {.samples = calloc(16000, 2), .n = 16000, .rate = 16000};
    llmos_buf wav = {0};
    assert_int_equal(voice_wav_encode(&quiet, &wav), LLMOS_OK);
    request(f->port, "/v1/audio/transcriptions", talker, NULL, wav.data, wav.len, NULL, &t);
    assert_int_equal(t.status, 200);
    assert_string_equal(t.body.data, "{\"text\":\"\"}\n");
    buf_free(&t.body);
    buf_free(&wav);
    voice_audio_free(&quiet);
    /* each is one "service" record of talker's, with sizes and no content */
    bool leaked = true;
    assert_int_equal(audited(f, "service", "talker", &leaked), 5);
    assert_false(leaked);
    buf_free(&r.body);
}

static void test_mistakes_rights_and_limits(void **state)
{
    fixture *f = *state;
    reply r;
    request(f->port, "/v1/audio/transcriptions", talker, NULL, "ID3\x04 an mp3", 12, NULL, &r);
    expect_error(&r, 400, "file", "invalid_value", "MP3");
    request(f->port, "/v1/audio/transcriptions", talker, NULL, NULL, 0, NULL, &r);
    expect_error(&r, 400, "file", "missing_required_parameter", "'file'");
    request(f->port, "/v1/audio/transcriptions", talker, NULL, "RIFF", 4, "srt", &r);
    expect_error(&r, 400, "response_format", "unsupported_value", "json or text");
    request(f->port, "/v1/audio/transcriptions", talker, "{\"file\":1}", NULL, 0, NULL, &r);
    expect_error(&r, 400, NULL, "invalid_value", "multipart/form-data");
    request(f->port, "/v1/audio/speech", talker, "{\"input\":\"hi\",\"response_format\":\"mp3\"}",
            NULL, 0, NULL, &r);
    expect_error(&r, 400, "response_format", "unsupported_value", "wav");
    request(f->port, "/v1/audio/speech", talker, "{\"voice\":\"alloy\"}", NULL, 0, NULL, &r);
    expect_error(&r, 400, "input", "invalid_value", "'input' is required");
    request(f->port, "/v1/audio/speech", talker, "{\"input\":\"hi\",\"voice\":\"no-such\"}", NULL,
            0, NULL, &r);
    expect_error(&r, 400, "voice", "invalid_value", "no-such");
    request(f->port, "/v1/audio/speech", talker, "{\"input\":\"hi\",\"speed\":9}", NULL, 0, NULL,
            &r);
    expect_error(&r, 400, "speed", "invalid_value", "0.25 to 4");
    request(f->port, "/v1/audio/speech", talker, "not json", NULL, 0, NULL, &r);
    expect_error(&r, 400, NULL, "invalid_json", NULL);
    char *big = calloc(1, 450000);
    memcpy(big, "RIFF", 4);
    request(f->port, "/v1/audio/transcriptions", talker, NULL, big, 450000, NULL, &r);
    expect_error(&r, 413, NULL, "request_too_large", "limit");
    free(big);
    /* without the right chat: 403, audited as a refusal */
    request(f->port, "/v1/audio/speech", "key-embedder-0123456789", "{\"input\":\"hi\"}", NULL, 0,
            NULL, &r);
    expect_error(&r, 403, NULL, "permission_denied", "speech synthesis");
    assert_int_equal(audited(f, "denied", "embedder", NULL), 1);
    /* the key's requests a minute hold for speech too */
    request(f->port, "/v1/audio/speech", "key-slow-0123456789", "{\"input\":\"hi\"}", NULL, 0, NULL,
            &r);
    assert_int_equal(r.status, 200);
    buf_free(&r.body);
    request(f->port, "/v1/audio/speech", "key-slow-0123456789", "{\"input\":\"hi\"}", NULL, 0, NULL,
            &r);
    expect_error(&r, 429, NULL, "rate_limit_exceeded", NULL);
}

static void test_form_reader(void **state)
{
    (void)state;
    voice_form_part parts[VOICE_FORM_MAX_PARTS];
    size_t n = 0;
    const char body[] = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                        "filename=\"a b.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--x"
                        "\r\n--XyZ\r\ncontent-disposition: form-data; name=model\r\n\r\nw-1"
                        "\r\n--XyZ--\r\nepilogue";
    assert_int_equal(voice_form_parse("multipart/form-data; boundary=\"XyZ\"", body,
                                      sizeof body - 1, parts, &n),
                     LLMOS_OK);
    assert_int_equal(n, 2);
    const voice_form_part *file = voice_form_get(parts, n, "file");
    assert_non_null(file);
    assert_string_equal(file->filename, "a b.wav");
    assert_string_equal(file->type, "audio/wav");
    assert_int_equal(file->len, 9);
    assert_memory_equal(file->data, "RIFF\r\n--x", 9);
    const voice_form_part *model = voice_form_get(parts, n, "model");
    assert_int_equal(model->len, 3);
    assert_null(voice_form_get(parts, n, "nope"));
    static const struct {
        const char *type, *body, *says;
    } bad[] = {
        {"application/json", "{}", "multipart/form-data"},
        {"multipart/form-data", "--a\r\n", "no boundary"},
        {"multipart/form-data; boundary=a", "nothing here", "never has its boundary"},
        {"multipart/form-data; boundary=a", "--a\r\nX: y\r\n\r\ndata\r\n--a--", "no "
                                                                             "Content-Disposition"},
        {"multipart/form-data; boundary=a",
         "--a\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nno end", "never ends"},
        {"multipart/form-data; boundary=a", "--a junk", "line end"},
    };
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bad); i++) {
        assert_int_equal(voice_form_parse(bad[i].type, bad[i].body, strlen(bad[i].body), parts, &n),
                         LLMOS_ERR_FORMAT);
        if (!strstr(llmos_errmsg(), bad[i].says))
            fail_msg("case %zu: '%s' does not say '%s'", i, llmos_errmsg(), bad[i].says);
    }
    /* too many parts */
    llmos_buf many = {0};
    for (int i = 0; i <= VOICE_FORM_MAX_PARTS; i++)
        assert_int_equal(buf_printf(&many, "--b\r\nContent-Disposition: form-data; name=p%d\r\n\r\n"
                                           "x\r\n",
                                    i),
                         LLMOS_OK);
    assert_int_equal(buf_puts(&many, "--b--"), LLMOS_OK);
    assert_int_equal(voice_form_parse("multipart/form-data; boundary=b", many.data, many.len, parts,
                                      &n),
                     LLMOS_ERR_LIMIT);
    buf_free(&many);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_speech_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mistakes_rights_and_limits, setup, teardown),
        cmocka_unit_test(test_form_reader),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
