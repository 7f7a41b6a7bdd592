/*
 * voice.c - speech for the voice device (llmos/voice.h): synthesis with libespeak-ng, the
 * command grammar (JSGF) and its reading back into typed lines, recognition with
 * libpocketsphinx in dictation, grammar and keyword modes, and the speaker that speaks an
 * answer sentence by sentence as its text arrives.
 *
 * espeak-ng keeps one synthesizer per process with global settings, so every synthesis runs
 * under one lock (voice, rate and pitch set each time). pocketsphinx (0.8, the ps_* API with a
 * cmd_ln configuration) holds one decoder per recognizer with three named searches: the
 * general language model ("dictation"), the keyword spotter ("wake") and, once a grammar is
 * set, the grammar ("grammar"); a recognition switches to the search of its mode.
 *
 * The grammar is built from what llmos can do at that moment: the shell's slash commands with
 * the ways each may be said, the tools' names and numbers in words. The recognizer can only
 * hear its phrases, so a heard phrase maps back to exactly one line: voice_grammar_line reads
 * the words with the same rules the JSGF text was written from (numbers, operators, tools).
 */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <espeak-ng/speak_lib.h>
#include <pocketsphinx.h>
#include <sphinxbase/fsg_model.h>
#include <sphinxbase/jsgf.h>

#include "llmos/voice.h"

#define VOICE_DEFAULT_MODEL "/usr/share/pocketsphinx/model/en-us"
#define VOICE_DEFAULT_WAKE  "hey computer"
#define SPEAKER_MAX_CHARS   400 /* a sentence longer than this is cut at a space */

/* ---- synthesis ---------------------------------------------------------------------------- */

static pthread_mutex_t es_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t es_once = PTHREAD_ONCE_INIT;
static int es_rate; /* samples a second; <= 0 when espeak-ng failed to start */

static void es_init(void)
{
    es_rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, espeakINITIALIZE_DONT_EXIT);
}

typedef struct es_collect {
    int16_t *s;
    size_t n, cap;
    bool oom;
} es_collect;

static int es_callback(short *wav, int n, espeak_EVENT *ev)
{
    es_collect *c = ev ? ev->user_data : NULL;
    if (!c || !wav || n <= 0)
        return 0;
    if (c->n + (size_t)n > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16384;
        while (cap < c->n + (size_t)n)
            cap *= 2;
        int16_t *g = realloc(c->s, cap * sizeof *g);
        if (!g) {
            c->oom = true;
            return 1; /* stop */
        }
        c->s = g;
        c->cap = cap;
    }
    memcpy(c->s + c->n, wav, (size_t)n * sizeof *wav);
    c->n += (size_t)n;
    return 0;
}

voice_speech_params voice_speech_default_params(void)
{
    return (voice_speech_params){.voice = "en-us", .rate = 175, .pitch = 50};
}

llmos_err voice_speak(const voice_speech_params *pp, const char *text, voice_audio *out)
{
    memset(out, 0, sizeof *out);
    voice_speech_params p = pp ? *pp : voice_speech_default_params();
    const char *voice = p.voice && *p.voice ? p.voice : "en-us";
    int rate = p.rate ? p.rate : 175, pitch = p.pitch < 0 ? 50 : p.pitch;
    if (rate < 80 || rate > 450)
        return llmos_fail(LLMOS_ERR_INVALID, "a speech rate of %d words a minute; 80 to 450", rate);
    if (pitch > 99)
        return llmos_fail(LLMOS_ERR_INVALID, "a pitch of %d; 0 to 99", pitch);
    size_t vl = strlen(voice);
    bool ok = vl < 64;
    for (size_t i = 0; ok && i < vl; i++)
        ok = isalnum((unsigned char)voice[i]) || strchr("-_+", voice[i]);
    if (!ok)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "voice '%.64s': a voice is an espeak-ng name like en-us, en-us+m3 or "
                          "en-us+f3 (espeak-ng --voices lists them)",
                          voice);
    if (!utf8_valid(text, strlen(text)))
        return llmos_fail(LLMOS_ERR_INVALID, "the text to speak is not UTF-8");
    pthread_once(&es_once, es_init);
    if (es_rate <= 0)
        return llmos_fail(LLMOS_ERR_NOT_FOUND,
                          "espeak-ng could not start: is its data installed (the Debian package "
                          "espeak-ng-data)?");
    es_collect c = {0};
    pthread_mutex_lock(&es_mu);
    llmos_err err = LLMOS_OK;
    if (espeak_SetVoiceByName(voice) != EE_OK)
        err = llmos_fail(LLMOS_ERR_INVALID,
                         "espeak-ng has no voice '%s' (try en-us, en-us+f3, en-us+m3; "
                         "espeak-ng --voices lists them)",
                         voice);
    if (!err && (espeak_SetParameter(espeakRATE, rate, 0) != EE_OK ||
                 espeak_SetParameter(espeakPITCH, pitch, 0) != EE_OK))
        err = llmos_fail(LLMOS_ERR_INTERNAL, "espeak-ng refused rate %d or pitch %d", rate, pitch);
    if (!err && *text) {
        espeak_SetSynthCallback(es_callback);
        if (espeak_Synth(text, strlen(text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, &c) !=
            EE_OK)
            err = llmos_fail(LLMOS_ERR_INTERNAL, "espeak-ng could not speak the text");
        else if (espeak_Synchronize() != EE_OK)
            err = llmos_fail(LLMOS_ERR_INTERNAL, "espeak-ng failed while speaking");
    }
    pthread_mutex_unlock(&es_mu);
    if (!err && c.oom)
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for the speech");
    if (err) {
        free(c.s);
        return err;
    }
    out->samples = c.s ? c.s : calloc(1, sizeof *out->samples);
    out->n = c.n;
    out->rate = (uint32_t)es_rate;
    if (!out->samples)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the speech");
    return LLMOS_OK;
}

