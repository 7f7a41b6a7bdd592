/*
 * voice_audio.c - audio for the voice device (llmos/voice.h): WAV files in and out, a
 * windowed-sinc resampler, voice-activity detection, and the sound device through ALSA
 * (playback sinks and the microphone).
 *
 * WAV (RIFF) layout, little-endian throughout:
 *   "RIFF" u32 size "WAVE", then chunks: 4-byte id, u32 size, the bytes, a pad byte when the
 *   size is odd. "fmt " holds u16 format (1 integer PCM, 3 IEEE float, 0xFFFE extensible,
 *   whose sub-format GUID starts with the real format), u16 channels, u32 rate, u32 bytes a
 *   second, u16 block align (bytes a frame), u16 bits a sample. "data" holds the frames,
 *   channels interleaved; 8-bit PCM is unsigned, wider PCM signed. Writers that stream give
 *   the data chunk a size past the end of the file: it is cut to what is there.
 * The parser reads outside bytes (an upload, a file), so every size is checked before it is
 * used, and fuzz/fuzz_wav.c runs it on anything.
 *
 * Voice activity: 10 ms frames, each frame's energy in dB against a noise floor that follows
 * the quietest frames down at once and creeps up slowly (so a long stretch of speech does not
 * become the floor). A frame is speech when it is threshold_db above the floor and above an
 * absolute floor (digital silence and dither are never speech). Speech starts after
 * min_speech_ms of speech frames and ends after hangover_ms of silence.
 */
#include <alsa/asoundlib.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "llmos/voice.h"

#define WAV_MIN_RATE     8000u
#define WAV_MAX_RATE     192000u
#define WAV_MAX_CHANNELS 8u
#define VAD_PAD_MS       150u
#define VAD_ABS_FLOOR_DB 30.0 /* frame RMS of about 32 (of 32767): below this, never speech */

double voice_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void voice_audio_free(voice_audio *a)
{
    if (!a)
        return;
    free(a->samples);
    memset(a, 0, sizeof *a);
}

double voice_audio_seconds(const voice_audio *a)
{
    return a->rate ? (double)a->n / a->rate : 0.0;
}

/* ---- resampling --------------------------------------------------------------------------- */

#define RS_ZEROS 12 /* zero crossings of the sinc on each side, at the cut-off */

static double rs_sinc(double x)
{
    return fabs(x) < 1e-9 ? 1.0 : sin(M_PI * x) / (M_PI * x);
}

/* in[0..n) at rate `from` -> *out (malloc'd) at rate `to`, as floats. Each output sample at
 * input time t is sum_k in[k] * fc * sinc(fc (t - k)) * w((t - k) / half), where fc is the
 * cut-off as a fraction of the input's Nyquist rate (below the lower of the two rates) and w a
 * Blackman window over the kernel's half-width. */
static llmos_err rs_float(const float *in, size_t n, uint32_t from, uint32_t to, float **out,
                          size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    size_t m = (size_t)((double)n * to / from);
    if (m == 0)
        return LLMOS_OK;
    float *o = malloc(m * sizeof *o);
    if (!o)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory to resample %zu samples", n);
    if (from == to) {
        memcpy(o, in, m * sizeof *o);
        *out = o;
        *n_out = m;
        return LLMOS_OK;
    }
    double fc = (to < from ? (double)to / from : 1.0) * 0.95;
    double half = RS_ZEROS / fc; /* in input samples */
    double step = (double)from / to;
    for (size_t i = 0; i < m; i++) {
        double t = (double)i * step;
        long lo = (long)ceil(t - half), hi = (long)floor(t + half);
        if (lo < 0)
            lo = 0;
        if (hi > (long)n - 1)
            hi = (long)n - 1;
        double acc = 0, wsum = 0;
        for (long k = lo; k <= hi; k++) {
            double x = t - (double)k;
            double u = x / half; /* -1..1 */
            double w = 0.42 + 0.5 * cos(M_PI * u) + 0.08 * cos(2 * M_PI * u);
            double h = fc * rs_sinc(fc * x) * w;
            acc += in[k] * h;
            wsum += h;
        }
        /* normalise by the kernel's sum, so that the edges (a cut kernel) keep their level */
        o[i] = (float)(fabs(wsum) > 1e-6 ? acc / wsum : acc);
    }
    *out = o;
    *n_out = m;
    return LLMOS_OK;
}

