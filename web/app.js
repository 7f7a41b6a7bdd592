// app.js - the llmos web UI: log in, chat with an agent process (streamed, with its tool
// calls and results), look into memory, list and kill processes, read and verify the audit
// log. Plain JavaScript, no dependencies, nothing fetched from elsewhere.
//
// Security: every text from the server (the model's words, tool results, memories, audit
// records) goes into the page with textContent, never as HTML; the page's CSP allows no inline
// script. The session is an HttpOnly cookie the script cannot read; changes carry the CSRF
// token from the login (X-CSRF-Token), which the server checks.
'use strict';

const state = { account: null, csrf: null, pid: null, view: 'chat' };

// ---- small DOM helpers ---------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function app() { return document.getElementById('app'); }

function show(...nodes) {
  const a = app();
  a.replaceChildren(...nodes);
}

function when(t) { return new Date(t * 1000).toLocaleString(); }

// ---- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || ('HTTP ' + status));
    this.status = status;
    this.code = e.code || '';
  }
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (r.status === 401 && path !== '/auth/login') { loggedOut('Your session has ended: log in again.'); }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// ---- passkeys (WebAuthn with the PRF extension) ---------------------------------------------

function b64urlToBytes(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

function bytesToB64url(buf) {
  const b = new Uint8Array(buf);
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// The server's options with their base64url members as bytes, as the browser wants them.
function decodeOptions(pk) {
  pk.challenge = b64urlToBytes(pk.challenge);
  if (pk.user) pk.user.id = b64urlToBytes(pk.user.id);
  for (const c of pk.allowCredentials || []) c.id = b64urlToBytes(c.id);
  for (const c of pk.excludeCredentials || []) c.id = b64urlToBytes(c.id);
  if (pk.extensions && pk.extensions.prf) pk.extensions.prf.eval.first = b64urlToBytes(pk.extensions.prf.eval.first);
  return pk;
}

function prfOf(cred) {
  const r = cred.getClientExtensionResults();
  return r.prf && r.prf.results && r.prf.results.first ? bytesToB64url(r.prf.results.first) : null;
}

const NO_PRF = 'This authenticator cannot give a secret for llmos (the WebAuthn PRF extension): ' +
  'your store is encrypted, so a passkey here needs one. Use the passphrase.';

async function passkeyLogin(account) {
  const opt = await api('POST', '/auth/passkey/login/options', { account });
  const pk = decodeOptions(opt.publicKey);
  const cred = await navigator.credentials.get({ publicKey: pk });
  const prf = prfOf(cred);
  if (!prf) throw new Error(NO_PRF);
  return api('POST', '/auth/passkey/login', {
    account,
    id: bytesToB64url(cred.rawId),
    clientDataJSON: bytesToB64url(cred.response.clientDataJSON),
    authenticatorData: bytesToB64url(cred.response.authenticatorData),
    signature: bytesToB64url(cred.response.signature),
    prf,
  });
}

async function passkeyAdd(passphrase) {
  const opt = await api('POST', '/auth/passkey/register/options');
  const pk = decodeOptions(opt.publicKey);
  const salt = pk.extensions.prf.eval.first;
  const cred = await navigator.credentials.create({ publicKey: pk });
  let prf = prfOf(cred);
  if (!prf) {
    // some authenticators give the secret only when asked for it with an assertion
    const got = await navigator.credentials.get({ publicKey: {
      challenge: crypto.getRandomValues(new Uint8Array(32)), rpId: pk.rp.id,
      allowCredentials: [{ type: 'public-key', id: cred.rawId }],
      extensions: { prf: { eval: { first: salt } } },
    } });
    prf = prfOf(got);
  }
  if (!prf) throw new Error(NO_PRF);
  return api('POST', '/auth/passkey/register', {
    passphrase,
    clientDataJSON: bytesToB64url(cred.response.clientDataJSON),
    attestationObject: bytesToB64url(cred.response.attestationObject),
    prf,
  });
}

// ---- login ---------------------------------------------------------------------------------

function loggedOut(message) {
  state.account = state.csrf = state.pid = null;
  loginView(message);
}

function loginView(message) {
  const err = el('p', { class: 'error', 'data-testid': 'login-error', role: 'alert', text: message || '' });
  const account = el('input', { id: 'account', name: 'account', autocomplete: 'username', required: '' });
  const pass = el('input', { id: 'passphrase', name: 'passphrase', type: 'password', autocomplete: 'current-password', required: '' });
  const withPasskey = el('button', { type: 'button', 'data-testid': 'login-passkey', text: 'Log in with a passkey' });
  const form = el('form', { class: 'login', 'data-testid': 'login-form' },
    el('h1', { text: 'llmos' }),
    el('label', { for: 'account', text: 'Account' }), account,
    el('label', { for: 'passphrase', text: 'Passphrase' }), pass,
    el('button', { type: 'submit', text: 'Log in' }), withPasskey, err);
  withPasskey.addEventListener('click', async () => {
    err.textContent = '';
    if (!account.value) { err.textContent = 'Say which account first.'; return; }
    try {
      const r = await passkeyLogin(account.value);
      state.account = r.account;
      state.csrf = r.csrf;
      mainView('chat');
    } catch (e) {
      err.textContent = e.message;
    }
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    try {
      const r = await api('POST', '/auth/login', { account: account.value, passphrase: pass.value });
      pass.value = '';
      state.account = r.account;
      state.csrf = r.csrf;
      mainView('chat');
    } catch (e) {
      pass.value = '';
      err.textContent = e.message;
    }
  });
  show(form);
  account.focus();
}

async function logout() {
  try { await api('POST', '/auth/logout'); } catch (_) { /* ended already */ }
  loggedOut('Logged out.');
}

// ---- the frame -----------------------------------------------------------------------------

const views = {
  chat: ['Chat', chatView],
  memory: ['Memory', memoryView],
  processes: ['Processes', processesView],
  audit: ['Audit', auditView],
  apps: ['Apps', appsView],
  settings: ['Settings', settingsView],
};

function mainView(name) {
  state.view = name;
  const nav = el('nav', {});
  for (const [key, [label]] of Object.entries(views)) {
    nav.append(el('button', {
      class: key === name ? 'tab active' : 'tab', 'data-testid': 'tab-' + key, text: label,
      onclick: () => mainView(key),
    }));
  }
  nav.append(el('span', { class: 'who', 'data-testid': 'who', text: state.account }),
    el('button', { class: 'tab', 'data-testid': 'logout', text: 'Log out', onclick: logout }));
  const body = el('section', { class: 'view', 'data-testid': 'view-' + name });
  show(el('header', {}, nav), body);
  views[name][1](body);
}

function errorLine(where, e) {
  where.append(el('p', { class: 'error', role: 'alert', text: e.message }));
}

// ---- chat ----------------------------------------------------------------------------------

function chatView(body) {
  const log = el('div', { class: 'chat-log', 'data-testid': 'chat-log', 'aria-live': 'polite' });
  const input = el('textarea', { id: 'message', rows: '3', placeholder: 'Message the agent…', 'data-testid': 'chat-input' });
  const send = el('button', { type: 'submit', 'data-testid': 'chat-send', text: 'Send' });
  const form = el('form', { class: 'chat-form' }, input, send);
  const info = el('p', { class: 'muted', 'data-testid': 'chat-pid', text: state.pid ? 'process ' + state.pid : 'a new process starts with your first message' });
  body.append(info, log, form);
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    send.disabled = true;
    log.append(el('div', { class: 'msg user', 'data-testid': 'msg-user', text }));
    try {
      if (!state.pid) {
        const p = await api('POST', '/v1/processes', {});
        state.pid = p.pid;
        info.textContent = 'process ' + p.pid;
      }
      await streamTurn(state.pid, text, log);
    } catch (e) {
      errorLine(log, e);
      if (e.code === 'process_ended') state.pid = null;
    } finally {
      send.disabled = false;
      input.focus();
    }
  });
  input.focus();
}

