/*
 * llmos/voice.h - the voice device's parts: audio (WAV files, resampling, voice-activity
 * detection, the sound device through ALSA), speech synthesis (libespeak-ng) and speech
 * recognition (libpocketsphinx with its US-English model) in three modes.
 *
 *   audio        16-bit mono samples at a rate (voice_audio). WAV files of integer PCM (8, 16,
 *                24, 32 bits) or IEEE float (32, 64 bits), any channel count up to 8 and any
 *                rate from 8 to 192 kHz are read, mixed down to mono and resampled to the rate
 *                asked for (recognition wants 16 kHz); anything else is refused with a message
 *                naming the format found (voice_wav_parse, fuzzed).
 *   activity     an energy detector over 10 ms frames with an adaptive noise floor finds where
 *                speech starts and ends (voice_vad): the end of an utterance is a stretch of
 *                silence (hangover) after speech. Audio without speech gives no segment, and
 *                recognition of it an empty transcript, not an error.
 *   synthesis    text -> samples with espeak-ng's voice, rate (words a minute) and pitch; to a
 *                WAV file or, sentence by sentence as an answer arrives, to a voice_sink (a WAV
 *                file or the sound device).
 *   recognition  VOICE_DICTATION: free speech with the general English language model;
 *                VOICE_GRAMMAR: only the phrases of a command grammar built from the current
 *                context (the shell's slash commands, the tools' names, numbers), each heard
 *                phrase turned back into the line it stands for ("kill process twelve" ->
 *                "/kill 12"); VOICE_KEYWORD: spotting a wake phrase anywhere in the audio.
 *
 * The voice device, like every device, reaches the model only through a kernel session: what
 * is heard is sent as a message (ksession_send) and the answer's text is spoken. docs/voice.md
 * has the modes and their measured accuracy.
 *
 * Threads: a recognizer is used by one thread at a time (the HTTP server serialises its one
 * recognizer); synthesis may be called from any thread (espeak-ng is one per process, and
 * voice_speak takes its lock).
 */
#ifndef LLMOS_VOICE_H
#define LLMOS_VOICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"

#define VOICE_RATE        16000u /* what the recognizer hears: 16 kHz mono 16-bit */
#define VOICE_MAX_SECONDS 600u   /* the longest audio read or recognized (10 minutes) */

/* ---- audio -------------------------------------------------------------------------------- */

/* Mono 16-bit samples. */
typedef struct voice_audio {
    int16_t *samples; /* malloc'd (voice_audio_free) */
    size_t n;
    uint32_t rate; /* samples a second */
} voice_audio;

LLMOS_API void voice_audio_free(voice_audio *a);
/* Seconds of audio. */
LLMOS_API double voice_audio_seconds(const voice_audio *a);

/* Read a WAV file's bytes: mixed to mono and resampled to `rate` (0 keeps the file's rate).
 * LLMOS_ERR_FORMAT naming what was found when the bytes are not a WAV file of a format llmos
 * reads (compressed audio, an odd sample size, no data chunk); LLMOS_ERR_LIMIT past
 * VOICE_MAX_SECONDS. A file with no samples is valid (n = 0). */
LLMOS_API LLMOS_NODISCARD llmos_err voice_wav_parse(const void *data, size_t len, uint32_t rate,
                                                    voice_audio *out);
/* voice_wav_parse of a file's contents, the error naming the file. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_wav_load(const char *path, uint32_t rate,
                                                   voice_audio *out);
/* The WAV file (RIFF, PCM 16-bit mono) of a: appended to out. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_wav_encode(const voice_audio *a, llmos_buf *out);
/* Write a as a WAV file at path (replaced atomically). */
LLMOS_API LLMOS_NODISCARD llmos_err voice_wav_save(const char *path, const voice_audio *a);
/* a resampled to `rate` (a windowed-sinc filter, low-passed below the lower Nyquist rate). */
LLMOS_API LLMOS_NODISCARD llmos_err voice_resample(const voice_audio *a, uint32_t rate,
                                                   voice_audio *out);

/* ---- voice-activity detection -------------------------------------------------------------- */

typedef struct voice_vad_params {
    unsigned hangover_ms;   /* silence that ends an utterance; 0 = 600 */
    unsigned min_speech_ms; /* shorter bursts (a click, a cough) are not speech; 0 = 120 */
    double threshold_db;    /* a frame is speech this far above the noise floor; 0 = 12 dB */
} voice_vad_params;

/* Where speech is, in samples [start, end): padded by 150 ms on each side. */
typedef struct voice_segment {
    size_t start, end;
} voice_segment;