static int16_t clip16(double v)
{
    long r = lround(v);
    return (int16_t)(r > 32767 ? 32767 : r < -32768 ? -32768 : r);
}

/* floats (in int16 scale) -> voice_audio at `to` (resampled when from != to). */
static llmos_err audio_from_float(const float *f, size_t n, uint32_t from, uint32_t to,
                                  voice_audio *out)
{
    float *rs = NULL;
    size_t m = n;
    const float *src = f;
    if (to && to != from) {
        llmos_err err = rs_float(f, n, from, to, &rs, &m);
        if (err)
            return err;
        src = rs;
    }
    out->rate = to ? to : from;
    out->n = m;
    out->samples = malloc((m ? m : 1) * sizeof *out->samples);
    if (!out->samples) {
        free(rs);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for %zu samples", m);
    }
    for (size_t i = 0; i < m; i++)
        out->samples[i] = clip16(src[i]);
    free(rs);
    return LLMOS_OK;
}

llmos_err voice_resample(const voice_audio *a, uint32_t rate, voice_audio *out)
{
    memset(out, 0, sizeof *out);
    if (!a->rate || !rate)
        return llmos_fail(LLMOS_ERR_INVALID, "voice_resample: a rate of 0");
    float *f = malloc((a->n ? a->n : 1) * sizeof *f);
    if (!f)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory to resample %zu samples", a->n);
    for (size_t i = 0; i < a->n; i++)
        f[i] = a->samples[i];
    llmos_err err = audio_from_float(f, a->n, a->rate, rate, out);
    free(f);
    return err;
}

/* ---- WAV ---------------------------------------------------------------------------------- */

static uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* A name for a WAV format tag that llmos does not read. */
static const char *wav_format_name(unsigned tag)
{
    switch (tag) {
    case 0x0002: return "Microsoft ADPCM";
    case 0x0006: return "A-law";
    case 0x0007: return "mu-law";
    case 0x0011: return "IMA ADPCM";
    case 0x0031: return "GSM 6.10";
    case 0x0050: return "MPEG";
    case 0x0055: return "MPEG layer 3 (MP3)";
    case 0x00FF: return "AAC";
    case 0x2000: return "AC-3";
    case 0x674F: return "Ogg Vorbis";
    case 0xF1AC: return "FLAC";
    default: return "an unknown codec";
    }
}

/* What the bytes are, when they are not RIFF/WAVE. */
static llmos_err wav_not_wav(const unsigned char *p, size_t len)
{
    const char *what = NULL;
    if (len >= 3 && memcmp(p, "ID3", 3) == 0)
        what = "an MP3 file (ID3 tag)";
    else if (len >= 2 && p[0] == 0xFF && (p[1] & 0xE0) == 0xE0)
        what = "MPEG audio (MP3 or AAC frames)";
    else if (len >= 4 && memcmp(p, "OggS", 4) == 0)
        what = "an Ogg file (Vorbis or Opus)";
    else if (len >= 4 && memcmp(p, "fLaC", 4) == 0)
        what = "a FLAC file";
    else if (len >= 4 && memcmp(p, "RIFX", 4) == 0)
        what = "a big-endian WAV file (RIFX)";
    else if (len >= 4 && memcmp(p, "RF64", 4) == 0)
        what = "an RF64 file (WAV over 4 GiB)";
    else if (len >= 8 && memcmp(p + 4, "ftyp", 4) == 0)
        what = "an MP4/M4A file";
    else if (len >= 4 && memcmp(p, "\x1a\x45\xdf\xa3", 4) == 0)
        what = "a WebM/Matroska file";
    if (what)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "the audio is %s; llmos reads WAV files (PCM or IEEE float): convert "
                          "it, e.g. ffmpeg -i IN -ar 16000 -ac 1 OUT.wav",
                          what);
    if (len < 12)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "the audio is %zu bytes, too short for a WAV file (a 44-byte header "
                          "and samples)",
                          len);
    return llmos_fail(LLMOS_ERR_FORMAT,
                      "the audio is not a WAV file: it starts with %02x %02x %02x %02x, not "
                      "\"RIFF\"...\"WAVE\"",
                      p[0], p[1], p[2], p[3]);
}

