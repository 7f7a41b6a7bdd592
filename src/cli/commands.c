/*
 * commands.c - the one table of llmos subcommands, and the helpers they share.
 */
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmos/memory.h"

const cli_command cli_commands[] = {
    {"help", "Show help for llmos or for one command",
     "usage: llmos help [COMMAND]\n\n"
     "With no COMMAND, list all commands. With COMMAND, show its full help\n"
     "(the same as `llmos COMMAND --help`).\n",
     cmd_help},
    {"version", "Print version, build type, compiler and CPU features",
     "usage: llmos version\n\n"
     "Print the llmos version, how it was built (build type, compiler) and the CPU\n"
     "features detected at run time that the inference kernels can use.\n",
     cmd_version},
    {"doctor", "Check the installation and say what to fix",
     "usage: llmos doctor\n\n"
     "Check that the libraries llmos needs work, which CPU features are usable,\n"
     "where user data lives ($LLMOS_HOME, default ~/.local/share/llmos; created,\n"
     "mode 700, when missing) and how much disk is free there. Each problem is\n"
     "printed with what to do about it.\n"
     "Exit status 0 when everything is usable, 1 when something must be fixed.\n",
     cmd_doctor},
    {"shell", "Start the interactive llmos shell (the default)",
     "usage: llmos [shell] [--model FILE | --api URL --api-model NAME] [--system TEXT]\n"
     "                     [--guard FILE | --no-guard]\n"
     "                     [-n N] [--temp T] [--seed S] [-t THREADS] [--ctx N]\n"
     "                     [--embed-model FILE|lexical] [--caps LIST] [--no-store]\n"
     "                     [MESSAGE...]\n\n"
     "Chat with a model: type a message, the answer streams back; the conversation is\n"
     "kept between turns. Commands start with / (/help lists them, /quit leaves).\n"
     "Ctrl-C stops an answer (at the prompt it clears the line); Ctrl-D quits. On a\n"
     "terminal lines are edited with history (kept in the encrypted store); from a\n"
     "pipe, lines are read from standard input. With a MESSAGE it answers that once\n"
     "and exits. Every message runs through the kernel; the context is kept to the\n"
     "model's window, older messages paged out to recall memory (docs/memory.md).\n"
     "Without a model (no --model, --api or $LLMOS_MODEL) it prints the doctor report\n"
     "and how to get a model, and exits 0.\n\n"
     "  --model FILE         a local GGUF model, or NAME[:TAG] of one from the app store,\n"
     "                       verified before it loads (default: $LLMOS_MODEL)\n"
     "  --api URL            an OpenAI-compatible server, e.g. http://host:8080/v1\n"
     "  --api-model NAME     the server's model name (required with --api)\n"
     "  --api-key-env VAR    read the API key from $VAR (default: LLMOS_API_KEY)\n"
     "  --system TEXT        a system message at the start of the conversation\n"
     "  -n N                 the most tokens per answer (default 512)\n"
     "  --temp T, --seed S   sampling temperature (default 0.8) and seed\n"
     "  -t THREADS, --ctx N  threads and context size of a local model\n"
     "  --quarantine-model FILE|URL  the model that reads untrusted text (default: a\n"
     "                       second context of --model, or the --api server again)\n"
     "  --quarantine-api-model NAME  its name on that server\n"
     "  --embed-model FILE|lexical  what embeds archival memory (default: the chat\n"
     "                       model itself; $LLMOS_EMBED_MODEL). With a store of another\n"
     "                       embedder's vectors archival memory is off, and it says so.\n"
     "  --guard FILE         the output guard's policy (docs/security.md; default: the\n"
     "                       built-in one: keys and card numbers redacted, private\n"
     "                       keys blocked, e-mail and phone numbers noted in the audit)\n"
     "  --no-guard           no output guard on answers and tool arguments\n"
     "  --caps LIST          what the model's processes may do (default\n"
     "                       compute,message,quarantine,memory); add exec for the python\n"
     "                       and shell tools, read for files (docs/tools.md); /tools\n"
     "                       lists what they may call\n"
     "  --no-store           run on a store in memory only: nothing is kept when the\n"
     "                       shell ends; also when no passphrase is at hand\n"
     "                       ($LLMOS_PASSPHRASE unset and standard input not a terminal)\n",
     cmd_shell},
    {"tokenize", "Show the tokens a model's tokenizer makes of a text",
     "usage: llmos tokenize --model FILE [--ids] [--special] [--add-special] TEXT\n\n"
     "Tokenize TEXT (or standard input when TEXT is -) with the vocabulary of the GGUF\n"
     "model FILE and print one token per line as  id<TAB>'piece'  (the bytes the token\n"
     "stands for; non-printable bytes escaped as \\xNN).\n\n"
     "  --ids          print only the ids, space-separated, on one line\n"
     "  --special      text that spells a special token (\"<|im_start|>\") becomes that\n"
     "                 token; without it such text is tokenized as plain characters\n"
     "  --add-special  add BOS/EOS as the model's metadata asks\n",
     cmd_tokenize},
    {"generate", "Run a local model on a prompt and stream the text it writes",
     "usage: llmos generate [--model FILE] --prompt TEXT [-n N] [--temp T] [--seed S]\n"
     "                      [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
     "                      [-t THREADS] [--ids]\n\n"
     "Load the GGUF model FILE (architectures llama and qwen2), tokenize TEXT (BOS\n"
     "added as the model asks; special tokens are not parsed from TEXT), and print\n"
     "the continuation as it is generated. Timings (prompt and generation tokens/s)\n"
     "go to standard error. Generation stops after N tokens, at an end-of-generation\n"
     "token, or when the model's context is full.\n\n"
     "  --model FILE         the local GGUF model, or NAME[:TAG] from the app store\n"
     "                       (default: $LLMOS_MODEL, as for the shell; neither is used\n"
     "                       with --api)\n"
     "  --prompt TEXT        the text to continue\n"
     "  -n N                 tokens to generate (default 128)\n"
     "  --temp T             temperature; 0 = greedy (default 0.8)\n"
     "  --seed S             random seed; the same seed gives the same text (default:\n"
     "                       random, printed at the end)\n"
     "  --top-k K            sample among the K most likely tokens (default 40; 0 = all)\n"
     "  --top-p P            ... the smallest set with probability >= P (default 0.95)\n"
     "  --min-p P            ... tokens at least P times the most likely (default 0.05)\n"
     "  --repeat-penalty R   penalise the last 64 tokens (default 1 = off)\n"
     "  -t THREADS           threads (default: LLMOS_THREADS or all CPUs)\n"
     "  --ids                TEXT is token ids (\"1 461 401\") and ids are printed\n"
     "  --api URL            instead of --model: send TEXT as a user message to the\n"
     "                       OpenAI-compatible server at URL (e.g. http://host:8080/v1)\n"
     "  --api-model NAME     the server's model name (required with --api)\n"
     "  --api-key-env VAR    read the API key from $VAR (default: LLMOS_API_KEY); keys\n"
     "                       are never taken on the command line, which others can see\n",
     cmd_generate},
    {"model", "Inspect and make GGUF model files",
     "usage: llmos model SUBCOMMAND [ARGS...]\n\n"
     "Subcommands:\n"
     "  info FILE [--json]   show a model's metadata, hyperparameters, tokenizer and tensors\n"
     "  make-random ... OUT  write a random-weight model of a real shape (for benchmarks)\n"
     "  quantize IN OUT TYPE write a copy with quantized weights (Q4_0 ... Q4_K_M)\n\n"
     "Run 'llmos model help SUBCOMMAND' for the options of one subcommand.\n",
     cmd_model},
    {"memory", "Look into, add to and check your encrypted memory",
     "usage: llmos memory core [--json]\n"
     "       llmos memory recall [QUERY...] [--since D] [--until D] [--page N] [-k N] [--json]\n"
     "       llmos memory archival [QUERY...] [--page N] [-k N] [--json]\n"
     "       llmos memory add [TEXT... | -]\n"
     "       llmos memory search QUERY... [-k N]\n"
     "       llmos memory stats | verify | reset\n"
     "       llmos memory reembed --embed-model FILE|lexical\n\n"
     "Your memory lives in an encrypted store in $LLMOS_HOME/store (every page\n"
     "sealed with XChaCha20-Poly1305 under a key protected by your passphrase), in\n"
     "three levels (docs/memory.md): core blocks always in the model's context, recall\n"
     "(everything said) and archival (passages kept on purpose). The passphrase is\n"
     "asked on the terminal (twice when the store is created), or taken from\n"
     "LLMOS_PASSPHRASE. LLMOS_KDF=moderate|interactive|sensitive sets the Argon2id\n"
     "strength of a new store (default moderate: ~1 s, 256 MiB).\n\n"
     "  core          the core blocks with their sizes and limits\n"
     "  recall        the newest messages, or those matching QUERY (by words); dates\n"
     "                D as YYYY-MM-DD (UTC) or Unix seconds\n"
     "  archival      the newest passages, or those best matching QUERY (by meaning\n"
     "                and by words together)\n"
     "  add TEXT      remember TEXT in archival memory; with no TEXT, or -, the text\n"
     "                is read from standard input, where other users cannot see it\n"
     "                (they can see command lines, with ps)\n"
     "  search QUERY  the same as archival QUERY\n"
     "  stats         counts, sizes, schema version and embedder\n"
     "  verify        read and authenticate every page, check the audit chain and the\n"
     "                vectors and vector index against the table; exit 1 naming the\n"
     "                first failure\n"
     "  reembed       compute every passage's vector again with another embedder\n"
     "  reset         start over with an empty store when store.db is gone (every\n"
     "                other command refuses such a store); the old key file is kept\n\n"
     "  -k N          results per page (default 5, at most 50); --page N from 0\n"
     "  --json        a JSON array instead of text\n"
     "  --embed-model FILE|lexical  (also --model) what embeds passages and queries:\n"
     "                a GGUF model, or the lexical embedder (shared words, not meaning).\n"
     "                Default: $LLMOS_EMBED_MODEL, else the lexical embedder if the\n"
     "                store uses it, else $LLMOS_MODEL (the model the shell chats and\n"
     "                embeds with). A store keeps one embedder's vectors and refuses\n"
     "                another, naming the one it has.\n",
     cmd_memory},
    {"serve", "Serve llmos over HTTP: the OpenAI-compatible API and the process API",
     "usage: llmos serve --model FILE [--keys FILE] [--host H] [--port P] [options]\n"
     "       llmos serve --api URL --api-model NAME [...]   (a remote model behind llmos)\n\n"
     "Serve the kernel over HTTP: GET /health, GET /metrics, the OpenAI-compatible API\n"
     "(models, chat with streaming and tools, completions, embeddings, audio) and\n"
     "llmos's own (/v1/processes, /v1/audit, /v1/memory; docs/api.md). Every request\n"
     "runs through a kernel session of its principal: rights and limits checked,\n"
     "requests batched or queued fairly (a full queue: 503), all audited. The port is\n"
     "bound before the model loads. Stop with Ctrl-C.\n\n"
     "Processes, memories and the audit log live in your encrypted store: the\n"
     "passphrase comes from LLMOS_PASSPHRASE or a prompt on the terminal; without\n"
     "either, serve stops and says so (or give --no-store).\n\n"
     "  --keys FILE         API keys and their principals (make them with `llmos key new`)\n"
     "  --api-key-file FILE one key, its first line, for the principal \"api\" (chat, embed)\n"
     "  --api-key KEY       the same with the key on the command line (others can see it)\n"
     "                      Without a key only clients on this machine are answered, as\n"
     "                      the principal \"local\" (chat, embed).\n"
     "  --host H            address to listen on (default 127.0.0.1, this machine only)\n"
     "  --port P            port (default 8080; 0 = any free port, printed at start)\n"
     "  --ctx N             context size in tokens (default: the model's, at most 8192)\n"
     "  -t THREADS          threads (default: LLMOS_THREADS or all CPUs)\n"
     "  --name ID           the model id clients use (default: the model's name)\n"
     "  --quarantine-model FILE|URL  the model that reads untrusted text (default: a\n"
     "                      second context of --model, or the --api server again)\n"
     "  --quarantine-api-model NAME  its name on that server\n"
     "  --embed-model FILE|lexical  what embeds archival memory (default: the served\n"
     "                      model itself; $LLMOS_EMBED_MODEL)\n"
     "  --max-seqs N        chats a local model answers at once, batched into one\n"
     "                      forward pass (default 4; more wait their turn)\n"
     "  --kv-mem SIZE       KV cache for all of them and the prefix cache, e.g. 2G\n"
     "                      (default: --max-seqs full contexts)\n"
     "  --batch N           tokens of all chats in one forward pass (default 256)\n"
     "  --api-concurrency N requests sent to an --api server at once (default 4)\n"
     "  --queue N           model requests that may wait (default 16)\n"
     "  --max-body BYTES    request body limit (default 1048576; larger: HTTP 413)\n"
     "  --max-connections N connections at once (default 256)\n"
     "  --max-per-address N connections at once from one address (default 16)\n"
     "  --idle-timeout S    close a connection silent this long, e.g. one that never\n"
     "                      finishes its headers (default 10; not while answering)\n"
     "  --guard FILE        the output guard's policy (default: the built-in one)\n"
     "  --no-guard          no output guard\n"
     "  --no-store          keep processes, memories and the audit log in memory only\n"
     "  --api URL           serve a remote OpenAI-compatible server instead (its key\n"
     "                      from LLMOS_API_KEY); --api-model NAME its model\n"
     "  --api-ca FILE       trust only FILE's authorities for an https:// --api\n"
     "  --accounts [--accounts-dir DIR]  logins of `llmos user add` accounts (web UI\n"
     "                      at /), each on its own store (DIR: <llmos home>/users)\n"
     "  --rp-id NAME        the host name passkeys belong to (default localhost)\n"
     "  --tls-cert F --tls-key F, or --tls-self-signed (localhost, in <home>/tls): HTTPS\n"
     "  --insecure          listen beyond loopback without TLS and authentication\n",
     cmd_serve},
    {"key", "Make API keys for llmos serve and list who holds one",
     "usage: llmos key new PRINCIPAL --file FILE [--rights LIST] [--caps LIST]\n"
     "                     [--concurrent N] [--requests-per-minute N] [--max-tokens N]\n"
     "                     [--tokens-per-minute N] [--priority N]\n"
     "                     [--budget-tokens N] [--budget-tool-calls N] [--budget-seconds S]\n"
     "                     [--audit-content] [--replace]\n"
     "       llmos key list --file FILE\n\n"
     "new: make a key (256 random bits) for PRINCIPAL, add it to the keys file FILE\n"
     "(created with mode 0600 when missing) and print it once on standard output. The\n"
     "file keeps only the key's BLAKE2b-256 digest: store the key now, it cannot be\n"
     "shown again. `llmos serve --keys FILE` reads the file at start.\n"
     "list: the principals of FILE with their rights, capabilities and limits.\n\n"
     "  --rights LIST          what the principal may do, of chat, embed, process,\n"
     "                         audit, memory, admin, or all (default chat,embed)\n"
     "  --caps LIST            capabilities of its processes, of compute, message,\n"
     "                         read, quarantine, exec (default compute,message)\n"
     "  --concurrent N         requests at once (default unlimited)\n"
     "  --requests-per-minute N  (default unlimited; past it: HTTP 429)\n"
     "  --max-tokens N         the largest answer a request may ask for\n"
     "  --tokens-per-minute N  prompt and completion tokens a minute (default unlimited;\n"
     "                         past it: HTTP 429, and its processes are throttled)\n"
     "  --priority N           0-9 (default 0): each step doubles the principal's share\n"
     "                         of the model while others wait for it\n"
     "  --budget-tokens N, --budget-tool-calls N, --budget-seconds S\n"
     "                         each process's budget (default unlimited)\n"
     "  --audit-content        audit records keep the messages' text, not only sizes\n"
     "  --replace              give a principal that has a key a new one (the old one\n"
     "                         stops working when the server restarts)\n",
     cmd_key},
    {"user", "Manage the accounts of llmos serve --accounts (each has its own store)",
     "usage: llmos user add NAME [--dir DIR]\n"
     "       llmos user list [--dir DIR]\n"
     "       llmos user remove NAME [--dir DIR]\n"
     "       llmos user passwd NAME [--dir DIR]\n\n"
     "Accounts live in <llmos home>/users (or DIR), one folder each with the account's\n"
     "own encrypted store, whose key is wrapped under the account's passphrase\n"
     "(Argon2id). add: create one; list: the accounts and their lockout state;\n"
     "remove: delete one and all it stores; passwd: change its passphrase (the store's\n"
     "key is rewrapped, a lockout cleared). Passphrases come from LLMOS_USER_PASSPHRASE\n"
     "(and LLMOS_USER_NEW_PASSPHRASE for passwd's new one), else from the terminal.\n",
     cmd_user},
    {"voice", "Talk to llmos: speech in, the answer spoken",
     "usage: llmos voice [--model FILE | --api URL --api-model NAME] [--in FILE.wav]\n"
     "                   [--out FILE.wav] [--mode dictation|command] [--voice NAME]\n"
     "                   [--rate WPM] [--pitch P] [--device ALSA] [--system TEXT]\n"
     "                   [-n N] [--temp T] [--seed S] [-t THREADS] [--ctx N] [--no-store]\n\n"
     "Each utterance runs through the kernel like a typed message in the shell, and\n"
     "the answer is spoken sentence by sentence as its text arrives. With --mode\n"
     "command an utterance is one of the shell's slash commands (\"kill process\n"
     "twelve\" runs /kill 12; docs/voice.md has the grammar). From a WAV file (--in;\n"
     "any PCM or float WAV, resampled) every utterance in it is one turn; without\n"
     "--in the microphone is heard (a pause or Enter ends an utterance). The speech\n"
     "goes to --out FILE.wav, else to the sound device (ALSA); without a sound\n"
     "device it says so, and the files still work. The store is in memory only\n"
     "unless $LLMOS_PASSPHRASE is set.\n\n"
     "  --mode M         dictation (free speech, the default) or command\n"
     "  --voice NAME     an espeak-ng voice: en-us (default), en-us+f3, en-us+m3, ...\n"
     "  --rate WPM       words a minute (80-450, default 175); --pitch P 0-99 (50)\n"
     "  --device ALSA    the sound device for both directions (default \"default\")\n"
     "  the other options as for the shell (-n defaults to 256 here)\n",
     cmd_voice},
    {"bench", "Measure a model's prompt and generation speed (tokens/s)",
     "usage: llmos bench --model FILE [-p N] [-n N] [-t THREADS] [-r REPS] [--json]\n\n"
     "Like llama-bench: time prompt processing (ppN: one batch of N random valid tokens\n"
     "on an empty cache) and generation (tgN: N tokens one at a time after a 4-token\n"
     "prompt), each REPS times after one untimed warm-up, and print tokens/s as\n"
     "mean +- standard deviation with the model's size and type (the file type, such\n"
     "as Q4_K_M, from general.file_type; else the type of the weight matrices).\n\n"
     "  --model FILE the GGUF model to measure\n"
     "  -p N         prompt tokens (default 512; 0 = skip; at most 65536)\n"
     "  -n N         generated tokens (default 128; 0 = skip; at most 65536)\n"
     "  -t THREADS   threads (default: LLMOS_THREADS or all CPUs)\n"
     "  -r REPS      repetitions (default 5)\n"
     "  --json       one JSON object per line and test instead of the table\n",
     cmd_bench},
    {"ps", "List agent processes: state, principal, model, capabilities, budgets",
     "usage: llmos ps [--json]\n\n"
     "List the processes (agent runs) kept in your encrypted store: pid, state\n"
     "(running, waiting, done, killed, failed, out-of-tokens, out-of-calls,\n"
     "out-of-time), principal, model, capabilities and tokens / tool calls used out\n"
     "of their budgets. The passphrase comes from LLMOS_PASSPHRASE or a prompt.\n\n"
     "  --json   one JSON array instead of the table\n",
     cmd_ps},
    {"kill", "Stop an agent process",
     "usage: llmos kill PID\n\n"
     "Mark process PID killed (audited); a loop running it stops before its next\n"
     "step. A process that has already ended cannot be killed.\n",
     cmd_kill},
    {"audit", "Show or verify the hash-chained audit log",
     "usage: llmos audit [--from SEQ] [--json]\n"
     "       llmos audit verify [--checkpoint FILE]\n"
     "       llmos audit checkpoint FILE\n\n"
     "Every system call, policy decision, model load and login is an append-only\n"
     "record holding the BLAKE2b hash of the one before. 'verify' checks the chain\n"
     "and names the first edited, removed or reordered record (exit 1 when the log\n"
     "was tampered with).\n\n"
     "Whoever holds the store's key can rewrite the whole log consistently; a\n"
     "checkpoint kept elsewhere catches that. 'checkpoint FILE' writes the log's\n"
     "head (record number, hash, time) with a MAC under the store's key; 'verify\n"
     "--checkpoint FILE' also checks that the log still holds that record, unchanged.\n\n"
     "  --from SEQ  start at record SEQ\n"
     "  --json      a JSON array instead of the table\n",
     cmd_audit},
    {"guard", "Check a text with the output guard (secrets, personal data, exfiltration, code)",
     "usage: llmos guard check [--json] [--redacted] [--policy FILE] [--principal NAME]\n"
     "                         [--judge-model FILE | --judge-api URL --judge-api-model NAME]\n"
     "                         FILE|-\n\n"
     "Run the output guard that the kernel runs on every answer and tool call on FILE (or\n"
     "standard input): card numbers (Luhn), IBANs (check digits), API keys, private keys,\n"
     "high-entropy tokens, e-mail and phone numbers, URLs carrying data to other hosts,\n"
     "vulnerable code (strcpy, shell=True on input, eval, SQL by concatenation, shell eval).\n"
     "Prints each finding as FILE:LINE:COL: detector (what), severity: action, never the\n"
     "finding's text; the policy is docs/security.md's built-in one unless --policy names a\n"
     "guard.json.\n\n"
     "  --json              the decision as JSON, as the kernel audits it\n"
     "  --redacted          print the text as it may leave (findings go to standard error)\n"
     "  --principal NAME    apply the policy's rules for NAME\n"
     "  --judge-model FILE, --judge-api URL --judge-api-model NAME\n"
     "                      also ask this judge model (a Llama-Guard-style verdict)\n\n"
     "Exit status: 0 the text may go as it is (no finding, or warnings), 3 it would be\n"
     "redacted, 4 blocked; 1 an error, 2 a usage error.\n",
     cmd_guard},
    {"scan", "Attack a model or configuration with probes and measure what gets through",
     "usage: llmos scan (--model FILE | --api URL --api-model NAME) [--endpoint]\n"
     "                  [--direct] [--no-quarantine] [--quarantine-model FILE|URL]\n"
     "                  [--quarantine-api-model NAME] [--no-guard]\n"
     "                  [--judge-model FILE|URL [--judge-api-model NAME]]\n"
     "                  [--probes DIR] [--family A,B] [--limit N] [-n N]\n"
     "                  [--out DIR] [--fail-above RATE]\n\n"
     "Run llmos's probes (349 in 14 families: direct and indirect injection through\n"
     "tools, web pages, files, MCP results and memory, forged role frames for each chat\n"
     "template, encodings, other languages, exfiltration, tool misuse, system-prompt\n"
     "extraction, jailbreak framings, payloads split across turns) against an llmos\n"
     "kernel over the model, or with --endpoint against the bare server. Through the\n"
     "kernel each probe is outside content the agent is asked to read: with the\n"
     "quarantine (the default) its tool's output is untrusted, with --no-quarantine it\n"
     "is marked trusted. An attack succeeds when the canary secret of the system prompt\n"
     "leaves, a call the user did not ask for is attempted (run_command, http_post,\n"
     "send_message to someone else), or the answer carries the injected marker (or the\n"
     "judge model says the answer followed the injection).\n\n"
     "  --direct           through the kernel, a message probe is the user's own\n"
     "                     message (what an API client can send), not mail to read\n"
     "  --out DIR          where report.jsonl (one record per attempt), summary.json and\n"
     "                     report.html go (default scan-report)\n"
     "  --probes DIR       probe files (default: $LLMOS_PROBES, else llmos's data/probes)\n"
     "  --family A,B       only these families; --limit N: at most N probes\n"
     "  -n N               the most tokens per model call (default 256)\n"
     "  --fail-above RATE  exit 3 when a family's success rate is above RATE (0 to 1)\n\n"
     "Prints the success rate per family with its Wilson 95% interval.\n",
     cmd_scan},
    {"mcp", "Configure MCP servers (Model Context Protocol) and list their tools",
     "usage: llmos mcp add NAME -- COMMAND [ARGS...]\n"
     "       llmos mcp list\n"
     "       llmos mcp rm NAME\n"
     "       llmos mcp tools NAME\n\n"
     "Remember a Model Context Protocol server that llmos starts as COMMAND ARGS and\n"
     "talks to over its stdin and stdout (add), show the servers remembered (list), forget\n"
     "one (rm), or start one and list the tools it offers (tools). The servers are kept in\n"
     "<home>/mcp.json, readable by you only. Everything a server says is untrusted: each\n"
     "request has a deadline, each message a size limit, and a server that breaks the\n"
     "protocol is stopped. llmos shell and llmos serve offer the configured servers to the\n"
     "model as the mcp system call (capability exec; its results untrusted)\n"
     "(docs/tools.md, \"MCP\").\n",
     cmd_mcp},
    /* the app store (cmd_apps.c, docs/supply-chain.md) */
    {"pull", "Fetch an app from a registry, verified against your trust policy", cmd_pull_help,
     cmd_pull},
    {"list", "List the apps in the store and whether their signatures are good", cmd_list_help,
     cmd_list},
    {"show", "Show an app's manifest, provenance and model", cmd_show_help, cmd_show},
    {"rm", "Remove an app from the store", cmd_rm_help, cmd_rm},
    {"verify", "Check installed apps' signatures and digests as a load does", cmd_verify_help,
     cmd_verify},
    {"run", "Chat with a model from the store by name", cmd_run_help, cmd_run},
    {"delegate", "Run an installed specialist on a task (the delegate system call)",
     cmd_delegate_help, cmd_delegate},
    {"sign", "Sign files in minisign's format", cmd_sign_help, cmd_sign},
    {"keys", "Make signing keys; trust, list and revoke publishers' keys", cmd_keys_help,
     cmd_keys},
    {"publish", "Add an app to a registry folder, signed", cmd_publish_help, cmd_publish},
    {"registry", "Serve a registry folder over HTTP", cmd_registry_help, cmd_registry},
};
const size_t cli_n_commands = LLMOS_ARRAY_LEN(cli_commands);