/* A detector fed with audio as it arrives (the microphone). */
typedef struct voice_vad voice_vad;
/* p may be NULL (the defaults). */
LLMOS_API LLMOS_NODISCARD llmos_err voice_vad_new(const voice_vad_params *p, uint32_t rate,
                                                  voice_vad **out);
LLMOS_API void voice_vad_free(voice_vad *v);
/* Feed samples; *ended becomes true once an utterance has started and then been followed by the
 * hangover's silence (the end of the utterance). */
LLMOS_API void voice_vad_feed(voice_vad *v, const int16_t *s, size_t n, bool *ended);
/* Has speech started? And where (samples from the first fed) it started and ended. */
LLMOS_API bool voice_vad_in_speech(const voice_vad *v, voice_segment *seg);

/* The utterances of a whole recording, in order (*out malloc'd; NULL and 0 when none). */
LLMOS_API LLMOS_NODISCARD llmos_err voice_vad_segments(const voice_audio *a,
                                                       const voice_vad_params *p,
                                                       voice_segment **out, size_t *n);

/* ---- synthesis ---------------------------------------------------------------------------- */

typedef struct voice_speech_params {
    const char *voice; /* an espeak-ng voice ("en-us", "en-us+f3", "en-us+m3"); NULL = "en-us" */
    int rate;          /* words a minute, 80..450; 0 = 175 */
    int pitch;         /* 0..99; -1 = 50 */
} voice_speech_params;

LLMOS_API voice_speech_params voice_speech_default_params(void);
/* Speak text: out gets the samples at espeak-ng's rate (22050). An unknown voice or a value
 * out of range is LLMOS_ERR_INVALID naming it; empty text gives no samples. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_speak(const voice_speech_params *p, const char *text,
                                                voice_audio *out);

/* Where spoken answers go: a WAV file (written as audio arrives, its header completed on
 * close) or the sound device. */
typedef struct voice_sink voice_sink;
LLMOS_API LLMOS_NODISCARD llmos_err voice_sink_wav(const char *path, uint32_t rate,
                                                   voice_sink **out);
/* ALSA playback on `device` (NULL = "default"). No sound device: LLMOS_ERR_NOT_FOUND with a
 * message saying so and that --out FILE.wav works without one. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_sink_alsa(const char *device, uint32_t rate,
                                                    voice_sink **out);
/* Play or write a (resampled to the sink's rate when it differs). */
LLMOS_API LLMOS_NODISCARD llmos_err voice_sink_write(voice_sink *s, const voice_audio *a);
/* Samples written so far. */
LLMOS_API size_t voice_sink_samples(const voice_sink *s);
/* Finish (the WAV header, the device drained) and free; NULL is a no-op. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_sink_close(voice_sink *s);

/* The microphone through ALSA (16 kHz mono 16-bit). No capture device: LLMOS_ERR_NOT_FOUND
 * saying so and that --in FILE.wav works without one. */
typedef struct voice_mic voice_mic;
LLMOS_API LLMOS_NODISCARD llmos_err voice_mic_open(const char *device, voice_mic **out);
/* Read up to n samples (blocks until some arrive); *got = 0 only at an error. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_mic_read(voice_mic *m, int16_t *buf, size_t n,
                                                   size_t *got);
LLMOS_API void voice_mic_close(voice_mic *m);

/* ---- the command grammar ------------------------------------------------------------------ */

/* What follows a command's words. */
typedef enum voice_arg {
    VOICE_ARG_NONE,
    VOICE_ARG_NUMBER,     /* a whole number said in words: "/kill 12" */
    VOICE_ARG_EXPRESSION, /* numbers and operators: "/calc 12*3+4" */
    VOICE_ARG_TOOL,       /* a tool's name: "/tools calculator" */
} voice_arg;

/* One command the grammar knows: the line it types and how it may be said. */
typedef struct voice_command {
    const char *line;   /* "/kill" */
    const char *spoken; /* ways to say it, '|' between them: "kill|kill process|stop process";
                           lower-case words of the recognizer's dictionary */
    voice_arg arg;
} voice_command;

typedef struct voice_grammar voice_grammar;
/* A grammar of the commands and the tools' names (as "calculator", "send_message"; '_' is said
 * as a space). Every command may be said after "slash". LLMOS_ERR_INVALID naming a spoken form
 * that is not lower-case words. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_grammar_new(const voice_command *cmds, size_t n,
                                                      const char *const *tools, size_t n_tools,
                                                      voice_grammar **out);
LLMOS_API void voice_grammar_free(voice_grammar *g);
/* The grammar in JSGF (what the recognizer is given). */
LLMOS_API const char *voice_grammar_jsgf(const voice_grammar *g);
/* The line that heard words stand for ("kill process twelve" -> "/kill 12"), malloc'd in *line;
 * LLMOS_ERR_NOT_FOUND when the words are no phrase of the grammar. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_grammar_line(const voice_grammar *g, const char *words,
                                                       char **line);

/* Numbers in words -> value: "three hundred and twelve" -> 312 (up to 999999999, "point" and
 * digits for decimals), writing how many words were used to *used. False when words do not
 * start with a number. */