llmos_err voice_wav_parse(const void *data, size_t len, uint32_t rate, voice_audio *out)
{
    memset(out, 0, sizeof *out);
    const unsigned char *p = data;
    if (!p || len < 12 || memcmp(p, "RIFF", 4) != 0 || memcmp(p + 8, "WAVE", 4) != 0)
        return wav_not_wav(p ? p : (const unsigned char *)"", p ? len : 0);
    const unsigned char *fmt = NULL, *pcm = NULL;
    size_t fmt_len = 0, pcm_len = 0;
    size_t off = 12;
    while (off + 8 <= len) {
        uint32_t size = llmos_load_le32(p + off + 4);
        const unsigned char *body = p + off + 8;
        size_t avail = len - off - 8;
        if (memcmp(p + off, "fmt ", 4) == 0 && !fmt) {
            if (size > avail)
                return llmos_fail(LLMOS_ERR_FORMAT,
                                  "WAV: the fmt chunk at byte %zu says %u bytes; %zu are left",
                                  off, size, avail);
            fmt = body;
            fmt_len = size;
        } else if (memcmp(p + off, "data", 4) == 0) {
            pcm = body;
            pcm_len = size > avail ? avail : size; /* streamed: the size was never filled in */
            break;
        }
        if (size > avail)
            break;
        off += 8 + (size_t)size + (size & 1);
    }
    if (!fmt)
        return llmos_fail(LLMOS_ERR_FORMAT, "WAV: no fmt chunk before the samples");
    if (fmt_len < 16)
        return llmos_fail(LLMOS_ERR_FORMAT, "WAV: the fmt chunk is %zu bytes; at least 16 needed",
                          fmt_len);
    if (!pcm)
        return llmos_fail(LLMOS_ERR_FORMAT, "WAV: no data chunk (the file holds no samples)");
    unsigned tag = rd16(fmt), channels = rd16(fmt + 2), bits = rd16(fmt + 14);
    uint32_t file_rate = llmos_load_le32(fmt + 4);
    unsigned align = rd16(fmt + 12);
    if (tag == 0xFFFE) { /* WAVE_FORMAT_EXTENSIBLE: the sub-format GUID's first two bytes */
        if (fmt_len < 40)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "WAV: an extensible fmt chunk of %zu bytes; 40 needed", fmt_len);
        tag = rd16(fmt + 24);
    }
    if (tag != 1 && tag != 3)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "WAV: the samples are %s (format 0x%04x); llmos reads PCM or IEEE "
                          "float WAV: convert it, e.g. ffmpeg -i IN -ar 16000 -ac 1 OUT.wav",
                          wav_format_name(tag), tag);
    bool is_float = tag == 3;
    if (is_float ? (bits != 32 && bits != 64) : (bits != 8 && bits != 16 && bits != 24 && bits != 32))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "WAV: %u-bit %s samples; llmos reads 8, 16, 24 or 32-bit PCM and "
                          "32 or 64-bit float",
                          bits, is_float ? "float" : "PCM");
    if (channels < 1 || channels > WAV_MAX_CHANNELS)
        return llmos_fail(LLMOS_ERR_FORMAT, "WAV: %u channels; llmos reads 1 to %u", channels,
                          WAV_MAX_CHANNELS);
    if (file_rate < WAV_MIN_RATE || file_rate > WAV_MAX_RATE)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "WAV: a sample rate of %u Hz; llmos reads %u to %u Hz (16000 is best)",
                          file_rate, WAV_MIN_RATE, WAV_MAX_RATE);
    unsigned bytes = bits / 8;
    if (align != channels * bytes)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "WAV: frames of %u bytes for %u channels of %u bits (expected %u)",
                          align, channels, bits, channels * bytes);
    size_t frames = pcm_len / align;
    if (frames / file_rate >= VOICE_MAX_SECONDS)
        return llmos_fail(LLMOS_ERR_LIMIT, "WAV: %zu seconds of audio; the limit is %u seconds",
                          frames / file_rate, VOICE_MAX_SECONDS);
    float *mono = malloc((frames ? frames : 1) * sizeof *mono);
    if (!mono)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for %zu frames of audio", frames);
    for (size_t i = 0; i < frames; i++) {
        const unsigned char *f = pcm + i * align;
        double sum = 0;
        for (unsigned c = 0; c < channels; c++, f += bytes) {
            double v;
            if (is_float && bits == 32) {
                uint32_t u = llmos_load_le32(f);
                float x;
                memcpy(&x, &u, sizeof x);
                v = isfinite(x) ? (double)x * 32767.0 : 0.0;
            } else if (is_float) {
                uint64_t u = (uint64_t)llmos_load_le32(f) | (uint64_t)llmos_load_le32(f + 4) << 32;
                double x;
                memcpy(&x, &u, sizeof x);
                v = isfinite(x) ? x * 32767.0 : 0.0;
            } else if (bits == 8) {
                v = ((double)f[0] - 128.0) * 256.0;
            } else if (bits == 16) {
                v = (int16_t)rd16(f);
            } else if (bits == 24) {
                int32_t x = (int32_t)((uint32_t)f[0] << 8 | (uint32_t)f[1] << 16 |
                                      (uint32_t)f[2] << 24);
                v = (double)(x >> 8) / 256.0;
            } else {
                v = (double)(int32_t)llmos_load_le32(f) / 65536.0;
            }
            sum += v;
        }
        double m = sum / channels;
        mono[i] = (float)(m > 32767 ? 32767 : m < -32768 ? -32768 : m);
    }
    llmos_err err = audio_from_float(mono, frames, file_rate, rate, out);
    free(mono);
    return err;
}