// One turn with server-sent events over fetch (EventSource cannot POST or send headers).
async function streamTurn(pid, text, log) {
  const r = await fetch('/v1/processes/' + pid + '/messages', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': state.csrf },
    body: JSON.stringify({ content: text, stream: true }),
  });
  if (!r.ok) {
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    throw new ApiError(r.status, data);
  }
  let answer = null;
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let name = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      let ev;
      try { ev = JSON.parse(data); } catch (_) { continue; }
      if (name === 'text') {
        if (!answer) {
          answer = el('div', { class: 'msg assistant', 'data-testid': 'msg-assistant' });
          log.append(answer);
        }
        answer.textContent += ev.text;
      } else if (name === 'tool_call') {
        answer = null;
        log.append(el('div', { class: 'tool call', 'data-testid': 'tool-call' },
          el('span', { class: 'badge', text: 'tool call' }),
          el('code', { text: ev.name + '(' + ev.arguments + ')' })));
      } else if (name === 'tool_result') {
        answer = null;
        const untrusted = ev.origin === 'untrusted';
        log.append(el('div', { class: 'tool result' + (untrusted ? ' untrusted' : ''), 'data-testid': 'tool-result' },
          el('span', { class: 'badge', text: untrusted ? 'untrusted result (the model saw only a handle)' : ev.is_error ? 'tool error' : 'tool result' }),
          el('code', { text: ev.name + ': ' + ev.text })));
      } else if (name === 'message') {
        log.append(el('div', { class: 'msg assistant', 'data-testid': 'msg-assistant', text: ev.text }));
      } else if (name === 'notice') {
        log.append(el('div', { class: 'notice', text: ev.text }));
      } else if (name === 'error') {
        log.append(el('p', { class: 'error', text: (ev.error && ev.error.message) || 'error' }));
      } else if (name === 'end') {
        log.append(el('div', { class: 'notice', 'data-testid': 'turn-end', text: 'turn ended: ' + ev.state + (ev.reason ? ' (' + ev.reason + ')' : '') + ', ' + ev.used.tokens + ' tokens' }));
      }
      log.scrollTop = log.scrollHeight;
    }
  }
}

