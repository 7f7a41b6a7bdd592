// scripted_openai_server.mjs - a TEST DOUBLE: an OpenAI-compatible server that answers from a
// script, so that the web UI's test can see a tool call and its result without a model that
// calls tools. Its first answer to a conversation calls the calculator; once the conversation
// holds the tool's result, it answers with text in pieces. Prints "listening PORT".
import http from 'node:http';

const model = 'scripted-test';

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

function answer(messages) {
  const last = messages[messages.length - 1];
  if (last && last.role === 'tool')
    return { content: 'The calculator says ' + String(last.content).slice(0, 40) + '.' };
  return { tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'calculator', arguments: '{"expression":"6*7"}' } }] };
}

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    if (req.method === 'GET' && req.url.endsWith('/models'))
      return send(res, 200, { object: 'list', data: [{ id: model, object: 'model', owned_by: 'test' }] });
    let q;
    try { q = JSON.parse(body || '{}'); } catch (_) { return send(res, 400, { error: { message: 'bad json' } }); }
    if (req.url.endsWith('/embeddings')) {
      const inputs = Array.isArray(q.input) ? q.input : [q.input];
      return send(res, 200, { object: 'list', model, data: inputs.map((t, i) => ({ object: 'embedding', index: i, embedding: [1, String(t).length % 7, 0, 0, 0, 0, 0, 1] })), usage: { prompt_tokens: 1, total_tokens: 1 } });
    }
    if (!req.url.endsWith('/chat/completions')) return send(res, 404, { error: { message: 'no such route' } });
    const a = answer(q.messages || []);
    const finish = a.tool_calls ? 'tool_calls' : 'stop';
    const base = { id: 'chatcmpl-test', object: 'chat.completion.chunk', created: 0, model };
    if (!q.stream) {
      return send(res, 200, { id: 'chatcmpl-test', object: 'chat.completion', created: 0, model,
        choices: [{ index: 0, message: { role: 'assistant', content: a.content || null, tool_calls: a.tool_calls }, finish_reason: finish }],
        usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } });
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    const ev = (delta, fin) => res.write('data: ' + JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: fin }] }) + '\n\n');
    ev({ role: 'assistant' }, null);
    if (a.tool_calls) ev({ tool_calls: a.tool_calls.map((t, i) => ({ index: i, ...t })) }, null);
    else for (const piece of a.content.match(/.{1,6}/g)) ev({ content: piece }, null);
    ev({}, finish);
    res.end('data: [DONE]\n\n');
  });
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
