/*
 * cmd_voice.c - `llmos voice`: talk to llmos. Each utterance runs through the kernel session
 * like a typed message (or, with --mode command, a slash command of the shell), and the answer
 * is spoken sentence by sentence as its text arrives.
 *
 * The voice device is the shell driven by speech: a repl (src/io/repl.c) over the session, its
 * lines coming from the recognizer (repl_voice), its answer's text going to a voice_speaker
 * (on_text). From a file (--in FILE.wav) every utterance the activity detector finds is one
 * turn; without --in the microphone is heard turn after turn (push-to-talk: a pause or Enter
 * ends an utterance). --out FILE.wav writes the speech to a file, else it is played through
 * ALSA; a missing sound device is an error that says to use the files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/backend.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/repl.h"
#include "llmos/voice.h"

typedef struct voice_out {
    voice_speaker *speaker;
    double heard_at; /* when the utterance's recognition ended */
    llmos_err err;
} voice_out;

static void on_text(void *ctx, const char *text, size_t len)
{
    voice_out *o = ctx;
    if (o->err)
        return;
    o->err = text ? voice_speaker_add(o->speaker, text, len) : voice_speaker_flush(o->speaker);
    if (o->err)
        fprintf(stderr, "llmos voice: %s\n", llmos_errmsg());
}