/* ---- numbers in words --------------------------------------------------------------------- */

static const char *const units[] = {"zero", "one", "two",   "three", "four",
                                    "five", "six", "seven", "eight", "nine"};
static const char *const teens[] = {"ten",     "eleven",  "twelve",    "thirteen", "fourteen",
                                    "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"};
static const char *const tens[] = {"",      "",      "twenty",  "thirty", "forty",
                                   "fifty", "sixty", "seventy", "eighty", "ninety"};

static int word_index(const char *w, const char *const *list, int n)
{
    for (int i = 0; i < n; i++)
        if (list[i][0] && strcmp(w, list[i]) == 0)
            return i;
    return -1;
}

/* 1..99 at w[0..n): value, or -1; *used words. */
static int parse_n99(const char *const *w, size_t n, size_t *used)
{
    if (n == 0)
        return -1;
    int d = word_index(w[0], units, 10);
    if (d >= 1) {
        *used = 1;
        return d;
    }
    int t = word_index(w[0], teens, 10);
    if (t >= 0) {
        *used = 1;
        return 10 + t;
    }
    t = word_index(w[0], tens, 10);
    if (t >= 2) {
        int u = n > 1 ? word_index(w[1], units, 10) : -1;
        *used = u >= 1 ? 2 : 1;
        return t * 10 + (u >= 1 ? u : 0);
    }
    return -1;
}

/* 1..999: "[DIGIT hundred [and]] [N99]". */
static int parse_n999(const char *const *w, size_t n, size_t *used)
{
    int d = n > 1 ? word_index(w[0], units, 10) : -1;
    if (d >= 1 && strcmp(w[1], "hundred") == 0) {
        size_t i = 2, u = 0;
        if (i < n && strcmp(w[i], "and") == 0 && i + 1 < n) {
            int r = parse_n99(w + i + 1, n - i - 1, &u);
            if (r > 0) {
                *used = i + 1 + u;
                return d * 100 + r;
            }
        }
        int r = parse_n99(w + i, n - i, &u);
        if (r > 0) {
            *used = i + u;
            return d * 100 + r;
        }
        *used = 2;
        return d * 100;
    }
    return parse_n99(w, n, used);
}

bool voice_number_parse(const char *const *w, size_t n, double *value, size_t *used)
{
    size_t i = 0;
    double total = 0;
    if (n > 0 && strcmp(w[0], "zero") == 0) {
        i = 1;
    } else {
        static const struct {
            const char *word;
            double scale;
        } scales[] = {{"million", 1e6}, {"thousand", 1e3}};
        size_t u = 0;
        int cur = parse_n999(w, n, &u);
        if (cur < 0)
            return false;
        i = u;
        size_t next_scale = 0; /* scales must come in decreasing order */
        for (;;) {
            size_t s = next_scale;
            while (s < LLMOS_ARRAY_LEN(scales) && !(i < n && strcmp(w[i], scales[s].word) == 0))
                s++;
            if (s == LLMOS_ARRAY_LEN(scales))
                break;
            total += cur * scales[s].scale;
            cur = 0;
            i++;
            next_scale = s + 1;
            size_t j = i;
            if (j < n && strcmp(w[j], "and") == 0)
                j++;
            int r = parse_n999(w + j, n - j, &u);
            if (r > 0) {
                cur = r;
                i = j + u;
            } else {
                break;
            }
        }
        total += cur;
    }
    /* decimals: "point" and digits */
    if (i + 1 < n && strcmp(w[i], "point") == 0) {
        double scale = 0.1, frac = 0;
        size_t j = i + 1;
        for (; j < n; j++) {
            int d = strcmp(w[j], "oh") == 0 ? 0 : word_index(w[j], units, 10);
            if (d < 0)
                break;
            frac += d * scale;
            scale /= 10;
        }
        if (j > i + 1) {
            total += frac;
            i = j;
        }
    }
    *value = total;
    *used = i;
    return true;
}

