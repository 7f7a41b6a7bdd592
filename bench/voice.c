/*
 * voice.c - how well the voice device hears, and how fast it answers (bench/README.md).
 *
 * A set of 110 utterances of llmos's own: 60 commands of the shell (each with the line it must
 * become: "kill process forty two" -> "/kill 42") and 50 questions and requests a user says to
 * the model. Each is synthesised by espeak-ng in several voices and speeds, and heard clean and
 * with white noise added at two signal-to-noise ratios (20 dB and 10 dB, against the speech's
 * own level). Then:
 *   grammar mode    the commands against the shell's own grammar (repl_voice_grammar over a
 *                   kernel session: its slash commands, the session's tools, numbers): command
 *                   accuracy, the share whose line comes out exactly right; and how often a
 *                   question, which is no command, is taken for one (false accepts);
 *   dictation mode  every utterance: word error rate (substitutions, insertions and deletions
 *                   over the reference words, numbers written as words);
 *   latency         from the end of speech to the start of the spoken answer, without the
 *                   model: the activity detector's hangover (the silence it waits for before it
 *                   calls the utterance over), recognition of the utterance, and synthesis of
 *                   the answer's first sentence. Medians and 90th percentiles, clean audio.
 *
 * Usage: voice [--quick] [--grammar-only] [--noise DB] [-v]. -v prints each command heard
 * wrong; --noise runs only the conditions of that noise level (0: clean). --quick runs one voice, clean audio only;
 * --grammar-only leaves dictation out. Dictation runs on the three voices clean and on en-us
 * with both noise levels (it takes ten times as long as the grammar).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/repl.h"
#include "llmos/voice.h"

typedef struct phrase {
    const char *said, *line; /* line NULL: a question (no command) */
} phrase;

static const phrase commands[] = {
    {"help", "/help"},
    {"show help", "/help"},
    {"show the help", "/help"},
    {"quit", "/quit"},
    {"exit", "/quit"},
    {"goodbye", "/quit"},
    {"clear", "/clear"},
    {"clear the conversation", "/clear"},
    {"start over", "/clear"},
    {"model", "/model"},
    {"which model", "/model"},
    {"tools", "/tools"},
    {"list tools", "/tools"},
    {"list the tools", "/tools"},
    {"describe the tool calculator", "/tools calculator"},
    {"describe the tool send message", "/tools send_message"},
    {"describe tool ask quarantined", "/tools ask_quarantined"},
    {"describe the tool conversation search", "/tools conversation_search"},
    {"describe the tool archival memory insert", "/tools archival_memory_insert"},
    {"describe the tool core memory append", "/tools core_memory_append"},
    {"processes", "/ps"},
    {"list processes", "/ps"},
    {"show processes", "/ps"},
    {"memory", "/memory"},
    {"show memory", "/memory"},
    {"audit", "/audit"},
    {"show the audit log", "/audit"},
    {"slash help", "/help"},
    {"slash audit", "/audit"},
    {"slash list the tools", "/tools"},
    {"kill process twelve", "/kill 12"},
    {"kill process forty two", "/kill 42"},
    {"kill process seven", "/kill 7"},
    {"stop process one hundred and five", "/kill 105"},
    {"stop process three", "/kill 3"},
    {"kill ninety nine", "/kill 99"},
    {"kill process two thousand and twenty four", "/kill 2024"},
    {"stop process sixty", "/kill 60"},
    {"kill process eighteen", "/kill 18"},
    {"slash kill process five hundred", "/kill 500"},
    {"calculate two plus two", "/calc 2+2"},
    {"calculate twelve times four", "/calc 12*4"},
    {"compute two to the power of one hundred", "/calc 2^100"},
    {"calculate one hundred divided by seven", "/calc 100/7"},
    {"calculate three point five times two", "/calc 3.5*2"},
    {"compute nine minus four", "/calc 9-4"},
    {"calculate one thousand two hundred plus thirty four", "/calc 1200+34"},
    {"compute seventy seven modulo five", "/calc 77%5"},
    {"calculate fifteen times fifteen", "/calc 15*15"},
    {"compute eight divided by two plus one", "/calc 8/2+1"},
    {"calculate six hundred and fifty times three", "/calc 650*3"},
    {"compute zero plus one", "/calc 0+1"},
    {"calculate forty over eight", "/calc 40/8"},
    {"compute three to the power of four", "/calc 3^4"},
    {"calculate twenty one times two", "/calc 21*2"},
    {"calculate ninety minus eleven", "/calc 90-11"},
    {"compute two hundred and fifty six times two", "/calc 256*2"},
    {"calculate one point two five times eight", "/calc 1.25*8"},
    {"compute ten thousand divided by four", "/calc 10000/4"},
    {"calculate seven times six", "/calc 7*6"},
};

