/*
 * minisign.c - Ed25519 signatures in minisign's formats (llmos/apps.h), so that a publisher
 * can sign with either tool and a user can verify with either.
 *
 * The formats, as minisign writes them (each a comment line and a base64 line):
 *   public key   "untrusted comment: ..."  B64("Ed" | key id (8) | Ed25519 public key (32))
 *   secret key   "untrusted comment: ..."  B64("Ed" | kdf "Sc" or 0,0 | "B2" | salt (32) |
 *                opslimit (u64 LE) | memlimit (u64 LE) | key id (8) | Ed25519 secret key (64)
 *                | checksum (32))
 *                The last 104 bytes are XORed with scrypt(passphrase, salt, opslimit,
 *                memlimit) when kdf is "Sc"; the checksum is BLAKE2b-256("Ed" | key id |
 *                secret key), which is how a wrong passphrase is told from a right one.
 *   signature    "untrusted comment: ..."  B64(alg | key id (8) | signature (64))
 *                "trusted comment: TEXT"   B64(global signature (64))
 *                alg "Ed": the signature is over the message itself (minisign's legacy form);
 *                alg "ED": over BLAKE2b-512(message) (the default since minisign 0.10).
 *                The global signature is over signature (64) | TEXT, so that the trusted
 *                comment cannot be changed without the key.
 * The key id is 8 random bytes, printed as the little-endian number in upper-case hex.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "llmos/apps.h"

#define SK_B64_BYTES   158
#define SK_KEYNUM_SK   104 /* key id + secret key + checksum: what scrypt's stream covers */
#define PK_B64_BYTES   42
#define SIG_B64_BYTES  74
#define SIG_FILE_MAX   4096
#define SCRYPT_MAX_OPS ((uint64_t)1 << 30)
#define SCRYPT_MAX_MEM ((uint64_t)2 << 30)

struct apps_seckey {
    uint8_t id[8];
    uint8_t sk[64];
};

void apps_keyid_hex(const uint8_t id[8], char out[APPS_KEYID_HEX])
{
    snprintf(out, APPS_KEYID_HEX, "%016" PRIX64, llmos_load_le64(id));
}

/* The next line of text[*pos..len): its start and length without CR/LF; false at the end. */
static bool next_line(const char *text, size_t len, size_t *pos, const char **line, size_t *n)
{
    if (*pos >= len)
        return false;
    const char *s = text + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t l = nl ? (size_t)(nl - s) : len - *pos;
    *pos += l + (nl ? 1 : 0);
    while (l && (s[l - 1] == '\r' || s[l - 1] == ' ' || s[l - 1] == '\t'))
        l--;
    *line = s;
    *n = l;
    return true;
}

static bool b64_decode(const char *s, size_t n, uint8_t *out, size_t want)
{
    size_t got = 0;
    if (n > 4 * ((want + 2) / 3) + 4)
        return false;
    return sodium_base642bin(out, want, s, n, NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL) ==
               0 &&
           got == want;
}

static llmos_err b64_append(llmos_buf *out, const uint8_t *bin, size_t n)
{
    size_t size = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    llmos_err err = buf_reserve(out, size);
    if (err)
        return err;
    sodium_bin2base64(out->data + out->len, size, bin, n, sodium_base64_VARIANT_ORIGINAL);
    out->len += size - 1;
    return LLMOS_OK;
}

static bool is_prefix(const char *line, size_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    return n >= p && memcmp(line, prefix, p) == 0;
}

/* ---- public keys -------------------------------------------------------------------------- */

llmos_err apps_pubkey_parse(const char *text, size_t len, apps_pubkey *out)
{
    size_t pos = 0, n = 0;
    const char *line = NULL;
    bool found = false;
    if (len > SIG_FILE_MAX)
        return llmos_fail(LLMOS_ERR_FORMAT, "public key: %zu bytes, not a key file", len);
    while (next_line(text, len, &pos, &line, &n))
        if (n && !is_prefix(line, n, "untrusted comment:")) {
            found = true;
            break;
        }
    uint8_t raw[PK_B64_BYTES];
    if (!found || !b64_decode(line, n, raw, sizeof raw))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "public key: not a minisign public key (a base64 line of %d bytes)",
                          PK_B64_BYTES);
    if (raw[0] != 'E' || raw[1] != 'd')
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "public key: algorithm '%c%c'; minisign keys are Ed25519 (\"Ed\")",
                          raw[0], raw[1]);
    memcpy(out->id, raw + 2, 8);
    memcpy(out->pk, raw + 10, 32);
    return LLMOS_OK;
}