/* Append a word (a space before it unless first) to out[0..size). */
static void put_word(char *out, size_t size, const char *w)
{
    size_t n = strlen(out);
    if (n + 1 < size)
        snprintf(out + n, size - n, "%s%s", n ? " " : "", w);
}

static void n999_words(int v, char *out, size_t size)
{
    if (v >= 100) {
        put_word(out, size, units[v / 100]);
        put_word(out, size, "hundred");
        v %= 100;
    }
    if (v >= 20) {
        put_word(out, size, tens[v / 10]);
        if (v % 10)
            put_word(out, size, units[v % 10]);
    } else if (v >= 10) {
        put_word(out, size, teens[v - 10]);
    } else if (v > 0) {
        put_word(out, size, units[v]);
    }
}

void voice_number_words(int64_t v, char *out, size_t size)
{
    if (size == 0)
        return;
    out[0] = 0;
    if (v < 0) {
        put_word(out, size, "minus");
        v = v == INT64_MIN ? INT64_MAX : -v;
    }
    v %= 1000000000; /* beyond what the grammar says */
    if (v == 0)
        put_word(out, size, "zero");
    if (v >= 1000000) {
        n999_words((int)(v / 1000000), out, size);
        put_word(out, size, "million");
        v %= 1000000;
    }
    if (v >= 1000) {
        n999_words((int)(v / 1000), out, size);
        put_word(out, size, "thousand");
        v %= 1000;
    }
    n999_words((int)v, out, size);
}

/* ---- the command grammar ------------------------------------------------------------------ */

/* Spoken operators, as the grammar says them, and what the calculator is given. */
static const struct {
    const char *spoken;
    const char *op;
} voice_ops[] = {
    {"plus", "+"},       {"minus", "-"}, {"times", "*"},           {"multiplied by", "*"},
    {"divided by", "/"}, {"over", "/"},  {"to the power of", "^"}, {"modulo", "%"},
};

struct voice_grammar {
    voice_command *cmds; /* copies */
    size_t n;
    char **tools; /* names */
    size_t n_tools;
    char *jsgf;
};

/* Are s's words lower-case letters (and apostrophes), separated by single spaces? */
static bool spoken_ok(const char *s, size_t len)
{
    if (len == 0 || s[0] == ' ' || s[len - 1] == ' ')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || c == '\'' || (c == ' ' && s[i + 1] != ' ')))
            return false;
    }
    return true;
}

void voice_grammar_free(voice_grammar *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        free((char *)g->cmds[i].line);
        free((char *)g->cmds[i].spoken);
    }
    for (size_t i = 0; i < g->n_tools; i++)
        free(g->tools[i]);
    free(g->cmds);
    free(g->tools);
    free(g->jsgf);
    free(g);
}

/* The JSGF text: numbers, operators, tools, then one rule per command and the public rule. */
static llmos_err grammar_write(voice_grammar *g)
{
    llmos_buf b = {0};
    llmos_err err = buf_puts(&b, "#JSGF V1.0;\ngrammar llmos;\n");
    err = err ? err
              : buf_puts(&b, "<digit> = one | two | three | four | five | six | seven | "
                             "eight | nine;\n");
    err = err ? err
              : buf_puts(&b, "<teen> = ten | eleven | twelve | thirteen | fourteen | "
                             "fifteen | sixteen | seventeen | eighteen | nineteen;\n");
    err = err ? err
              : buf_puts(&b, "<tens> = twenty | thirty | forty | fifty | sixty | seventy | "
                             "eighty | ninety;\n");
    err = err ? err : buf_puts(&b, "<n99> = <digit> | <teen> | <tens> [<digit>];\n");
    err = err ? err : buf_puts(&b, "<n999> = <n99> | <digit> hundred [[and] <n99>];\n");
    err = err ? err : buf_puts(&b, "<n999999> = <n999> [thousand [[and] <n999>]];\n");
    err = err ? err : buf_puts(&b, "<number> = zero | <n999999>;\n");
    err = err ? err : buf_puts(&b, "<decimal> = <number> [point <place> [<place> [<place>]]];\n");
    err = err ? err : buf_puts(&b, "<place> = zero | oh | <digit>;\n");
    err = err ? err : buf_puts(&b, "<op> = ");
    for (size_t i = 0; !err && i < LLMOS_ARRAY_LEN(voice_ops); i++)
        err = buf_printf(&b, "%s%s", i ? " | " : "", voice_ops[i].spoken);
    err = err ? err
              : buf_puts(&b, ";\n<expression> = <decimal> [<op> <decimal> [<op> <decimal>]];\n");
    if (g->n_tools) {
        err = err ? err : buf_puts(&b, "<tool> = ");
        for (size_t i = 0; !err && i < g->n_tools; i++) {
            err = buf_puts(&b, i ? " | " : "");
            for (const char *c = g->tools[i]; !err && *c; c++)
                err = buf_putc(&b, *c == '_' ? ' ' : *c);
        }
        err = err ? err : buf_puts(&b, ";\n");
    }
    for (size_t i = 0; !err && i < g->n; i++) {
        const voice_command *c = &g->cmds[i];
        err = buf_printf(&b, "<c%zu> = (", i);
        for (const char *s = c->spoken; !err && *s; s++)
            err = *s == '|' ? buf_puts(&b, " | ") : buf_putc(&b, *s);
        const char *arg = c->arg == VOICE_ARG_NUMBER       ? " <number>"
                          : c->arg == VOICE_ARG_EXPRESSION ? " <expression>"
                          : c->arg == VOICE_ARG_TOOL       ? " <tool>"
                                                           : "";
        err = err ? err : buf_printf(&b, ")%s;\n", arg);
    }
    err = err ? err : buf_puts(&b, "public <command> = [slash] (");
    for (size_t i = 0; !err && i < g->n; i++)
        err = buf_printf(&b, "%s<c%zu>", i ? " | " : "", i);
    err = err ? err : buf_puts(&b, ");\n");
    if (err) {
        buf_free(&b);
        return err;
    }
    g->jsgf = buf_detach(&b, NULL);
    return LLMOS_OK;
}