static const phrase questions[] = {
    {"what is the capital of france", NULL},
    {"what is the weather like today", NULL},
    {"tell me a short story about a dragon", NULL},
    {"how many processes are running", NULL},
    {"remember that my sister lives in boston", NULL},
    {"what did we talk about yesterday", NULL},
    {"send a message to alice saying i will be late", NULL},
    {"summarize my notes from the meeting", NULL},
    {"what time is it in tokyo", NULL},
    {"how do i make a cup of tea", NULL},
    {"translate good morning into spanish", NULL},
    {"what is the square root of two", NULL},
    {"who wrote the book moby dick", NULL},
    {"set a reminder for my dentist appointment", NULL},
    {"what is my name", NULL},
    {"explain how a computer works", NULL},
    {"what are the tools you can use", NULL},
    {"please read my latest email", NULL},
    {"write a poem about the sea", NULL},
    {"how far is the moon from the earth", NULL},
    {"what should i cook for dinner tonight", NULL},
    {"can you help me plan a trip to italy", NULL},
    {"what is the population of canada", NULL},
    {"give me three ideas for a birthday present", NULL},
    {"how old is the universe", NULL},
    {"what is the meaning of life", NULL},
    {"search my memory for the word project", NULL},
    {"who is the president of the united states", NULL},
    {"what is two plus two", NULL},
    {"play some music", NULL},
    {"turn off the lights in the kitchen", NULL},
    {"what is the best way to learn a language", NULL},
    {"how many days are in a leap year", NULL},
    {"what is the speed of light", NULL},
    {"tell me a joke", NULL},
    {"i would like to order a pizza", NULL},
    {"how do airplanes stay in the air", NULL},
    {"what is the difference between a virus and a bacteria", NULL},
    {"where is the nearest hospital", NULL},
    {"what happened in the news today", NULL},
    {"write a letter to my landlord about the heating", NULL},
    {"what is the longest river in the world", NULL},
    {"how much water should i drink every day", NULL},
    {"recommend a good book to read", NULL},
    {"what languages do you speak", NULL},
    {"how do i reset my password", NULL},
    {"why is the sky blue", NULL},
    {"what is the time", NULL},
    {"open the calendar for next week", NULL},
    {"thank you very much", NULL},
};

typedef struct condition {
    const char *voice;
    int rate;
    double snr_db;  /* 0 = clean */
    bool dictation; /* dictation too (it takes ten times as long as the grammar) */
} condition;