llmos_err apps_pubkey_base64(const apps_pubkey *k, llmos_buf *out)
{
    uint8_t raw[PK_B64_BYTES] = {'E', 'd'};
    memcpy(raw + 2, k->id, 8);
    memcpy(raw + 10, k->pk, 32);
    return b64_append(out, raw, sizeof raw);
}

/* ---- secret keys -------------------------------------------------------------------------- */

static void sk_checksum(const uint8_t id[8], const uint8_t sk[64], uint8_t chk[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"Ed", 2);
    crypto_generichash_update(&st, id, 8);
    crypto_generichash_update(&st, sk, 64);
    crypto_generichash_final(&st, chk, 32);
}

/* XOR the 104 bytes from the key id on with scrypt's stream (encrypts and decrypts). */
static llmos_err sk_xor(uint8_t *keynum_sk, const char *passphrase, const uint8_t salt[32],
                        uint64_t ops, uint64_t mem)
{
    uint8_t *stream = sodium_malloc(SK_KEYNUM_SK);
    if (!stream)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (crypto_pwhash_scryptsalsa208sha256(stream, SK_KEYNUM_SK, passphrase, strlen(passphrase),
                                           salt, ops, (size_t)mem) != 0) {
        sodium_free(stream);
        return llmos_fail(LLMOS_ERR_NOMEM, "scrypt could not get %" PRIu64 " bytes of memory", mem);
    }
    for (size_t i = 0; i < SK_KEYNUM_SK; i++)
        keynum_sk[i] ^= stream[i];
    sodium_free(stream);
    return LLMOS_OK;
}

static llmos_err write_new_file(const char *path, const char *text, size_t n, unsigned mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return llmos_fail(
            errno == EEXIST ? LLMOS_ERR_EXISTS : LLMOS_ERR_IO, "%s: cannot create%s: %s", path,
            errno == EEXIST ? " (it exists; llmos never overwrites a key)" : "", strerror(errno));
    bool ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    ok &= close(fd) == 0;
    if (!ok) {
        unlink(path);
        return llmos_fail(LLMOS_ERR_IO, "%s: write failed", path);
    }
    return LLMOS_OK;
}

llmos_err apps_key_generate(const char *seckey_path, const char *pubkey_path,
                            const char *passphrase, apps_pubkey *out)
{
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "libsodium failed to initialise");
    uint8_t *raw = sodium_malloc(SK_B64_BYTES);
    if (!raw)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    memset(raw, 0, SK_B64_BYTES);
    uint8_t *salt = raw + 6, *keynum_sk = raw + 54;
    uint8_t *id = keynum_sk, *sk = keynum_sk + 8, *chk = keynum_sk + 72;
    apps_pubkey pub;
    randombytes_buf(id, 8);
    crypto_sign_keypair(pub.pk, sk);
    memcpy(pub.id, id, 8);
    sk_checksum(id, sk, chk);
    memcpy(raw, "Ed", 2);
    memcpy(raw + 4, "B2", 2);
    randombytes_buf(salt, 32);
    llmos_err err = LLMOS_OK;
    if (passphrase) {
        uint64_t ops = crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_SENSITIVE;
        uint64_t mem = crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_SENSITIVE;
        memcpy(raw + 2, "Sc", 2);
        llmos_store_le64(raw + 38, ops);
        llmos_store_le64(raw + 46, mem);
        err = sk_xor(keynum_sk, passphrase, salt, ops, mem);
    }
    llmos_buf text = {0};
    if (!err)
        err = buf_printf(&text, "untrusted comment: minisign %ssecret key\n",
                         passphrase ? "encrypted " : "");
    if (!err)
        err = b64_append(&text, raw, SK_B64_BYTES);
    if (!err)
        err = buf_putc(&text, '\n');
    sodium_free(raw);
    char idhex[APPS_KEYID_HEX];
    apps_keyid_hex(pub.id, idhex);
    if (!err)
        err = write_new_file(seckey_path, text.data, text.len, 0600);
    if (text.data)
        sodium_memzero(text.data, text.len);
    buf_clear(&text);
    if (!err)
        err = buf_printf(&text, "untrusted comment: minisign public key %s\n", idhex);
    if (!err)
        err = apps_pubkey_base64(&pub, &text);
    if (!err)
        err = buf_putc(&text, '\n');
    if (!err && (err = write_new_file(pubkey_path, text.data, text.len, 0644)))
        unlink(seckey_path);
    buf_free(&text);
    if (!err && out)
        *out = pub;
    return err;
}