LLMOS_API bool voice_number_parse(const char *const *words, size_t n, double *value, size_t *used);
/* A whole number in words ("three hundred twelve") into out. */
LLMOS_API void voice_number_words(int64_t v, char *out, size_t size);

/* ---- recognition -------------------------------------------------------------------------- */

typedef enum voice_mode {
    VOICE_DICTATION, /* free speech */
    VOICE_GRAMMAR,   /* the command grammar's phrases only */
    VOICE_KEYWORD,   /* the wake phrase, anywhere in the audio */
} voice_mode;

LLMOS_API const char *voice_mode_name(voice_mode m);
/* "dictation", "grammar"/"command", "keyword"/"wake"; false for anything else. */
LLMOS_API bool voice_mode_parse(const char *s, voice_mode *out);

typedef struct voice_recognizer_params {
    const char *model_dir;  /* the pocketsphinx model folder (with en-us/, en-us.lm.bin and
                               cmudict-en-us.dict); NULL = $LLMOS_VOICE_MODEL, else Debian's
                               /usr/share/pocketsphinx/model/en-us */
    const char *wake;       /* the wake phrase (dictionary words); NULL = "hey computer" */
    double wake_threshold;  /* keyword spotting's threshold; 0 = 1e-20 (lower: more found) */
    const voice_grammar *grammar; /* for VOICE_GRAMMAR (borrowed; may be NULL until set) */
} voice_recognizer_params;

typedef struct voice_recognizer voice_recognizer;
/* Load the acoustic model, dictionary and language model (about a second). A missing model is
 * LLMOS_ERR_NOT_FOUND naming the folder and the Debian package (pocketsphinx-en-us). */
LLMOS_API LLMOS_NODISCARD llmos_err voice_recognizer_new(const voice_recognizer_params *p,
                                                         voice_recognizer **out);
LLMOS_API void voice_recognizer_free(voice_recognizer *r);
/* Use grammar g for VOICE_GRAMMAR from now on (borrowed: it must outlive its use). */
LLMOS_API LLMOS_NODISCARD llmos_err voice_recognizer_set_grammar(voice_recognizer *r,
                                                                 const voice_grammar *g);

typedef struct voice_result {
    char *text;      /* malloc'd: dictation: the words; grammar: the line they stand for
                        ("/kill 12"); keyword: the wake phrase when heard. "" when nothing was
                        heard (silence, or no phrase of the grammar) */
    char *heard;     /* malloc'd: the recognizer's words as heard ("" when none) */
    bool speech;     /* the activity detector found speech */
    double audio_s;  /* seconds of audio */
    double decode_s; /* seconds the recognizer took */
} voice_result;
LLMOS_API void voice_result_free(voice_result *res);

/* Recognize a (any rate: resampled to 16 kHz) in mode m. Audio with no speech gives an empty
 * text, not an error. VOICE_GRAMMAR without a grammar is LLMOS_ERR_INVALID. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_recognize(voice_recognizer *r, voice_mode m,
                                                    const voice_audio *a, voice_result *out);

/* ---- speaking an answer as it arrives ----------------------------------------------------- */

/* Collects streamed text and cuts it into sentences (at '.', '!', '?', ':' or ';' followed by
 * a space, or a blank line), each spoken to the sink as soon as it is complete. */
typedef struct voice_speaker voice_speaker;
LLMOS_API LLMOS_NODISCARD llmos_err voice_speaker_new(const voice_speech_params *p,
                                                      voice_sink *sink, voice_speaker **out);
/* Add text; complete sentences are spoken before it returns. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_speaker_add(voice_speaker *s, const char *text,
                                                      size_t len);
/* Speak what is left: the end of an answer. */
LLMOS_API LLMOS_NODISCARD llmos_err voice_speaker_flush(voice_speaker *s);
/* Sentences spoken so far, and the monotonic time (seconds) the first sentence of the current
 * (or, after a flush, the last) answer reached the sink. */
LLMOS_API size_t voice_speaker_sentences(const voice_speaker *s, double *first_at);
LLMOS_API void voice_speaker_free(voice_speaker *s);

/* Monotonic seconds (for latency figures). */
LLMOS_API double voice_now(void);

#endif