llmos_err voice_wav_load(const char *path, uint32_t rate, voice_audio *out)
{
    memset(out, 0, sizeof *out);
    llmos_buf b = {0};
    /* the largest WAV worth reading: VOICE_MAX_SECONDS of 8 channels of 64-bit at 48 kHz */
    llmos_err err = llmos_file_read_all(path, (size_t)VOICE_MAX_SECONDS * 48000 * 64 + 4096, &b);
    if (!err)
        err = voice_wav_parse(b.data, b.len, rate, out);
    buf_free(&b);
    if (err)
        return llmos_fail_context(err, "%s: ", path);
    return LLMOS_OK;
}

/* The 44-byte header of a PCM 16-bit mono WAV of n samples at rate. */
static void wav_header(unsigned char h[44], size_t n, uint32_t rate)
{
    uint32_t data = (uint32_t)(n * 2);
    memcpy(h, "RIFF", 4);
    llmos_store_le32(h + 4, 36 + data);
    memcpy(h + 8, "WAVEfmt ", 8);
    llmos_store_le32(h + 16, 16);
    h[20] = 1, h[21] = 0; /* PCM */
    h[22] = 1, h[23] = 0; /* mono */
    llmos_store_le32(h + 24, rate);
    llmos_store_le32(h + 28, rate * 2);
    h[32] = 2, h[33] = 0;  /* block align */
    h[34] = 16, h[35] = 0; /* bits */
    memcpy(h + 36, "data", 4);
    llmos_store_le32(h + 40, data);
}

llmos_err voice_wav_encode(const voice_audio *a, llmos_buf *out)
{
    if ((uint64_t)a->n * 2 + 36 > UINT32_MAX)
        return llmos_fail(LLMOS_ERR_LIMIT, "%zu samples are too many for one WAV file", a->n);
    unsigned char h[44];
    wav_header(h, a->n, a->rate);
    llmos_err err = buf_reserve(out, 44 + a->n * 2);
    if (!err)
        err = buf_append(out, h, 44);
    for (size_t i = 0; !err && i < a->n; i++) {
        unsigned char s[2] = {(unsigned char)(a->samples[i] & 0xFF),
                              (unsigned char)((uint16_t)a->samples[i] >> 8)};
        err = buf_append(out, s, 2);
    }
    return err;
}

llmos_err voice_wav_save(const char *path, const voice_audio *a)
{
    llmos_buf b = {0};
    llmos_err err = voice_wav_encode(a, &b);
    if (!err)
        err = llmos_file_write_atomic(path, b.data, b.len, 0644);
    buf_free(&b);
    return err;
}

/* ---- voice-activity detection ------------------------------------------------------------- */

struct voice_vad {
    voice_vad_params p;
    uint32_t rate;
    size_t frame;      /* samples a frame (10 ms) */
    int16_t *partial;  /* a frame being filled */
    size_t n_partial;
    size_t frames;     /* frames seen */
    double floor_db;   /* the noise floor */
    bool have_floor;
    size_t run;        /* speech frames in a row */
    bool in_speech;
    size_t start_f, last_f; /* first and last speech frame of the utterance */
    bool ended;
};