llmos_err voice_grammar_new(const voice_command *cmds, size_t n, const char *const *tools,
                            size_t n_tools, voice_grammar **out)
{
    *out = NULL;
    if (n == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "a command grammar needs at least one command");
    voice_grammar *g = calloc(1, sizeof *g);
    if (!g)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the grammar");
    g->cmds = calloc(n, sizeof *g->cmds);
    g->tools = calloc(n_tools ? n_tools : 1, sizeof *g->tools);
    if (!g->cmds || !g->tools) {
        voice_grammar_free(g);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the grammar");
    }
    for (size_t i = 0; i < n; i++) {
        const char *sp = cmds[i].spoken;
        /* each alternative must be words */
        for (const char *a = sp; a;) {
            const char *bar = strchr(a, '|');
            size_t len = bar ? (size_t)(bar - a) : strlen(a);
            if (!spoken_ok(a, len)) {
                voice_grammar_free(g);
                return llmos_fail(LLMOS_ERR_INVALID,
                                  "the command %s is said as '%s': ways to say a command are "
                                  "lower-case words, with '|' between them",
                                  cmds[i].line, sp);
            }
            a = bar ? bar + 1 : NULL;
        }
        g->cmds[i].line = strdup(cmds[i].line);
        g->cmds[i].spoken = strdup(sp);
        g->cmds[i].arg = cmds[i].arg;
        g->n++;
        if (!g->cmds[i].line || !g->cmds[i].spoken) {
            voice_grammar_free(g);
            return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the grammar");
        }
    }
    for (size_t i = 0; i < n_tools; i++) {
        const char *t = tools[i];
        bool ok = *t != 0 && *t != '_';
        for (const char *c = t; ok && *c; c++)
            ok = (*c >= 'a' && *c <= 'z') || (*c == '_' && c[1] != '_' && c[1]);
        if (!ok)
            continue; /* a name that cannot be said (digits, capitals) is left out */
        if (!(g->tools[g->n_tools] = strdup(t))) {
            voice_grammar_free(g);
            return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the grammar");
        }
        g->n_tools++;
    }
    llmos_err err = grammar_write(g);
    if (err) {
        voice_grammar_free(g);
        return err;
    }
    *out = g;
    return LLMOS_OK;
}

const char *voice_grammar_jsgf(const voice_grammar *g)
{
    return g->jsgf;
}

/* Does the word sequence `phrase` ("kill process") start w[0..n)? How many words. */
static size_t phrase_match(const char *phrase, size_t plen, const char *const *w, size_t n)
{
    size_t i = 0;
    const char *p = phrase, *end = phrase + plen;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        size_t len = sp ? (size_t)(sp - p) : (size_t)(end - p);
        if (i >= n || strlen(w[i]) != len || strncmp(w[i], p, len) != 0)
            return 0;
        i++;
        p += len + (sp ? 1 : 0);
    }
    return i;
}

/* A number for the calculator: integers as digits, decimals with up to 9 places. */
static llmos_err put_number(llmos_buf *b, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        return buf_printf(b, "%.0f", v);
    char s[64];
    snprintf(s, sizeof s, "%.9f", v);
    size_t l = strlen(s);
    while (l > 0 && s[l - 1] == '0')
        s[--l] = 0;
    return buf_puts(b, s);
}