llmos_err apps_seckey_load(const char *path, const char *passphrase, apps_seckey **out)
{
    *out = NULL;
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "libsodium failed to initialise");
    llmos_buf text = {0};
    llmos_err err = llmos_file_read_all(path, SIG_FILE_MAX, &text);
    if (err)
        return err;
    uint8_t *raw = sodium_malloc(SK_B64_BYTES);
    if (!raw) {
        buf_free(&text);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    size_t pos = 0, n = 0;
    const char *line = NULL;
    bool found = false;
    while (next_line(text.data, text.len, &pos, &line, &n))
        if (n && !is_prefix(line, n, "untrusted comment:")) {
            found = true;
            break;
        }
    if (!found || !b64_decode(line, n, raw, SK_B64_BYTES) || memcmp(raw, "Ed", 2) != 0 ||
        memcmp(raw + 4, "B2", 2) != 0)
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: not a minisign secret key", path);
    uint8_t *keynum_sk = raw + 54;
    if (!err && memcmp(raw + 2, "Sc", 2) == 0) {
        uint64_t ops = llmos_load_le64(raw + 38), mem = llmos_load_le64(raw + 46);
        if (!passphrase)
            err = llmos_fail(LLMOS_ERR_AUTH,
                             "%s is encrypted: its passphrase is needed "
                             "(LLMOS_SIGN_PASSPHRASE, or the prompt)",
                             path);
        else if (ops > SCRYPT_MAX_OPS || mem > SCRYPT_MAX_MEM)
            err = llmos_fail(LLMOS_ERR_LIMIT, "%s: scrypt parameters past llmos's bounds", path);
        else
            err = sk_xor(keynum_sk, passphrase, raw + 6, ops, mem);
    } else if (!err && (raw[2] != 0 || raw[3] != 0)) {
        err = llmos_fail(LLMOS_ERR_UNSUPPORTED, "%s: key derivation '%c%c' is not scrypt", path,
                         raw[2], raw[3]);
    }
    apps_seckey *k = NULL;
    if (!err) {
        uint8_t chk[32];
        sk_checksum(keynum_sk, keynum_sk + 8, chk);
        /* minisign -W (0.11) writes an unencrypted key with a zero checksum: with no
         * passphrase there is nothing for the checksum to tell apart */
        bool unencrypted = raw[2] == 0 && raw[3] == 0;
        if (sodium_memcmp(chk, keynum_sk + 72, 32) != 0 &&
            !(unencrypted && sodium_is_zero(keynum_sk + 72, 32)))
            err = llmos_fail(LLMOS_ERR_AUTH,
                             "%s: the key's checksum does not match: wrong passphrase, or a "
                             "damaged key file",
                             path);
    }
    if (!err && !(k = sodium_malloc(sizeof *k)))
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (!err) {
        memcpy(k->id, keynum_sk, 8);
        memcpy(k->sk, keynum_sk + 8, 64);
        *out = k;
    }
    sodium_free(raw);
    sodium_memzero(text.data, text.len);
    buf_free(&text);
    return err;
}

void apps_seckey_free(apps_seckey *k)
{
    if (k)
        sodium_free(k); /* sodium_free zeroes the memory */
}

void apps_seckey_public(const apps_seckey *k, apps_pubkey *out)
{
    memcpy(out->id, k->id, 8);
    crypto_sign_ed25519_sk_to_pk(out->pk, k->sk);
}

/* ---- signatures --------------------------------------------------------------------------- */

static bool one_line(const char *s)
{
    return s && !strpbrk(s, "\r\n");
}

llmos_err apps_sign(const apps_seckey *k, const void *msg, size_t len,
                    const char *untrusted_comment, const char *trusted_comment, bool legacy,
                    llmos_buf *out)
{
    if (!one_line(untrusted_comment) || !one_line(trusted_comment) ||
        strlen(trusted_comment) >= sizeof((apps_sig *)0)->trusted_comment)
        return llmos_fail(LLMOS_ERR_INVALID, "signature comments are single lines (< 1024 bytes)");
    uint8_t raw[SIG_B64_BYTES];
    memcpy(raw, legacy ? "Ed" : "ED", 2);
    memcpy(raw + 2, k->id, 8);
    if (legacy) {
        crypto_sign_detached(raw + 10, NULL, msg, len, k->sk);
    } else {
        uint8_t h[64];
        crypto_generichash(h, sizeof h, msg, len, NULL, 0);
        crypto_sign_detached(raw + 10, NULL, h, sizeof h, k->sk);
    }
    size_t tl = strlen(trusted_comment);
    uint8_t *global_msg = malloc(64 + tl);
    if (!global_msg)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    memcpy(global_msg, raw + 10, 64);
    memcpy(global_msg + 64, trusted_comment, tl);
    uint8_t global[64];
    crypto_sign_detached(global, NULL, global_msg, 64 + tl, k->sk);
    free(global_msg);
    llmos_err err = buf_printf(out, "untrusted comment: %s\n", untrusted_comment);
    if (!err)
        err = b64_append(out, raw, sizeof raw);
    if (!err)
        err = buf_printf(out, "\ntrusted comment: %s\n", trusted_comment);
    if (!err)
        err = b64_append(out, global, sizeof global);
    if (!err)
        err = buf_putc(out, '\n');
    return err;
}