// ---- memory --------------------------------------------------------------------------------

function memoryView(body) {
  const stats = el('p', { class: 'muted', 'data-testid': 'memory-stats' });
  const core = el('div', { 'data-testid': 'core-blocks' });
  body.append(el('h2', { text: 'Core memory' }), stats, core);
  api('GET', '/v1/memory').then((s) => {
    stats.textContent = s.messages + ' messages, ' + s.archival + ' archival passages, ' + s.core_blocks + ' core blocks; embedder ' + s.embedder;
  }).catch((e) => errorLine(stats, e));
  api('GET', '/v1/memory/core').then((r) => {
    for (const b of r.blocks) {
      core.append(el('div', { class: 'block' },
        el('h3', { text: b.label + ' (' + b.value.length + '/' + b.limit + ')' }),
        el('pre', { text: b.value || '(empty)' })));
    }
  }).catch((e) => errorLine(core, e));

  body.append(el('h2', { text: 'Recall (what was said)' }),
    searchBox('recall', '/v1/memory/recall?q=', (r, out) => {
      for (const m of r.messages)
        out.append(el('li', {}, el('span', { class: 'badge', text: m.role + ' · ' + m.conversation + ' · ' + when(m.created_at) }), el('span', { text: ' ' + m.content })));
      if (!r.messages.length) out.append(el('li', { class: 'muted', text: 'nothing found' }));
    }, true));
  body.append(el('h2', { text: 'Archival memory' }),
    searchBox('archival', '/v1/memory/search?q=', (r, out) => {
      for (const m of r.results)
        out.append(el('li', {}, el('span', { class: 'badge', text: '#' + m.id + ' · ' + m.score.toFixed(3) }), el('span', { text: ' ' + m.text })));
      if (!r.results.length) out.append(el('li', { class: 'muted', text: 'nothing found' }));
    }, false));
}

function searchBox(name, path, render, emptyOk) {
  const q = el('input', { type: 'search', placeholder: 'search…', 'data-testid': name + '-query' });
  const out = el('ul', { class: 'results', 'data-testid': name + '-results' });
  const form = el('form', { class: 'search' }, q, el('button', { type: 'submit', 'data-testid': name + '-search', text: 'Search' }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    if (!q.value && !emptyOk) return;
    try { render(await api('GET', path + encodeURIComponent(q.value)), out); } catch (e) { errorLine(out, e); }
  });
  if (emptyOk) setTimeout(() => form.requestSubmit(), 0);
  return el('div', {}, form, out);
}

// ---- processes -----------------------------------------------------------------------------

function processesView(body) {
  const table = el('table', { 'data-testid': 'processes' });
  body.append(table);
  const load = async () => {
    table.replaceChildren(el('tr', {}, ...['pid', 'state', 'model', 'capabilities', 'tokens', 'created', ''].map((h) => el('th', { text: h }))));
    let r;
    try { r = await api('GET', '/v1/processes'); } catch (e) { errorLine(body, e); return; }
    for (const p of r.data.slice().reverse()) {
      const live = ['running', 'waiting', 'idle'].includes(p.state); // done: ended its turn
      const kill = live ? el('button', { 'data-testid': 'kill-' + p.pid, text: 'Kill', onclick: async () => {
        try { await api('POST', '/v1/processes/' + p.pid + '/kill'); if (state.pid === p.pid) state.pid = null; load(); } catch (e) { errorLine(body, e); }
      } }) : null;
      table.append(el('tr', { 'data-testid': 'process-' + p.pid },
        el('td', { text: String(p.pid) }), el('td', { text: p.state + (p.reason ? ' (' + p.reason + ')' : '') }),
        el('td', { text: p.model }), el('td', { text: p.caps }), el('td', { text: String(p.used.tokens) }),
        el('td', { text: when(p.created_at) }), el('td', {}, kill)));
    }
  };
  load();
}

// ---- audit ---------------------------------------------------------------------------------