/* w[0..n) read as the argument of kind `arg` into b; false when it is not one. */
static bool read_arg(const voice_grammar *g, voice_arg arg, const char *const *w, size_t n,
                     llmos_buf *b)
{
    double v;
    size_t used;
    switch (arg) {
    case VOICE_ARG_NONE: return n == 0;
    case VOICE_ARG_NUMBER:
        if (!voice_number_parse(w, n, &v, &used) || used != n || v != floor(v))
            return false;
        return buf_putc(b, ' ') == LLMOS_OK && put_number(b, v) == LLMOS_OK;
    case VOICE_ARG_EXPRESSION: {
        if (buf_putc(b, ' '))
            return false;
        size_t i = 0;
        for (;;) {
            if (!voice_number_parse(w + i, n - i, &v, &used) || put_number(b, v))
                return false;
            i += used;
            if (i == n)
                return true;
            size_t k = 0, m = 0;
            for (; k < LLMOS_ARRAY_LEN(voice_ops); k++) {
                m = phrase_match(voice_ops[k].spoken, strlen(voice_ops[k].spoken), w + i, n - i);
                if (m)
                    break;
            }
            if (!m || buf_puts(b, voice_ops[k].op))
                return false;
            i += m;
        }
    }
    case VOICE_ARG_TOOL:
        for (size_t t = 0; t < g->n_tools; t++) {
            char spoken[256];
            snprintf(spoken, sizeof spoken, "%s", g->tools[t]);
            for (char *c = spoken; *c; c++)
                if (*c == '_')
                    *c = ' ';
            if (phrase_match(spoken, strlen(spoken), w, n) == n && n > 0)
                return buf_printf(b, " %s", g->tools[t]) == LLMOS_OK;
        }
        return false;
    }
    return false;
}

llmos_err voice_grammar_line(const voice_grammar *g, const char *words, char **line)
{
    *line = NULL;
    char *copy = strdup(words);
    const char *w[128];
    size_t n = 0;
    if (!copy)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    for (char *save = NULL, *t = strtok_r(copy, " \t\n", &save); t && n < LLMOS_ARRAY_LEN(w);
         t = strtok_r(NULL, " \t\n", &save))
        w[n++] = t;
    size_t skip = n > 0 && strcmp(w[0], "slash") == 0;
    llmos_buf b = {0};
    bool found = false;
    /* the longest way of saying a command that starts the words, whose rest is its argument */
    for (size_t i = 0; i < g->n && !found; i++) {
        for (const char *a = g->cmds[i].spoken; a && !found;) {
            const char *bar = strchr(a, '|');
            size_t len = bar ? (size_t)(bar - a) : strlen(a);
            size_t m = phrase_match(a, len, w + skip, n - skip);
            if (m) {
                buf_clear(&b);
                found = buf_puts(&b, g->cmds[i].line) == LLMOS_OK &&
                        read_arg(g, g->cmds[i].arg, w + skip + m, n - skip - m, &b);
            }
            a = bar ? bar + 1 : NULL;
        }
    }
    free(copy);
    if (!found) {
        buf_free(&b);
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "'%.200s' is not a command of the grammar", words);
    }
    *line = buf_detach(&b, NULL);
    return LLMOS_OK;
}

/* ---- recognition -------------------------------------------------------------------------- */

struct voice_recognizer {
    ps_decoder_t *ps;
    cmd_ln_t *config;
    const voice_grammar *grammar; /* the one set as the "grammar" search */
    char wake[128];
};

const char *voice_mode_name(voice_mode m)
{
    switch (m) {
    case VOICE_DICTATION: return "dictation";
    case VOICE_GRAMMAR: return "grammar";
    case VOICE_KEYWORD: return "keyword";
    }
    return "?";
}

bool voice_mode_parse(const char *s, voice_mode *out)
{
    if (strcmp(s, "dictation") == 0)
        *out = VOICE_DICTATION;
    else if (strcmp(s, "grammar") == 0 || strcmp(s, "command") == 0 || strcmp(s, "commands") == 0)
        *out = VOICE_GRAMMAR;
    else if (strcmp(s, "keyword") == 0 || strcmp(s, "wake") == 0)
        *out = VOICE_KEYWORD;
    else
        return false;
    return true;
}

void voice_recognizer_free(voice_recognizer *r)
{
    if (!r)
        return;
    if (r->ps)
        ps_free(r->ps);
    if (r->config)
        cmd_ln_free_r(r->config);
    free(r);
}

/* Are all the words of text in the decoder's dictionary? The first missing one in *missing. */
static bool words_known(ps_decoder_t *ps, const char *text, char *missing, size_t size)
{
    char word[128];
    for (const char *p = text; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        snprintf(word, sizeof word, "%.*s", (int)(n < sizeof word ? n : sizeof word - 1), p);
        char *pron = ps_lookup_word(ps, word);
        if (!pron) {
            snprintf(missing, size, "%s", word);
            return false;
        }
        ckd_free(pron);
        p += n;
    }
    return true;
}