static void vad_defaults(voice_vad_params *p)
{
    if (!p->hangover_ms)
        p->hangover_ms = 600;
    if (!p->min_speech_ms)
        p->min_speech_ms = 120;
    if (p->threshold_db <= 0)
        p->threshold_db = 12;
}

llmos_err voice_vad_new(const voice_vad_params *p, uint32_t rate, voice_vad **out)
{
    *out = NULL;
    if (rate < 1000)
        return llmos_fail(LLMOS_ERR_INVALID, "voice_vad_new: a rate of %u Hz", rate);
    voice_vad *v = calloc(1, sizeof *v);
    if (!v)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the activity detector");
    if (p)
        v->p = *p;
    vad_defaults(&v->p);
    v->rate = rate;
    v->frame = rate / 100;
    v->partial = malloc(v->frame * sizeof *v->partial);
    if (!v->partial) {
        free(v);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the activity detector");
    }
    *out = v;
    return LLMOS_OK;
}

void voice_vad_free(voice_vad *v)
{
    if (!v)
        return;
    free(v->partial);
    free(v);
}

static double frame_db(const int16_t *s, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++)
        e += (double)s[i] * s[i];
    return 10.0 * log10(e / (double)n + 1.0);
}

/* One frame of energy e (dB). */
static void vad_frame(voice_vad *v, double e)
{
    size_t f = v->frames++;
    if (!v->have_floor) {
        v->floor_db = e;
        v->have_floor = true;
    } else if (e < v->floor_db) {
        v->floor_db = e;
    } else {
        v->floor_db += 0.002 * (e - v->floor_db); /* creeps up over seconds */
    }
    bool speech = e > v->floor_db + v->p.threshold_db && e > VAD_ABS_FLOOR_DB;
    size_t min_run = v->p.min_speech_ms / 10, hang = v->p.hangover_ms / 10;
    if (speech) {
        v->run++;
        if (!v->in_speech && v->run >= (min_run ? min_run : 1)) {
            v->in_speech = true;
            v->ended = false;
            v->start_f = f + 1 - v->run;
        }
        if (v->in_speech)
            v->last_f = f;
    } else {
        v->run = 0;
        if (v->in_speech && f - v->last_f >= hang) {
            v->in_speech = false;
            v->ended = true;
        }
    }
}

void voice_vad_feed(voice_vad *v, const int16_t *s, size_t n, bool *ended)
{
    for (size_t i = 0; i < n; i++) {
        v->partial[v->n_partial++] = s[i];
        if (v->n_partial == v->frame) {
            vad_frame(v, frame_db(v->partial, v->frame));
            v->n_partial = 0;
        }
    }
    if (ended)
        *ended = v->ended;
}

bool voice_vad_in_speech(const voice_vad *v, voice_segment *seg)
{
    if (seg && (v->in_speech || v->ended)) {
        size_t pad = VAD_PAD_MS / 10;
        size_t a = v->start_f > pad ? v->start_f - pad : 0;
        size_t b = v->last_f + 1 + pad;
        seg->start = a * v->frame;
        seg->end = b * v->frame;
    }
    return v->in_speech || v->ended;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

llmos_err voice_vad_segments(const voice_audio *a, const voice_vad_params *pp,
                             voice_segment **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    voice_vad_params p = pp ? *pp : (voice_vad_params){0};
    vad_defaults(&p);
    if (a->rate < 1000)
        return llmos_fail(LLMOS_ERR_INVALID, "voice_vad_segments: a rate of %u Hz", a->rate);
    size_t frame = a->rate / 100, nf = a->n / frame;
    if (nf == 0)
        return LLMOS_OK;
    double *e = malloc(nf * sizeof *e), *sorted = malloc(nf * sizeof *sorted);
    if (!e || !sorted) {
        free(e);
        free(sorted);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the activity detector");
    }
    for (size_t i = 0; i < nf; i++)
        sorted[i] = e[i] = frame_db(a->samples + i * frame, frame);
    /* the whole recording is at hand: start the floor at its quietest tenth, so that speech
     * from the first frame on is found too */
    qsort(sorted, nf, sizeof *sorted, cmp_double);
    voice_vad v = {.p = p, .rate = a->rate, .frame = frame, .have_floor = true,
                   .floor_db = sorted[nf / 10]};
    free(sorted);
    voice_segment *segs = NULL;
    size_t n = 0, cap = 0;
    llmos_err err = LLMOS_OK;
    for (size_t i = 0; i <= nf && !err; i++) {
        if (i < nf) {
            vad_frame(&v, e[i]);
            if (!v.ended)
                continue;
        } else if (!v.in_speech) {
            break;
        }
        /* an utterance ended here (or the recording did, in speech) */
        voice_segment s;
        v.ended = true;
        voice_vad_in_speech(&v, &s);
        if (s.end > a->n)
            s.end = a->n;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            voice_segment *g = realloc(segs, cap * sizeof *g);
            if (!g) {
                err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for the speech segments");
                break;
            }
            segs = g;
        }
        segs[n++] = s;
        v.ended = false;
        v.in_speech = false;
    }
    free(e);
    if (err) {
        free(segs);
        return err;
    }
    *out = segs;
    *n_out = n;
    return LLMOS_OK;
}