function auditView(body) {
  const verdict = el('p', { 'data-testid': 'audit-verdict', class: 'muted', text: '' });
  const verify = el('button', { 'data-testid': 'audit-verify', text: 'Verify the hash chain', onclick: async () => {
    verdict.textContent = 'checking…';
    try {
      const v = await api('GET', '/v1/audit/verify');
      verdict.className = v.ok ? 'ok' : 'error';
      verdict.textContent = v.ok ? 'chain intact: ' + v.records + ' records verified'
        : 'chain BROKEN at record ' + v.bad_seq + ': ' + v.reason;
    } catch (e) { verdict.className = 'error'; verdict.textContent = e.message; }
  } });
  const list = el('table', { 'data-testid': 'audit-records' });
  body.append(el('div', { class: 'row' }, verify, verdict), list);
  (async () => {
    // the newest page: walk to the end of the log 1000 at a time, keep the last 200
    let from = 1, records = [];
    try {
      for (let i = 0; i < 50; i++) {
        const r = await api('GET', '/v1/audit?from=' + from + '&limit=1000');
        records = records.concat(r.records).slice(-200);
        if (!r.next) break;
        from = r.next;
      }
    } catch (e) { errorLine(body, e); return; }
    list.append(el('tr', {}, ...['seq', 'time', 'kind', 'payload'].map((h) => el('th', { text: h }))));
    for (const rec of records.reverse())
      list.append(el('tr', {}, el('td', { text: String(rec.seq) }), el('td', { text: when(rec.time) }),
        el('td', { text: rec.kind }), el('td', {}, el('code', { text: JSON.stringify(rec.payload) }))));
  })();
}

// ---- apps ----------------------------------------------------------------------------------

function appsView(body) {
  const table = el('table', { 'data-testid': 'apps' });
  body.append(el('h2', { text: 'Installed apps' }), table,
    el('p', { class: 'muted', text: 'Apps are installed on the server with `llmos pull` and checked against its signing keys (docs/supply-chain.md).' }));
  api('GET', '/v1/apps').then((r) => {
    table.append(el('tr', {}, ...['name', 'version', 'signature'].map((h) => el('th', { text: h }))));
    for (const a of r.data)
      table.append(el('tr', { 'data-testid': 'app-' + a.name }, el('td', { text: a.name }), el('td', { text: a.version }),
        el('td', { text: a.signed ? 'signed' : 'unsigned (allowed by the policy)' })));
    if (!r.data.length) table.append(el('tr', {}, el('td', { class: 'muted', colspan: '3', 'data-testid': 'apps-none', text: 'no apps installed' })));
  }).catch((e) => errorLine(body, e));
}

// ---- settings ------------------------------------------------------------------------------

function settingsView(body) {
  const dl = el('dl', { 'data-testid': 'settings' });
  body.append(el('h2', { text: 'Account and server' }), dl);
  const row = (k, v) => dl.append(el('dt', { text: k }), el('dd', { text: v }));
  row('Account', state.account);
  row('Session', 'an HttpOnly cookie; changes carry a CSRF token; log out to end it');
  api('GET', '/v1/models').then((r) => row('Model', r.data.map((m) => m.id).join(', '))).catch(() => {});
  api('GET', '/v1/memory').then((s) => {
    row('Store', (s.db_bytes / 1048576).toFixed(1) + ' MiB, encrypted; ' + s.audit_records + ' audit records');
    row('Archival embedder', s.embedder + (s.vector_index ? ' (vector index)' : ''));
  }).catch(() => {});
  body.append(el('p', { class: 'muted', text: 'Change the passphrase with `llmos user passwd ' + state.account + '` on the server.' }));
  const pass = el('input', { type: 'password', id: 'passkey-passphrase', autocomplete: 'current-password', 'data-testid': 'passkey-passphrase' });
  const note = el('p', { 'data-testid': 'passkey-result', role: 'status' });
  const form = el('form', { class: 'search' }, pass, el('button', { type: 'submit', 'data-testid': 'passkey-add', text: 'Add a passkey' }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    note.className = '';
    note.textContent = 'waiting for the authenticator…';
    try {
      await passkeyAdd(pass.value);
      note.className = 'ok';
      note.textContent = 'Passkey added: you can log in with it.';
    } catch (e) {
      note.className = 'error';
      note.textContent = e.message;
    } finally {
      pass.value = '';
    }
  });
  body.append(el('h2', { text: 'Passkeys' }),
    el('p', { class: 'muted', text: 'A passkey holds a copy of your store\'s key, wrapped with a secret only your authenticator can give (WebAuthn PRF). Your passphrase is asked once to make the copy.' }),
    el('label', { for: 'passkey-passphrase', text: 'Passphrase' }), form, note);
}

// ---- start ---------------------------------------------------------------------------------

async function start() {
  try {
    const r = await fetch('/auth/session', { credentials: 'same-origin' });
    if (r.ok) {
      const s = await r.json();
      if (s.login) {
        state.account = s.account;
        state.csrf = s.csrf;
        mainView('chat');
        return;
      }
    }
  } catch (_) { /* not logged in */ }
  loginView('');
}

document.addEventListener('DOMContentLoaded', start);