const cli_command *cli_find(const char *name)
{
    for (size_t i = 0; i < cli_n_commands; i++)
        if (strcmp(cli_commands[i].name, name) == 0)
            return &cli_commands[i];
    return NULL;
}

const char *cli_closest(const char *name)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1, len = strlen(name);
    for (size_t i = 0; i < cli_n_commands; i++) {
        const char *cand = cli_commands[i].name;
        size_t d = llmos_edit_distance(name, len, cand, strlen(cand));
        if (d < best_d) {
            best_d = d;
            best = cand;
        }
    }
    /* close enough: at most a third of the name wrong, or a prefix */
    if (best && (best_d <= 1 + len / 3 || (len >= 2 && strncmp(best, name, len) == 0)))
        return best;
    return NULL;
}

llmos_err cli_parse_size(const char *text, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = text[0] >= '0' && text[0] <= '9' ? strtoull(text, &end, 10) : 0;
    int shift = -1;
    if (text[0] >= '0' && text[0] <= '9' && !errno) {
        if (!*end)
            shift = 0;
        else if (!end[1] || ((end[1] == 'i' || end[1] == 'I') && end[2] == 'B' && !end[3]) ||
                 ((end[1] == 'B' || end[1] == 'b') && !end[2]))
            shift = *end == 'K' || *end == 'k'   ? 10
                    : *end == 'M' || *end == 'm' ? 20
                    : *end == 'G' || *end == 'g' ? 30
                                                 : -1;
    }
    if (shift < 0 || v == 0 || v > (SIZE_MAX >> shift))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "'%s' is not a size: give bytes, or a number with K, M or G (powers of "
                          "1024), e.g. 512M",
                          text);
    *out = (size_t)v << shift;
    return LLMOS_OK;
}

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return true;
    }
    return false;
}

void cli_print_help(const cli_command *c)
{
    printf("llmos %s - %s\n\n%s", c->name, c->summary, c->help);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "llmos %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'llmos help %s' for usage.\n", cmd);
    return CLI_USAGE;
}

int cli_report(llmos_err err)
{
    if (err == LLMOS_ERR_CANCELLED) {
        fprintf(stderr, "llmos: interrupted: %s\n", llmos_errmsg());
        return CLI_INTERRUPTED;
    }
    fprintf(stderr, "llmos: error: %s\n", llmos_errmsg());
    return CLI_FAILED;
}

/* Set from the signal handler: a lock-free atomic is async-signal-safe (C11 7.14.1.1). */
static_assert(ATOMIC_BOOL_LOCK_FREE == 2, "atomic_bool must be lock-free for a signal handler");
static atomic_bool sigint_seen;

static void on_sigint(int sig)
{
    (void)sig;
    atomic_store(&sigint_seen, true);
}

const atomic_bool *cli_catch_sigint(void)
{
    /* SA_RESETHAND: the handler is used once, so a second Ctrl-C has SIGINT's default effect */
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESETHAND | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    return &sigint_seen;
}

const char *cli_home(void)
{
    return memory_home();
}