llmos_err voice_recognizer_new(const voice_recognizer_params *pp, voice_recognizer **out)
{
    *out = NULL;
    voice_recognizer_params p = pp ? *pp : (voice_recognizer_params){0};
    const char *dir = p.model_dir;
    if (!dir || !*dir)
        dir = getenv("LLMOS_VOICE_MODEL");
    if (!dir || !*dir)
        dir = VOICE_DEFAULT_MODEL;
    char hmm[4200], mdef[4300], lm[4200], dict[4200];
    snprintf(hmm, sizeof hmm, "%s/en-us", dir);
    snprintf(mdef, sizeof mdef, "%s/mdef", hmm);
    snprintf(lm, sizeof lm, "%s/en-us.lm.bin", dir);
    snprintf(dict, sizeof dict, "%s/cmudict-en-us.dict", dir);
    const char *need[] = {mdef, lm, dict};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(need); i++) {
        FILE *f = fopen(need[i], "rb");
        if (!f)
            return llmos_fail(LLMOS_ERR_NOT_FOUND,
                              "the speech recognition model is not at %s (%s is missing): "
                              "install the Debian package pocketsphinx-en-us, or set "
                              "LLMOS_VOICE_MODEL to a folder with en-us/, en-us.lm.bin and "
                              "cmudict-en-us.dict",
                              dir, need[i]);
        fclose(f);
    }
    char threshold[32];
    snprintf(threshold, sizeof threshold, "%g", p.wake_threshold > 0 ? p.wake_threshold : 1e-20);
    voice_recognizer *r = calloc(1, sizeof *r);
    if (!r)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the recognizer");
    snprintf(r->wake, sizeof r->wake, "%s", p.wake && *p.wake ? p.wake : VOICE_DEFAULT_WAKE);
    r->config = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", hmm, "-dict", dict, "-logfn",
                            "/dev/null", "-kws_threshold", threshold, "-kws_plp", "1e-12", NULL);
    if (r->config)
        r->ps = ps_init(r->config);
    if (!r->ps) {
        voice_recognizer_free(r);
        return llmos_fail(LLMOS_ERR_FORMAT, "pocketsphinx could not load the model in %s", dir);
    }
    if (ps_set_lm_file(r->ps, "dictation", lm) < 0) {
        voice_recognizer_free(r);
        return llmos_fail(LLMOS_ERR_FORMAT, "pocketsphinx could not load the language model %s",
                          lm);
    }
    char missing[128];
    if (!words_known(r->ps, r->wake, missing, sizeof missing)) {
        voice_recognizer_free(r);
        return llmos_fail(LLMOS_ERR_INVALID,
                          "the wake phrase '%s' has the word '%s', which is not in the "
                          "recognizer's dictionary",
                          p.wake ? p.wake : VOICE_DEFAULT_WAKE, missing);
    }
    if (ps_set_keyphrase(r->ps, "wake", r->wake) < 0) {
        voice_recognizer_free(r);
        return llmos_fail(LLMOS_ERR_INVALID, "pocketsphinx refused the wake phrase '%s'", r->wake);
    }
    if (p.grammar) {
        llmos_err err = voice_recognizer_set_grammar(r, p.grammar);
        if (err) {
            voice_recognizer_free(r);
            return err;
        }
    }
    *out = r;
    return LLMOS_OK;
}

llmos_err voice_recognizer_set_grammar(voice_recognizer *r, const voice_grammar *g)
{
    /* every word must be in the dictionary, or pocketsphinx refuses the whole grammar: say
     * which one */
    char missing[128];
    for (size_t i = 0; i < g->n; i++) {
        char alt[1024];
        snprintf(alt, sizeof alt, "%s", g->cmds[i].spoken);
        for (char *c = alt; *c; c++)
            if (*c == '|')
                *c = ' ';
        if (!words_known(r->ps, alt, missing, sizeof missing))
            return llmos_fail(LLMOS_ERR_INVALID,
                              "the command %s is said with the word '%s', which is not in the "
                              "recognizer's dictionary",
                              g->cmds[i].line, missing);
    }
    for (size_t i = 0; i < g->n_tools; i++) {
        char spoken[256];
        snprintf(spoken, sizeof spoken, "%s", g->tools[i]);
        for (char *c = spoken; *c; c++)
            if (*c == '_')
                *c = ' ';
        if (!words_known(r->ps, spoken, missing, sizeof missing))
            return llmos_fail(LLMOS_ERR_INVALID,
                              "the tool %s has the word '%s' in its name, which is not in the "
                              "recognizer's dictionary",
                              g->tools[i], missing);
    }
    /* parsed and built here rather than with ps_set_jsgf_string, which in pocketsphinx
     * 5prealpha never frees the parsed grammar (a leak per grammar set) */
    jsgf_t *jsgf = jsgf_parse_string(g->jsgf, NULL);
    jsgf_rule_t *top = jsgf ? jsgf_get_public_rule(jsgf) : NULL;
    fsg_model_t *fsg =
        top ? jsgf_build_fsg(jsgf, top, ps_get_logmath(r->ps), cmd_ln_float32_r(r->config, "-lw"))
            : NULL;
    int rc = fsg ? ps_set_fsg(r->ps, "grammar", fsg) : -1;
    fsg_model_free(fsg); /* the search keeps its own reference */
    if (jsgf)
        jsgf_grammar_free(jsgf);
    if (rc < 0)
        return llmos_fail(LLMOS_ERR_INVALID, "pocketsphinx refused the command grammar");
    r->grammar = g;
    return LLMOS_OK;
}