/* ---- the sound device (ALSA) and WAV sinks ------------------------------------------------ */

/* ALSA prints its own errors to stderr; llmos says what failed in its own message instead. */
static void alsa_quiet(const char *file, int line, const char *function, int err,
                       const char *fmt, ...)
{
    (void)file, (void)line, (void)function, (void)err, (void)fmt;
}

static void alsa_silence(void)
{
    snd_lib_error_set_handler(alsa_quiet);
}

struct voice_sink {
    uint32_t rate;
    size_t samples;
    /* a WAV file */
    FILE *f;
    char *path, *tmp;
    /* or the device */
    snd_pcm_t *pcm;
};

llmos_err voice_sink_wav(const char *path, uint32_t rate, voice_sink **out)
{
    *out = NULL;
    voice_sink *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the WAV writer");
    }
    s->rate = rate ? rate : 22050;
    /* written beside the file and renamed over it on close: a reader never sees half */
    int fd = -1;
    llmos_err err = llmos_file_create_temp(path, 0644, &fd, &s->tmp);
    if (!err && !(s->f = fdopen(fd, "wb"))) {
        close(fd);
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    unsigned char h[44];
    wav_header(h, 0, s->rate);
    if (!err && fwrite(h, 1, 44, s->f) != 44)
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    if (err) {
        if (s->f)
            fclose(s->f);
        if (s->tmp)
            remove(s->tmp);
        free(s->tmp);
        free(s->path);
        free(s);
        return err;
    }
    *out = s;
    return LLMOS_OK;
}

llmos_err voice_sink_alsa(const char *device, uint32_t rate, voice_sink **out)
{
    *out = NULL;
    const char *dev = device && *device ? device : "default";
    alsa_silence();
    snd_pcm_t *pcm = NULL;
    int rc = snd_pcm_open(&pcm, dev, SND_PCM_STREAM_PLAYBACK, 0);
    if (rc >= 0)
        rc = snd_pcm_set_params(pcm, SND_PCM_FORMAT_S16_LE, SND_PCM_ACCESS_RW_INTERLEAVED, 1,
                                rate ? rate : 22050, 1, 200000);
    if (rc < 0) {
        if (pcm)
            snd_pcm_close(pcm);
        return llmos_fail(LLMOS_ERR_NOT_FOUND,
                          "no sound device to speak on: ALSA cannot open '%s' for playback (%s); "
                          "write the speech to a file instead (--out FILE.wav)",
                          dev, snd_strerror(rc));
    }
    voice_sink *s = calloc(1, sizeof *s);
    if (!s) {
        snd_pcm_close(pcm);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the sound device");
    }
    s->rate = rate ? rate : 22050;
    s->pcm = pcm;
    *out = s;
    return LLMOS_OK;
}