int cmd_voice(int argc, char **argv)
{
    const char *model_path = getenv("LLMOS_MODEL");
    const char *api_url = NULL, *api_model = NULL, *system = NULL, *in = NULL, *out = NULL;
    const char *device = NULL, *mode_s = "dictation";
    voice_speech_params sp = voice_speech_default_params();
    local_backend_params lp = local_backend_default_params();
    sampler_params sampling = sampler_default_params();
    int32_t max_tokens = 256;
    bool no_store = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--no-store") == 0) {
            no_store = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return cli_usage_error("voice", "unknown option '%s' (or it needs a value)", a);
        i++;
        char *end = NULL;
        if (strcmp(a, "--model") == 0)
            model_path = v;
        else if (strcmp(a, "--api") == 0)
            api_url = v;
        else if (strcmp(a, "--api-model") == 0)
            api_model = v;
        else if (strcmp(a, "--system") == 0)
            system = v;
        else if (strcmp(a, "--in") == 0)
            in = v;
        else if (strcmp(a, "--out") == 0)
            out = v;
        else if (strcmp(a, "--device") == 0)
            device = v;
        else if (strcmp(a, "--mode") == 0)
            mode_s = v;
        else if (strcmp(a, "--voice") == 0)
            sp.voice = v;
        else if (strcmp(a, "--rate") == 0 && (sp.rate = (int)strtol(v, &end, 10), !*end))
            continue;
        else if (strcmp(a, "--pitch") == 0 && (sp.pitch = (int)strtol(v, &end, 10), !*end))
            continue;
        else if (strcmp(a, "-n") == 0 && (max_tokens = (int32_t)strtol(v, &end, 10), !*end))
            continue;
        else if (strcmp(a, "-t") == 0 && (lp.n_threads = (int)strtol(v, &end, 10), !*end))
            continue;
        else if (strcmp(a, "--ctx") == 0 && (lp.n_ctx = (uint32_t)strtoul(v, &end, 10), !*end))
            continue;
        else if (strcmp(a, "--temp") == 0 && (sampling.temperature = strtof(v, &end), !*end))
            continue;
        else if (strcmp(a, "--seed") == 0 && (sampling.seed = strtoull(v, &end, 10), !*end))
            continue;
        else
            return cli_usage_error("voice", "unknown option '%s', or a bad value '%s'", a, v);
    }
    voice_mode mode;
    if (!voice_mode_parse(mode_s, &mode) || mode == VOICE_KEYWORD)
        return cli_usage_error("voice", "--mode is dictation or command, not '%s'", mode_s);
    if ((api_url != NULL) != (api_model != NULL))
        return cli_usage_error("voice", "--api URL and --api-model NAME go together");
    if (!api_url && (!model_path || !*model_path))
        return cli_usage_error("voice", "a model is needed: --model FILE (or $LLMOS_MODEL), or "
                                        "--api URL --api-model NAME");
    if (max_tokens <= 0)
        return cli_usage_error("voice", "-n takes a positive token count");
    /* check what can be checked before the model loads: the voice, the audio in and out */
    voice_audio probe = {0};
    llmos_err err = voice_speak(&sp, "", &probe);
    voice_audio_free(&probe);
    voice_audio audio = {0};
    if (!err && in)
        err = voice_wav_load(in, VOICE_RATE, &audio);
    voice_sink *sink = NULL;
    if (!err)
        err = out ? voice_sink_wav(out, 22050, &sink) : voice_sink_alsa(device, 22050, &sink);
    if (err) {
        voice_audio_free(&audio);
        return cli_report(err);
    }

    cli_boot_params bp = {.device = "voice",
                          .system_prompt = system,
                          .max_tokens = max_tokens,
                          .sampling = &sampling,
                          .embed = MEMORY_EMBED_NONE,
                          .ephemeral = no_store || !getenv("LLMOS_PASSPHRASE") ||
                                       !*getenv("LLMOS_PASSPHRASE"),
                          .create = true};
    const char *key = getenv("LLMOS_API_KEY");
    if (api_url) {
        remote_backend_params rp = remote_backend_default_params();
        rp.api_key = key && *key ? key : NULL;
        err = remote_backend_open(api_url, api_model, &rp, &bp.privileged);
    } else {
        fprintf(stderr, "loading %s ...\n", model_path);
        err = local_backend_open(model_path, &lp, &bp.privileged);
    }
    cli_boot b = {0};
    if (!err)
        err = cli_boot_open(&bp, &b); /* owns the backend from here, on failure too */
    else
        llm_backend_free(bp.privileged);
    voice_speaker *speaker = NULL;
    if (!err)
        err = voice_speaker_new(&sp, sink, &speaker);
    if (err) {
        cli_boot_close(&b);
        llmos_err unused = voice_sink_close(sink); /* the first error is the one to report */
        (void)unused;
        voice_audio_free(&audio);
        return cli_report(err);
    }
    voice_out vo = {.speaker = speaker};
    repl_options ro = repl_default_options();
    ro.session = b.s;
    ro.mic = device;
    ro.on_text = on_text;
    ro.text_ctx = &vo;
    ro.handle_sigint = true;
    repl *r = NULL;
    err = repl_new(&ro, &r);
    bool quit = false;
    if (!err && in) {
        voice_segment *segs = NULL;
        size_t n = 0;
        err = voice_vad_segments(&audio, NULL, &segs, &n);
        if (!err && n == 0)
            printf("(no speech in %s)\n", in);
        for (size_t i = 0; !err && !quit && i < n; i++) {
            voice_audio u = {.samples = audio.samples + segs[i].start,
                             .n = segs[i].end - segs[i].start,
                             .rate = audio.rate};
            size_t before = voice_speaker_sentences(speaker, NULL);
            double t0 = voice_now();
            err = repl_voice(r, &u, mode, NULL, &quit);
            double first = 0;
            if (!err && voice_speaker_sentences(speaker, &first) > before)
                fprintf(stderr, "voice: the first sentence was spoken %.2f s after the "
                                "utterance (recognition, the model and synthesis)\n",
                        first - t0);
        }
        free(segs);
    } else if (!err) {
        printf("Speak after the prompt; a pause or Enter ends what you say. Ctrl-C or saying "
               "\"quit\" (with --mode command) leaves.\n");
        char line[32];
        snprintf(line, sizeof line, "/voice%s", mode == VOICE_GRAMMAR ? " command" : "");
        while (!err && !quit && !feof(stdin)) {
            err = repl_line(r, line, &quit);
            if (!err && !isatty(STDIN_FILENO))
                break; /* no one to press Enter: one utterance */
        }
    }
    if (!err)
        err = vo.err;
    repl_free(r);
    voice_speaker_free(speaker);
    llmos_err cerr = voice_sink_close(sink);
    if (!err && cerr)
        err = cerr;
    if (!err && out)
        fprintf(stderr, "voice: the answers were written to %s\n", out);
    voice_audio_free(&audio);
    cli_boot_close(&b);
    return err ? cli_report(err) : CLI_OK;
}