/* xorshift: the same noise every run */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double gauss(void)
{
    double u1, u2;
    do {
        rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
        u1 = (double)(rng_state >> 11) / 9007199254740992.0;
        rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
        u2 = (double)(rng_state >> 11) / 9007199254740992.0;
    } while (u1 <= 1e-12);
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* said, spoken in condition c, with half a second of (noisy) silence on each side. */
static int synthesise(const condition *c, const char *said, voice_audio *out)
{
    voice_speech_params p = voice_speech_default_params();
    p.voice = c->voice;
    p.rate = c->rate;
    voice_audio a = {0};
    if (voice_speak(&p, said, &a)) {
        fprintf(stderr, "voice: %s\n", llmos_errmsg());
        return -1;
    }
    size_t pad = a.rate / 2;
    out->rate = a.rate;
    out->n = a.n + 2 * pad;
    out->samples = calloc(out->n, sizeof *out->samples);
    double power = 0;
    size_t active = 0;
    for (size_t i = 0; i < a.n; i++) {
        out->samples[pad + i] = a.samples[i];
        if (abs(a.samples[i]) > 300) { /* the level of the speech itself, not its pauses */
            power += (double)a.samples[i] * a.samples[i];
            active++;
        }
    }
    if (c->snr_db > 0 && active) {
        double sigma = sqrt(power / active / pow(10, c->snr_db / 10));
        for (size_t i = 0; i < out->n; i++) {
            double v = out->samples[i] + sigma * gauss();
            out->samples[i] = (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
        }
    }
    voice_audio_free(&a);
    return 0;
}

/* Word-level edit distance between two texts (lower case, punctuation dropped). */
static size_t words_of(const char *s, char w[][32], size_t max)
{
    size_t n = 0, k = 0;
    for (const char *p = s;; p++) {
        char c = *p;
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '\'' ||
                      (c >= '0' && c <= '9');
        if (letter && k < 31 && n < max)
            w[n][k++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        else if (k && n < max) {
            w[n++][k] = 0;
            k = 0;
        }
        if (!c)
            break;
    }
    return n;
}

static size_t word_errors(const char *ref, const char *hyp, size_t *n_ref)
{
    static char r[64][32], h[64][32];
    size_t nr = words_of(ref, r, 64), nh = words_of(hyp, h, 64);
    size_t d[65][65];
    for (size_t i = 0; i <= nr; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= nh; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= nr; i++)
        for (size_t j = 1; j <= nh; j++) {
            size_t sub = d[i - 1][j - 1] + (strcmp(r[i - 1], h[j - 1]) != 0);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    *n_ref = nr;
    return d[nr][nh];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double q)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return v[(size_t)(q * (double)(n - 1) + 0.5)];
}

int main(int argc, char **argv)
{
    bool quick = false, grammar_only = false, verbose = false;
    double only_noise = -1; /* --noise DB: only the conditions with that noise (0: clean) */
    for (int i = 1; i < argc; i++) {
        quick |= strcmp(argv[i], "--quick") == 0;
        grammar_only |= strcmp(argv[i], "--grammar-only") == 0;
        verbose |= strcmp(argv[i], "-v") == 0;
        if (strcmp(argv[i], "--noise") == 0 && i + 1 < argc)
            only_noise = atof(argv[++i]);
    }
    /* the shell's own grammar: a session over a store in memory, every tool of the shell */
    memory *mem = NULL;
    kernel *k = NULL;
    ksession *s = NULL;
    repl *r = NULL;
    voice_grammar *g = NULL;
    voice_recognizer *rec = NULL;
    kernel_config kc = {0};
    ksession_params sp = {.principal = "bench",
                          .device = "bench",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_COMPUTE | KCAP_MESSAGE | KCAP_QUARANTINE | KCAP_MEMORY};
    repl_options ro = repl_default_options();
    if (memory_open_ephemeral(&mem) || (kc.st = memory_store(mem), kernel_new(&kc, &k)) ||
        ksession_open(k, &sp, &s) || (ro.session = s, repl_new(&ro, &r)) ||
        repl_voice_grammar(r, &g) ||
        voice_recognizer_new(&(voice_recognizer_params){.grammar = g}, &rec)) {
        fprintf(stderr, "voice: %s\n", llmos_errmsg());
        return 1;
    }
    static const condition all[] = {
        {"en-us", 175, 0, true},    {"en-us+m3", 150, 0, true},   {"en-us+f3", 210, 0, true},
        {"en-us", 175, 20, true},   {"en-us+m3", 150, 20, false}, {"en-us+f3", 210, 20, false},
        {"en-us", 175, 10, true},   {"en-us+m3", 150, 10, false}, {"en-us+f3", 210, 10, false},
    };
    size_t n_cond = quick ? 1 : LLMOS_ARRAY_LEN(all);
    size_t nc = LLMOS_ARRAY_LEN(commands), nq = LLMOS_ARRAY_LEN(questions);
    printf("voice bench: %zu commands, %zu questions; conditions: voice, words a minute, noise\n",
           nc, nq);
    printf("%-10s %4s %6s | %8s %8s | %9s %9s %9s\n", "voice", "wpm", "noise", "cmd_acc",
           "false_acc", "wer_cmds", "wer_quest", "wer_all");
    double *rec_g = malloc(sizeof(double) * nc * n_cond), *rec_d = malloc(sizeof(double) * (nc + nq) * n_cond);
    size_t n_rec_g = 0, n_rec_d = 0;
    size_t tot_right = 0, tot_cmd = 0, tot_fa = 0, tot_q = 0;
    size_t tot_err[2] = {0}, tot_words[2] = {0};
    for (size_t ci = 0; ci < n_cond; ci++) {
        const condition *c = &all[ci];
        if (only_noise >= 0 && c->snr_db != only_noise)
            continue;
        size_t right = 0, fa = 0, err[2] = {0}, words[2] = {0};
        for (size_t i = 0; i < nc + nq; i++) {
            const phrase *p = i < nc ? &commands[i] : &questions[i - nc];
            voice_audio a = {0};
            if (synthesise(c, p->said, &a))
                return 1;
            voice_result res;
            /* grammar mode: commands must come out right; questions must not become commands */
            if (voice_recognize(rec, VOICE_GRAMMAR, &a, &res)) {
                fprintf(stderr, "voice: %s\n", llmos_errmsg());
                return 1;
            }
            if (p->line) {
                right += strcmp(res.text, p->line) == 0;
                if (verbose && strcmp(res.text, p->line) != 0)
                    fprintf(stderr, "  %s %d %.0f: '%s' heard as '%s'\n", c->voice, c->rate,
                            c->snr_db, p->said, res.heard);
                if (c->snr_db == 0)
                    rec_g[n_rec_g++] = res.decode_s;
            } else {
                fa += *res.text != 0;
            }
            voice_result_free(&res);
            if (!c->dictation || grammar_only) {
                voice_audio_free(&a);
                continue;
            }
            if (voice_recognize(rec, VOICE_DICTATION, &a, &res)) {
                fprintf(stderr, "voice: %s\n", llmos_errmsg());
                return 1;
            }
            size_t nr = 0;
            err[!p->line] += word_errors(p->said, res.text, &nr);
            words[!p->line] += nr;
            if (c->snr_db == 0)
                rec_d[n_rec_d++] = res.decode_s;
            voice_result_free(&res);
            voice_audio_free(&a);
        }
        char noise[16];
        snprintf(noise, sizeof noise, c->snr_db > 0 ? "%.0fdB" : "clean", c->snr_db);
        if (words[0])
            printf("%-10s %4d %6s | %7.1f%% %7.1f%% | %8.1f%% %8.1f%% %8.1f%%\n", c->voice,
                   c->rate, noise, 100.0 * right / nc, 100.0 * fa / nq, 100.0 * err[0] / words[0],
                   100.0 * err[1] / words[1], 100.0 * (err[0] + err[1]) / (words[0] + words[1]));
        else
            printf("%-10s %4d %6s | %7.1f%% %7.1f%% | %9s %9s %9s\n", c->voice, c->rate, noise,
                   100.0 * right / nc, 100.0 * fa / nq, "-", "-", "-");
        fflush(stdout);
        tot_right += right, tot_cmd += nc, tot_fa += fa, tot_q += nq;
        for (int m = 0; m < 2; m++)
            tot_err[m] += err[m], tot_words[m] += words[m];
    }
    printf("%-10s %4s %6s | %7.1f%% %7.1f%% |", "all", "", "", 100.0 * tot_right / tot_cmd,
           100.0 * tot_fa / tot_q);
    if (tot_words[0])
        printf(" %8.1f%% %8.1f%% %8.1f%%\n", 100.0 * tot_err[0] / tot_words[0],
               100.0 * tot_err[1] / tot_words[1],
               100.0 * (tot_err[0] + tot_err[1]) / (tot_words[0] + tot_words[1]));
    else
        printf("\n");

    /* latency without the model: hangover + recognition + the first sentence's synthesis */
    double tts[20];
    voice_speech_params p = voice_speech_default_params();
    for (int i = 0; i < 20; i++) {
        voice_audio a = {0};
        double t0 = voice_now();
        if (voice_speak(&p, "The capital of France is Paris.", &a))
            return 1;
        tts[i] = voice_now() - t0;
        voice_audio_free(&a);
    }
    double hang = 0.6; /* voice_vad_params' default hangover */
    double tts50 = pct(tts, 20, 0.5), tts90 = pct(tts, 20, 0.9);
    double g50 = pct(rec_g, n_rec_g, 0.5), g90 = pct(rec_g, n_rec_g, 0.9);
    double d50 = pct(rec_d, n_rec_d, 0.5), d90 = pct(rec_d, n_rec_d, 0.9);
    printf("\nlatency from the end of speech to the first spoken audio, without the model "
           "(median / p90, seconds):\n");
    printf("  activity detector's hangover   %.3f\n", hang);
    printf("  recognition, grammar mode      %.3f / %.3f\n", g50, g90);
    printf("  recognition, dictation mode    %.3f / %.3f\n", d50, d90);
    printf("  synthesis of a first sentence  %.3f / %.3f\n", tts50, tts90);
    printf("  total, grammar mode            %.3f / %.3f\n", hang + g50 + tts50, hang + g90 + tts90);
    printf("  total, dictation mode          %.3f / %.3f\n", hang + d50 + tts50, hang + d90 + tts90);
    free(rec_g);
    free(rec_d);
    voice_recognizer_free(rec);
    voice_grammar_free(g);
    repl_free(r);
    ksession_close(s);
    kernel_free(k);
    memory_close(mem);
    return 0;
}