llmos_err voice_sink_write(voice_sink *s, const voice_audio *a)
{
    voice_audio rs = {0};
    const voice_audio *src = a;
    if (a->n && a->rate != s->rate) {
        llmos_err err = voice_resample(a, s->rate, &rs);
        if (err)
            return err;
        src = &rs;
    }
    llmos_err err = LLMOS_OK;
    if (s->f) {
        for (size_t i = 0; i < src->n; i++) {
            uint16_t u = (uint16_t)src->samples[i];
            if (fputc(u & 0xFF, s->f) == EOF || fputc(u >> 8, s->f) == EOF) {
                err = llmos_fail(LLMOS_ERR_IO, "%s: write failed: %s", s->path, strerror(errno));
                break;
            }
        }
        if (!err)
            fflush(s->f);
    } else {
        size_t done = 0;
        while (done < src->n) {
            snd_pcm_sframes_t w = snd_pcm_writei(s->pcm, src->samples + done, src->n - done);
            if (w < 0)
                w = snd_pcm_recover(s->pcm, (int)w, 1);
            if (w < 0) {
                err = llmos_fail(LLMOS_ERR_IO, "the sound device failed: %s",
                                 snd_strerror((int)w));
                break;
            }
            done += (size_t)w;
        }
    }
    if (!err)
        s->samples += src->n;
    voice_audio_free(&rs);
    return err;
}

size_t voice_sink_samples(const voice_sink *s)
{
    return s->samples;
}

llmos_err voice_sink_close(voice_sink *s)
{
    if (!s)
        return LLMOS_OK;
    llmos_err err = LLMOS_OK;
    if (s->f) {
        unsigned char h[44];
        wav_header(h, s->samples, s->rate);
        if (fseek(s->f, 0, SEEK_SET) != 0 || fwrite(h, 1, 44, s->f) != 44 || fflush(s->f) != 0)
            err = llmos_fail(LLMOS_ERR_IO, "%s: write failed: %s", s->path, strerror(errno));
        if (fclose(s->f) != 0 && !err)
            err = llmos_fail(LLMOS_ERR_IO, "%s: write failed: %s", s->path, strerror(errno));
        if (!err && rename(s->tmp, s->path) != 0)
            err = llmos_fail(LLMOS_ERR_IO, "%s: cannot rename into place: %s", s->path,
                             strerror(errno));
        if (err)
            remove(s->tmp);
    } else if (s->pcm) {
        snd_pcm_drain(s->pcm);
        snd_pcm_close(s->pcm);
    }
    free(s->path);
    free(s->tmp);
    free(s);
    return err;
}

/* ---- the microphone ----------------------------------------------------------------------- */

struct voice_mic {
    snd_pcm_t *pcm;
};

llmos_err voice_mic_open(const char *device, voice_mic **out)
{
    *out = NULL;
    const char *dev = device && *device ? device : "default";
    alsa_silence();
    snd_pcm_t *pcm = NULL;
    int rc = snd_pcm_open(&pcm, dev, SND_PCM_STREAM_CAPTURE, 0);
    if (rc >= 0)
        rc = snd_pcm_set_params(pcm, SND_PCM_FORMAT_S16_LE, SND_PCM_ACCESS_RW_INTERLEAVED, 1,
                                VOICE_RATE, 1, 100000);
    if (rc < 0) {
        if (pcm)
            snd_pcm_close(pcm);
        return llmos_fail(LLMOS_ERR_NOT_FOUND,
                          "no microphone: ALSA cannot open '%s' for capture (%s); give the "
                          "speech as a file instead (--in FILE.wav)",
                          dev, snd_strerror(rc));
    }
    voice_mic *m = calloc(1, sizeof *m);
    if (!m) {
        snd_pcm_close(pcm);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the microphone");
    }
    m->pcm = pcm;
    *out = m;
    return LLMOS_OK;
}

llmos_err voice_mic_read(voice_mic *m, int16_t *buf, size_t n, size_t *got)
{
    *got = 0;
    for (int tries = 0; tries < 3; tries++) {
        snd_pcm_sframes_t r = snd_pcm_readi(m->pcm, buf, n);
        if (r > 0) {
            *got = (size_t)r;
            return LLMOS_OK;
        }
        if (r < 0 && snd_pcm_recover(m->pcm, (int)r, 1) < 0)
            return llmos_fail(LLMOS_ERR_IO, "the microphone failed: %s", snd_strerror((int)r));
    }
    return llmos_fail(LLMOS_ERR_IO, "the microphone gives no samples");
}

void voice_mic_close(voice_mic *m)
{
    if (!m)
        return;
    snd_pcm_close(m->pcm);
    free(m);
}
