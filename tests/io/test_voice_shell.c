/*
 * test_voice_shell.c - speech through the shell and `llmos voice`: /voice with a WAV file runs a
 * spoken slash command (grammar mode) or sends a spoken message to the conversation's process
 * (dictation), silence does nothing, a file that is not WAV is an error shown and the shell goes
 * on; the shell's grammar holds its commands and the session's tools; the answer's text reaches
 * a speaking device (on_text) and is spoken sentence by sentence; and the program: `llmos voice
 * --in --out` answers into a WAV file, without a sound device it says to use --out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "doubles.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/repl.h"
#include "llmos/voice.h"
#include "testutil.h"

static char *slurp(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    rewind(f);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fseek(f, 0, SEEK_END);
    return s;
}

typedef struct shell {
    memory *mem;
    kernel *k;
    ksession *s;
    repl *r;
    FILE *out;
    llmos_buf spoken; /* what on_text received */
    int turns_ended;
    char dir[256];
} shell;

static void on_text(void *ctx, const char *text, size_t len)
{
    shell *sh = ctx;
    if (!text)
        sh->turns_ended++;
    else
        assert_int_equal(buf_append(&sh->spoken, text, len), LLMOS_OK);
}

static void shell_open(shell *sh, llm_backend *b)
{
    memset(sh, 0, sizeof *sh);
    assert_int_equal(memory_open_ephemeral(&sh->mem), LLMOS_OK);
    kernel_config kc = {.st = memory_store(sh->mem), .privileged = b};
    assert_int_equal(kernel_new(&kc, &sh->k), LLMOS_OK);
    ksession_params sp = {.principal = "user",
                          .device = "voice",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_COMPUTE | KCAP_MESSAGE};
    assert_int_equal(ksession_open(sh->k, &sp, &sh->s), LLMOS_OK);
    sh->out = tmpfile();
    repl_options o = repl_default_options();
    o.session = sh->s;
    o.out = sh->out;
    o.on_text = on_text;
    o.text_ctx = sh;
    assert_int_equal(repl_new(&o, &sh->r), LLMOS_OK);
    assert_true(tu_mkdtemp("voice-shell", sh->dir, sizeof sh->dir));
}

static void shell_close(shell *sh)
{
    repl_free(sh->r);
    ksession_close(sh->s);
    kernel_free(sh->k);
    memory_close(sh->mem);
    fclose(sh->out);
    buf_free(&sh->spoken);
    tu_rmrf(sh->dir);
}

/* text spoken (en-us, 150 words a minute) into dir/name.wav, with silence around it. */
static void spoken_wav(const shell *sh, const char *name, const char *text, char *path,
                       size_t size)
{
    voice_speech_params p = voice_speech_default_params();
    p.rate = 150;
    voice_audio a = {0};
    assert_int_equal(voice_speak(&p, text, &a), LLMOS_OK);
    voice_audio padded = {.rate = a.rate, .n = a.n + a.rate};
    padded.samples = calloc(padded.n, sizeof *padded.samples);
    assert_non_null(padded.samples);
    memcpy(padded.samples + a.rate / 2, a.samples, a.n * sizeof *a.samples);
    snprintf(path, size, "%s/%s.wav", sh->dir, name);
    assert_int_equal(voice_wav_save(path, &padded), LLMOS_OK);
    voice_audio_free(&a);
    voice_audio_free(&padded);
}

