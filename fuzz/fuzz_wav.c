/*
 * fuzz_wav.c - fuzz the WAV reader (voice_wav_parse), which reads uploads to
 * POST /v1/audio/transcriptions and files given to `llmos voice --in`.
 *
 * Input: the bytes of a would-be WAV file. Each is read twice: at its own rate and resampled to
 * 16 kHz. An accepted file's samples are checked for count (what its rate and the resampling
 * promise), written back as WAV and read again to the same samples. Nothing may crash, leak,
 * hang or read outside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/voice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    voice_audio a = {0}, b = {0};
    llmos_err err = voice_wav_parse(data, size, 0, &a);
    if (err == LLMOS_OK) {
        if (a.rate < 8000 || a.rate > 192000 || (a.n && !a.samples))
            abort();
        llmos_buf wav = {0};
        if (voice_wav_encode(&a, &wav) == LLMOS_OK) {
            voice_audio c = {0};
            if (voice_wav_parse(wav.data, wav.len, 0, &c) != LLMOS_OK || c.n != a.n ||
                c.rate != a.rate || (a.n && memcmp(c.samples, a.samples, a.n * 2) != 0))
                abort(); /* what llmos writes it reads back exactly */
            voice_audio_free(&c);
        }
        buf_free(&wav);
        if (voice_wav_parse(data, size, VOICE_RATE, &b) != LLMOS_OK)
            abort(); /* resampling an accepted file cannot fail but for memory */
        size_t expect = (size_t)((double)a.n * VOICE_RATE / a.rate);
        if (b.rate != VOICE_RATE || b.n + 1 < expect || b.n > expect + 1)
            abort();
    } else if (err != LLMOS_ERR_FORMAT && err != LLMOS_ERR_LIMIT) {
        abort(); /* bad bytes are a format error (or too long), never anything else */
    }
    voice_audio_free(&a);
    voice_audio_free(&b);
    return 0;
}