void voice_result_free(voice_result *res)
{
    if (!res)
        return;
    free(res->text);
    free(res->heard);
    memset(res, 0, sizeof *res);
}

/* The acoustic model was trained on recorded speech, which is never silent: stretches of
 * digital silence (synthesised speech, a muted microphone, padding) give features far from any
 * it knows, and the decoder then loses words next to them. A faint, fixed noise floor (uniform,
 * +-NOISE_FLOOR of 32767: about -58 dB, below any real recording's) is added before decoding.
 * The generator is seeded the same each time. */
#define NOISE_FLOOR 64

static void add_noise_floor(voice_audio *a)
{
    const int amp = NOISE_FLOOR;
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < a->n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        int v = a->samples[i] + (int)(x % (uint32_t)(2 * amp + 1)) - amp;
        a->samples[i] = (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
    }
}

/* Run the decoder's current search over s[0..n); the hypothesis (malloc'd, "" for none).
 * keyword: the search is the wake-phrase spotter (the caller says so: pocketsphinx 5prealpha's
 * ps_get_search leaks the hash-table iterator it stops early). */
static llmos_err decode(voice_recognizer *r, bool keyword, const int16_t *s, size_t n, char **hyp)
{
    *hyp = NULL;
    if (ps_start_utt(r->ps) < 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "pocketsphinx could not start an utterance");
    /* in pieces of a second: the keyword spotter reports what it found along the way */
    const char *found = NULL;
    size_t piece = keyword ? VOICE_RATE : n; /* other searches take the utterance whole */
    for (size_t off = 0; off < n; off += piece) {
        size_t len = n - off < piece ? n - off : piece;
        if (ps_process_raw(r->ps, s + off, len, FALSE, keyword ? FALSE : TRUE) < 0) {
            ps_end_utt(r->ps);
            return llmos_fail(LLMOS_ERR_INTERNAL, "pocketsphinx failed on the audio");
        }
        if (keyword && (found = ps_get_hyp(r->ps, NULL)) != NULL && *found)
            break;
    }
    ps_end_utt(r->ps);
    const char *h = found && *found ? found : ps_get_hyp(r->ps, NULL);
    *hyp = strdup(h ? h : "");
    if (!*hyp)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    return LLMOS_OK;
}

llmos_err voice_recognize(voice_recognizer *r, voice_mode m, const voice_audio *a,
                          voice_result *out)
{
    memset(out, 0, sizeof *out);
    if (m == VOICE_GRAMMAR && !r->grammar)
        return llmos_fail(LLMOS_ERR_INVALID, "grammar mode needs a command grammar (none set)");
    double t0 = voice_now();
    voice_audio rs = {0};
    const voice_audio *in = a;
    if (a->n && a->rate != VOICE_RATE) {
        llmos_err err = voice_resample(a, VOICE_RATE, &rs);
        if (err)
            return err;
        in = &rs;
    }
    out->audio_s = voice_audio_seconds(in);
    if (out->audio_s > VOICE_MAX_SECONDS) {
        voice_audio_free(&rs);
        return llmos_fail(LLMOS_ERR_LIMIT, "%.0f seconds of audio; the limit is %u seconds",
                          out->audio_s, VOICE_MAX_SECONDS);
    }
    /* where the speech is: the decoder hears that stretch only (from the first utterance's
     * start to the last one's end); no speech, no decoding */
    voice_segment *segs = NULL;
    size_t n_segs = 0;
    llmos_err err = in->n ? voice_vad_segments(in, NULL, &segs, &n_segs) : LLMOS_OK;
    char *hyp = NULL;
    out->speech = n_segs > 0;
    /* the noise floor for the grammar and dictation (the keyword spotter's threshold was
     * tuned without it: with it, "the computer is slow" wakes it) */
    if (!err && n_segs > 0 && m != VOICE_KEYWORD) {
        if (!rs.samples) /* a copy to add the noise floor to */
            err = voice_resample(in, VOICE_RATE, &rs);
        in = &rs;
        if (!err)
            add_noise_floor(&rs);
    }
    if (!err && n_segs > 0) {
        size_t start = segs[0].start, end = segs[n_segs - 1].end;
        if (m == VOICE_KEYWORD)
            start = 0, end = in->n;
        const char *search = m == VOICE_DICTATION ? "dictation"
                             : m == VOICE_GRAMMAR ? "grammar"
                                                  : "wake";
        if (ps_set_search(r->ps, search) < 0)
            err = llmos_fail(LLMOS_ERR_INTERNAL, "pocketsphinx has no search '%s'", search);
        else
            err = decode(r, m == VOICE_KEYWORD, in->samples + start, end - start, &hyp);
    }
    free(segs);
    voice_audio_free(&rs);
    if (!err) {
        out->heard = hyp ? hyp : strdup("");
        hyp = NULL;
        if (!out->heard)
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    }
    if (!err) {
        if (m == VOICE_GRAMMAR && *out->heard) {
            if (voice_grammar_line(r->grammar, out->heard, &out->text) != LLMOS_OK) {
                llmos_err_clear(); /* heard words outside the grammar: nothing */
                out->text = strdup("");
            }
        } else if (m == VOICE_KEYWORD) {
            out->text = strdup(*out->heard ? r->wake : "");
        } else {
            out->text = strdup(out->heard);
        }
        if (!out->text)
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    }
    free(hyp);
    if (err) {
        voice_result_free(out);
        return err;
    }
    out->decode_s = voice_now() - t0;
    return LLMOS_OK;
}