static void test_voice_commands_and_messages(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"It is sunny. Take a hat!\", \"pieces\": 6}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 1, false, &b), LLMOS_OK);
    shell sh;
    shell_open(&sh, b);
    char path[512], line[600];
    bool quit = false;

    /* a spoken command: grammar mode runs the slash command */
    spoken_wav(&sh, "tools", "list the tools", path, sizeof path);
    snprintf(line, sizeof line, "/voice command %s", path);
    assert_int_equal(repl_line(sh.r, line, &quit), LLMOS_OK);
    char *text = slurp(sh.out);
    assert_non_null(strstr(text, "(heard) /tools"));
    assert_non_null(strstr(text, "calculator"));
    free(text);
    assert_int_equal(scripted_test_backend_calls(b), 0); /* a command: no model call */

    /* a spoken message: dictation sends what was heard to the conversation's process */
    spoken_wav(&sh, "weather", "what is the weather like today", path, sizeof path);
    snprintf(line, sizeof line, "/voice %s", path);
    assert_int_equal(repl_line(sh.r, line, &quit), LLMOS_OK);
    assert_int_equal(scripted_test_backend_calls(b), 1);
    assert_true(repl_pid(sh.r) > 0);
    json_t *ctx = NULL;
    assert_int_equal(ksession_context(sh.s, repl_pid(sh.r), &ctx), LLMOS_OK);
    const char *said = json_string_value(json_object_get(json_array_get(ctx, 1), "content"));
    assert_non_null(said);
    assert_true(strlen(said) > 3);
    text = slurp(sh.out);
    char heard[256];
    snprintf(heard, sizeof heard, "(heard) %s", said);
    assert_non_null(strstr(text, heard)); /* the shell shows what it heard and sent */
    free(text);
    json_decref(ctx);
    /* the answer's text went to the speaking device, and the turn's end */
    assert_string_equal(sh.spoken.data, "It is sunny. Take a hat!");
    assert_int_equal(sh.turns_ended, 1);

    /* silence: nothing happens */
    voice_audio quiet = {.samples = calloc(16000, 2), .n = 16000, .rate = 16000};
    snprintf(path, sizeof path, "%s/quiet.wav", sh.dir);
    assert_int_equal(voice_wav_save(path, &quiet), LLMOS_OK);
    voice_audio_free(&quiet);
    snprintf(line, sizeof line, "/voice %s", path);
    assert_int_equal(repl_line(sh.r, line, &quit), LLMOS_OK);
    text = slurp(sh.out);
    assert_non_null(strstr(text, "(no speech heard)"));
    free(text);
    assert_int_equal(scripted_test_backend_calls(b), 1);

    /* not a WAV file: an error shown, the shell goes on */
    snprintf(path, sizeof path, "%s/notes.txt", sh.dir);
    FILE *f = fopen(path, "w");
    fputs("these are notes, not audio", f);
    fclose(f);
    snprintf(line, sizeof line, "/voice %s", path);
    assert_int_equal(repl_line(sh.r, line, &quit), LLMOS_OK);
    assert_false(quit);
    text = slurp(sh.out);
    assert_non_null(strstr(text, "not a WAV file"));
    free(text);

    /* the grammar: the shell's commands and the session's tools */
    voice_grammar *g = NULL;
    assert_int_equal(repl_voice_grammar(sh.r, &g), LLMOS_OK);
    char *l = NULL;
    assert_int_equal(voice_grammar_line(g, "describe the tool send message", &l), LLMOS_OK);
    assert_string_equal(l, "/tools send_message");
    free(l);
    assert_int_equal(voice_grammar_line(g, "slash kill process forty two", &l), LLMOS_OK);
    assert_string_equal(l, "/kill 42");
    free(l);
    /* ask_quarantined is not among this session's tools (no quarantine capability) */
    assert_int_equal(voice_grammar_line(g, "describe the tool ask quarantined", &l),
                     LLMOS_ERR_NOT_FOUND);
    voice_grammar_free(g);
    /* /tools NAME, which the grammar types */
    assert_int_equal(repl_line(sh.r, "/tools send_message", &quit), LLMOS_OK);
    text = slurp(sh.out);
    assert_non_null(strstr(text, "send_message [message]: Send a message"));
    free(text);
    shell_close(&sh);
    llm_backend_free(b);
}

/* `llmos voice --in FILE.wav --out FILE.wav` on stories260K. */
static void test_program(void **state)
{
    (void)state;
    char model[4096];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    shell sh; /* for its folder and spoken_wav only */
    memset(&sh, 0, sizeof sh);
    assert_true(tu_mkdtemp("voice-cli", sh.dir, sizeof sh.dir));
    char in[512], out[600];
    spoken_wav(&sh, "in", "show the audit log", in, sizeof in);
    snprintf(out, sizeof out, "%s/answer.wav", sh.dir);
    llmos_buf o = {0}, e = {0};
    int rc = tu_run_llmos(&o, &e, "voice --model '%s' -t 1 -n 24 --no-store --in '%s' --out '%s'",
                          model, in, out);
    if (rc != 0)
        fail_msg("rc %d: %s %s", rc, o.data ? o.data : "", e.data ? e.data : "");
    assert_non_null(strstr(o.data, "(heard) "));
    voice_audio a = {0};
    assert_int_equal(voice_wav_load(out, 0, &a), LLMOS_OK);
    assert_true(a.n > 0); /* the answer, spoken */
    voice_audio_free(&a);
    buf_clear(&o);
    buf_clear(&e);
    /* --mode command: the audit log, no model */
    rc = tu_run_llmos(&o, &e,
                      "voice --model '%s' -t 1 --no-store --mode command --in '%s' --out '%s'",
                      model, in, out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(o.data, "(heard) /audit"));
    assert_non_null(strstr(o.data, "audit log intact"));
    buf_clear(&o);
    buf_clear(&e);
    /* no --out and no sound device (none in CI): a clear error, before the model loads */
    rc = tu_run_llmos(&o, &e, "voice --model '%s' --no-store --in '%s' --device hw:97,0", model,
                      in);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(e.data, "no sound device"));
    assert_non_null(strstr(e.data, "--out FILE.wav"));
    buf_clear(&e);
    rc = tu_run_llmos(&o, &e, "voice --model '%s' --mode shout --in '%s'", model, in);
    assert_int_equal(rc, 2);
    buf_free(&o);
    buf_free(&e);
    tu_rmrf(sh.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_voice_commands_and_messages),
        cmocka_unit_test(test_program),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