llmos_err apps_sig_parse(const char *text, size_t len, apps_sig *out)
{
    memset(out, 0, sizeof *out);
    if (len > SIG_FILE_MAX)
        return llmos_fail(LLMOS_ERR_FORMAT, "signature: %zu bytes, more than a .minisig file", len);
    const char *l[4];
    size_t n[4], pos = 0;
    for (int i = 0; i < 4; i++)
        if (!next_line(text, len, &pos, &l[i], &n[i]))
            return llmos_fail(LLMOS_ERR_FORMAT, "signature: %d lines, a .minisig file has 4", i);
    uint8_t raw[SIG_B64_BYTES];
    if (!is_prefix(l[0], n[0], "untrusted comment:"))
        return llmos_fail(LLMOS_ERR_FORMAT, "signature: line 1 is not an untrusted comment");
    if (!b64_decode(l[1], n[1], raw, sizeof raw))
        return llmos_fail(LLMOS_ERR_FORMAT, "signature: line 2 is not a base64 signature");
    if (memcmp(raw, "Ed", 2) != 0 && memcmp(raw, "ED", 2) != 0)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "signature: algorithm '%c%c' (Ed or ED)", raw[0],
                          raw[1]);
    static const char tc[] = "trusted comment: ";
    if (!is_prefix(l[2], n[2], tc))
        return llmos_fail(LLMOS_ERR_FORMAT, "signature: line 3 is not a trusted comment");
    size_t tl = n[2] - (sizeof tc - 1);
    if (tl >= sizeof out->trusted_comment || memchr(l[2], '\0', n[2]))
        return llmos_fail(LLMOS_ERR_FORMAT, "signature: trusted comment too long");
    if (!b64_decode(l[3], n[3], out->global_sig, 64))
        return llmos_fail(LLMOS_ERR_FORMAT, "signature: line 4 is not a base64 signature");
    out->prehashed = raw[1] == 'D';
    memcpy(out->keyid, raw + 2, 8);
    memcpy(out->sig, raw + 10, 64);
    memcpy(out->trusted_comment, l[2] + sizeof tc - 1, tl);
    out->trusted_comment[tl] = '\0';
    return LLMOS_OK;
}

llmos_err apps_sig_verify(const apps_sig *sig, const apps_pubkey *k, const void *msg, size_t len)
{
    char want[APPS_KEYID_HEX], got[APPS_KEYID_HEX];
    if (memcmp(sig->keyid, k->id, 8) != 0) {
        apps_keyid_hex(k->id, want);
        apps_keyid_hex(sig->keyid, got);
        return llmos_fail(LLMOS_ERR_CRYPTO, "signature: made with key %s, not key %s", got, want);
    }
    int bad;
    if (sig->prehashed) {
        uint8_t h[64];
        crypto_generichash(h, sizeof h, msg, len, NULL, 0);
        bad = crypto_sign_verify_detached(sig->sig, h, sizeof h, k->pk);
    } else {
        bad = crypto_sign_verify_detached(sig->sig, msg, len, k->pk);
    }
    if (bad)
        return llmos_fail(LLMOS_ERR_CRYPTO,
                          "signature: does not match the bytes signed (changed after signing, "
                          "or signed by another key)");
    size_t tl = strlen(sig->trusted_comment);
    uint8_t *global_msg = malloc(64 + tl);
    if (!global_msg)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    memcpy(global_msg, sig->sig, 64);
    memcpy(global_msg + 64, sig->trusted_comment, tl);
    bad = crypto_sign_verify_detached(sig->global_sig, global_msg, 64 + tl, k->pk);
    free(global_msg);
    if (bad)
        return llmos_fail(LLMOS_ERR_CRYPTO, "signature: the trusted comment was changed");
    return LLMOS_OK;
}
