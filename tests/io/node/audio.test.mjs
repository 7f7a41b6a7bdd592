// audio.test.mjs - the official `openai` Node.js client's audio calls against `llmos serve`:
// audio.speech.create (text -> WAV through espeak-ng) and audio.transcriptions.create (a WAV
// upload -> text through pocketsphinx), in both response formats, and the errors a client can
// cause (a compressed format asked for, a file that is not WAV, no text to speak).
//
// run.sh starts the server and passes LLMOS_BASE_URL and LLMOS_API_KEY (see openai.test.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { toFile } from 'openai';

const baseURL = process.env.LLMOS_BASE_URL;
const apiKey = process.env.LLMOS_API_KEY;
assert.ok(baseURL && apiKey, 'run through run.sh (LLMOS_BASE_URL, LLMOS_API_KEY)');
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });

const sentence = 'What is the weather like today?';

async function speak(input, extra = {}) {
  const r = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input, response_format: 'wav', ...extra });
  return Buffer.from(await r.arrayBuffer());
}

test('audio.speech.create answers a WAV file of the spoken text', async () => {
  const wav = await speak(sentence);
  assert.equal(wav.subarray(0, 4).toString('latin1'), 'RIFF');
  assert.equal(wav.subarray(8, 16).toString('latin1'), 'WAVEfmt ');
  assert.equal(wav.readUInt16LE(22), 1); // mono
  const rate = wav.readUInt32LE(24);
  const seconds = wav.readUInt32LE(40) / 2 / rate;
  assert.ok(seconds > 1 && seconds < 5, `${seconds} s of speech`);
  // faster speech is shorter; another voice speaks too
  const fast = await speak(sentence, { speed: 2.0, voice: 'nova' });
  assert.ok(fast.length < wav.length * 0.75, `speed 2: ${fast.length} bytes vs ${wav.length}`);
  // pcm: raw 16-bit samples at 24 kHz, no header
  const pcm = await speak(sentence, { response_format: 'pcm' });
  assert.notEqual(pcm.subarray(0, 4).toString('latin1'), 'RIFF');
  assert.ok(Math.abs(pcm.length / 2 / 24000 - seconds) < 0.1);
});

test('audio.transcriptions.create hears what speech.create said (json and text)', async () => {
  const wav = await speak(sentence);
  const r = await client.audio.transcriptions.create({ file: await toFile(wav, 'question.wav'), model: 'whisper-1' });
  assert.equal(typeof r.text, 'string');
  // dictation of a synthetic voice is rough (docs/voice.md): some of the words come back
  assert.match(r.text, /\b(what|is|the|weather|like|today)\b/, `heard "${r.text}"`);
  const t = await client.audio.transcriptions.create({
    file: await toFile(wav, 'question.wav'), model: 'whisper-1', response_format: 'text',
  });
  assert.equal(typeof t, 'string');
  // the decoder's channel normalisation carries over from one utterance to the next, so the
  // same audio a second time may come out a word different: the text format, not equality
  assert.ok(t.endsWith('\n') && !t.trim().startsWith('{'), `text format: ${JSON.stringify(t)}`);
  assert.match(t, /\b(what|is|the|weather|like|today)\b/);
});

test('silence is an empty transcript, not an error', async () => {
  const rate = 16000, n = rate; // one second of digital silence
  const wav = Buffer.alloc(44 + 2 * n);
  wav.write('RIFF', 0, 'latin1'); wav.writeUInt32LE(36 + 2 * n, 4); wav.write('WAVEfmt ', 8, 'latin1');
  wav.writeUInt32LE(16, 16); wav.writeUInt16LE(1, 20); wav.writeUInt16LE(1, 22);
  wav.writeUInt32LE(rate, 24); wav.writeUInt32LE(2 * rate, 28); wav.writeUInt16LE(2, 32);
  wav.writeUInt16LE(16, 34); wav.write('data', 36, 'latin1'); wav.writeUInt32LE(2 * n, 40);
  const r = await client.audio.transcriptions.create({ file: await toFile(wav, 'quiet.wav'), model: 'whisper-1' });
  assert.equal(r.text, '');
});

test('the client\'s mistakes are 400s that say what to do', async () => {
  await assert.rejects(
    client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'hi', response_format: 'mp3' }),
    (e) => e instanceof OpenAI.BadRequestError && /wav/.test(e.message));
  await assert.rejects(
    client.audio.transcriptions.create({ file: await toFile(Buffer.from('ID3\x04 not really an mp3'), 'song.mp3'), model: 'whisper-1' }),
    (e) => e instanceof OpenAI.BadRequestError && /MP3/.test(e.message));
  await assert.rejects(
    client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'x'.repeat(5000) }),
    (e) => e instanceof OpenAI.BadRequestError && /4096/.test(e.message));
});
