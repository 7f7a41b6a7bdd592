// openai.test.mjs - the official `openai` Node.js client against `llmos serve`.
//
// run.sh starts `llmos serve --model stories260K.gguf` on a free loopback port with an API
// key and passes LLMOS_BASE_URL, LLMOS_API_KEY and LLMOS_MODEL. The model's vocabulary is
// synthetic (texts come out as "tok_N" pieces), so the tests check shapes and agreement, not
// prose. Run with node's built-in test runner: node --test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = process.env.LLMOS_BASE_URL;
const apiKey = process.env.LLMOS_API_KEY;
const model = process.env.LLMOS_MODEL;
assert.ok(baseURL && apiKey && model, 'run through run.sh (LLMOS_BASE_URL, LLMOS_API_KEY, LLMOS_MODEL)');

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const messages = [{ role: 'user', content: 'Once upon a time' }];

test('models.list names the served model', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, [model]);
  const one = await client.models.retrieve(model);
  assert.equal(one.id, model);
});

test('chat.completions.create answers in the chat.completion shape', async () => {
  const r = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, model);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 10);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 10);
});

test('streaming gives the same text as the whole answer (greedy)', async () => {
  const whole = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 12, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    text += c.delta.content ?? '';
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.ok(chunks > 2, `expected several chunks, got ${chunks}`);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);
});

test('tools: a required tool call comes back with arguments that parse as JSON', async () => {
  const tools = [{
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather in a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', maxLength: 20 } },
        required: ['city'],
        additionalProperties: false,
      },
    },
  }];
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools,
    tool_choice: 'required', max_tokens: 400, seed: 1,
  });
  const msg = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.ok(msg.tool_calls.length >= 1);
  for (const call of msg.tool_calls) {
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    const args = JSON.parse(call.function.arguments);
    assert.equal(typeof args.city, 'string');
    assert.deepEqual(Object.keys(args), ['city']);
  }
});

test('completions.create (legacy prompt API)', async () => {
  const r = await client.completions.create({ model, prompt: 'Once', max_tokens: 5, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.usage.completion_tokens, 5);
  assert.equal(typeof r.choices[0].text, 'string');
});

test('embeddings: vectors (the local engine embeds; a model that cannot answers 400)', async () => {
  const r = await client.embeddings.create({ model, input: ['a', 'b'], encoding_format: 'float' });
  assert.equal(r.data.length, 2);
  assert.ok(r.data[0].embedding.length > 0);
});

test('errors arrive as OpenAI errors the client understands', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
  await assert.rejects(
    client.chat.completions.create({ model, messages, temperature: 7 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature');
});