/* ---- speaking an answer as it arrives ----------------------------------------------------- */

struct voice_speaker {
    voice_speech_params p;
    char voice[64];
    voice_sink *sink;
    llmos_buf pending;
    size_t sentences;
    double first_at; /* when the first sentence since the last flush was spoken */
    bool spoke;      /* a sentence was spoken since the last flush */
};

llmos_err voice_speaker_new(const voice_speech_params *p, voice_sink *sink, voice_speaker **out)
{
    *out = NULL;
    voice_speaker *s = calloc(1, sizeof *s);
    if (!s)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the speaker");
    s->p = p ? *p : voice_speech_default_params();
    if (s->p.voice) {
        snprintf(s->voice, sizeof s->voice, "%s", s->p.voice);
        s->p.voice = s->voice;
    }
    s->sink = sink;
    *out = s;
    return LLMOS_OK;
}

void voice_speaker_free(voice_speaker *s)
{
    if (!s)
        return;
    buf_free(&s->pending);
    free(s);
}

size_t voice_speaker_sentences(const voice_speaker *s, double *first_at)
{
    if (first_at)
        *first_at = s->first_at;
    return s->sentences;
}

/* Speak pending[0..n) (markup characters that would be read out dropped), then drop it. */
static llmos_err speak_prefix(voice_speaker *s, size_t n)
{
    char *text = malloc(n + 1);
    if (!text)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the speaker");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s->pending.data[i];
        if (c == '*' || c == '#' || c == '`' || c == '_' || c == '\r')
            continue;
        text[k++] = c == '\n' ? ' ' : c;
    }
    text[k] = 0;
    bool words = false;
    for (size_t i = 0; i < k && !words; i++)
        words = isalnum((unsigned char)text[i]) || (unsigned char)text[i] >= 0x80;
    llmos_err err = LLMOS_OK;
    if (words) {
        voice_audio a = {0};
        err = voice_speak(&s->p, text, &a);
        if (!err && a.n) {
            err = voice_sink_write(s->sink, &a);
            if (!err && !s->spoke)
                s->first_at = voice_now();
            if (!err) {
                s->sentences++;
                s->spoke = true;
            }
        }
        voice_audio_free(&a);
    }
    free(text);
    memmove(s->pending.data, s->pending.data + n, s->pending.len - n);
    s->pending.len -= n;
    s->pending.data[s->pending.len] = 0;
    return err;
}

/* The end of the first complete sentence in pending, 0 when none yet. */
static size_t sentence_end(const llmos_buf *b)
{
    for (size_t i = 0; i + 1 < b->len; i++) {
        char c = b->data[i], next = b->data[i + 1];
        if (strchr(".!?;:", c) && (next == ' ' || next == '\n'))
            return i + 1;
        if (c == '\n' && next == '\n')
            return i + 1;
    }
    if (b->len > SPEAKER_MAX_CHARS) { /* no end in sight: cut at the last space */
        for (size_t i = SPEAKER_MAX_CHARS; i > 0; i--)
            if (b->data[i] == ' ')
                return i;
        return SPEAKER_MAX_CHARS;
    }
    return 0;
}

llmos_err voice_speaker_add(voice_speaker *s, const char *text, size_t len)
{
    llmos_err err = buf_append(&s->pending, text, len);
    size_t end;
    while (!err && (end = sentence_end(&s->pending)) > 0) {
        /* never cut inside a UTF-8 sequence */
        while (end < s->pending.len && ((unsigned char)s->pending.data[end] & 0xC0) == 0x80)
            end++;
        err = speak_prefix(s, end);
    }
    return err;
}

llmos_err voice_speaker_flush(voice_speaker *s)
{
    size_t n = s->pending.len - utf8_incomplete_tail(s->pending.data, s->pending.len);
    llmos_err err = n ? speak_prefix(s, n) : LLMOS_OK;
    s->spoke = false; /* the next sentence starts the next answer */
    return err;
}
