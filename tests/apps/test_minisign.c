/*
 * test_minisign.c - llmos's signatures and minisign's are one format, both ways: Debian's
 * `minisign` verifies what llmos signs (prehashed "ED" and legacy "Ed"), llmos verifies what
 * minisign signs, llmos signs with a secret key minisign made, and a changed byte fails on
 * either side. Also llmos's own encrypted secret keys (scrypt, as minisign's): the right
 * passphrase opens one, a wrong one is told apart by the key's checksum.
 *
 * Needs the minisign program (scripts/deps installs it); skipped, saying so, without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "llmos/apps.h"
#include "testutil.h"

static char dir[256];

static void need_minisign(void)
{
    if (system("minisign -v >/dev/null 2>&1") != 0)
        tu_skip("the minisign program is not installed (scripts/deps installs it)");
}

static int sh(const char *fmt, ...) LLMOS_PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void write_text(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

static void read_text(const char *path, llmos_buf *out)
{
    buf_clear(out);
    assert_int_equal(llmos_file_read_all(path, 1 << 20, out), LLMOS_OK);
}

static const char MSG[] = "{\"name\":\"tiny\",\"version\":\"1.0.0\"}";

static void test_llmos_signs_minisign_verifies(void **state)
{
    (void)state;
    need_minisign();
    char sec[300], pub[300], msg[300], sig[300];
    snprintf(sec, sizeof sec, "%s/l.key", dir);
    snprintf(pub, sizeof pub, "%s/l.pub", dir);
    snprintf(msg, sizeof msg, "%s/l.msg", dir);
    snprintf(sig, sizeof sig, "%s/l.msg.minisig", dir);
    apps_pubkey pk;
    assert_int_equal(apps_key_generate(sec, pub, NULL, &pk), LLMOS_OK);
    assert_int_equal(apps_key_generate(sec, pub, NULL, &pk), LLMOS_ERR_EXISTS); /* never over */
    apps_seckey *k = NULL;
    assert_int_equal(apps_seckey_load(sec, NULL, &k), LLMOS_OK);
    write_text(msg, MSG, strlen(MSG));
    for (int legacy = 0; legacy < 2; legacy++) {
        llmos_buf s = {0};
        assert_int_equal(
            apps_sign(k, MSG, strlen(MSG), "signed by llmos", "llmos tiny 1.0.0", legacy, &s),
            LLMOS_OK);
        write_text(sig, s.data, s.len);
        assert_int_equal(sh("minisign -V -q -p '%s' -m '%s' -x '%s'", pub, msg, sig), 0);
        /* minisign shows the trusted comment it verified */
        assert_int_equal(sh("minisign -V -Q -p '%s' -m '%s' -x '%s' | grep -qx 'llmos tiny 1.0.0'",
                            pub, msg, sig),
                         0);
        /* a changed byte: minisign refuses */
        write_text(msg, "{\"name\":\"tinY\",\"version\":\"1.0.0\"}", strlen(MSG));
        assert_int_not_equal(
            sh("minisign -V -q -p '%s' -m '%s' -x '%s' 2>/dev/null", pub, msg, sig), 0);
        write_text(msg, MSG, strlen(MSG));
        buf_free(&s);
    }
    apps_seckey_free(k);
}

static void test_minisign_signs_llmos_verifies(void **state)
{
    (void)state;
    need_minisign();
    char sec[300], pub[300], msg[300];
    snprintf(sec, sizeof sec, "%s/m.key", dir);
    snprintf(pub, sizeof pub, "%s/m.pub", dir);
    snprintf(msg, sizeof msg, "%s/m.msg", dir);
    assert_int_equal(sh("minisign -G -W -p '%s' -s '%s' >/dev/null 2>&1", pub, sec), 0);
    write_text(msg, MSG, strlen(MSG));
    llmos_buf text = {0}, sigtext = {0};
    read_text(pub, &text);
    apps_pubkey pk;
    assert_int_equal(apps_pubkey_parse(text.data, text.len, &pk), LLMOS_OK);
    /* the id is the number minisign prints in the comment ("%" PRIX64: without leading
     * zeros, so one key in sixteen has 15 digits there) */
    char id[APPS_KEYID_HEX];
    apps_keyid_hex(pk.id, id);
    const char *printed = strstr(text.data, "public key ");
    assert_non_null(printed);
    assert_true(strtoull(printed + strlen("public key "), NULL, 16) == strtoull(id, NULL, 16));
    const char *modes[] = {"", "-l"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(sh("minisign -S %s -s '%s' -m '%s' -t 'from minisign' >/dev/null 2>&1",
                            modes[i], sec, msg),
                         0);
        char sigpath[320];
        snprintf(sigpath, sizeof sigpath, "%s.minisig", msg);
        read_text(sigpath, &sigtext);
        apps_sig sig;
        assert_int_equal(apps_sig_parse(sigtext.data, sigtext.len, &sig), LLMOS_OK);
        assert_int_equal(sig.prehashed, i == 0);
        assert_string_equal(sig.trusted_comment, "from minisign");
        assert_int_equal(apps_sig_verify(&sig, &pk, MSG, strlen(MSG)), LLMOS_OK);
        char changed[sizeof MSG];
        memcpy(changed, MSG, sizeof MSG);
        changed[3] ^= 0x20;
        assert_int_equal(apps_sig_verify(&sig, &pk, changed, strlen(changed)), LLMOS_ERR_CRYPTO);
    }
    /* llmos signs with minisign's secret key; minisign verifies */
    apps_seckey *k = NULL;
    assert_int_equal(apps_seckey_load(sec, NULL, &k), LLMOS_OK);
    apps_pubkey derived;
    apps_seckey_public(k, &derived);
    assert_memory_equal(derived.pk, pk.pk, 32);
    llmos_buf s = {0};
    assert_int_equal(apps_sign(k, MSG, strlen(MSG), "llmos", "with minisign's key", false, &s),
                     LLMOS_OK);
    char sig2[320];
    snprintf(sig2, sizeof sig2, "%s/m2.minisig", dir);
    write_text(sig2, s.data, s.len);
    assert_int_equal(sh("minisign -V -q -p '%s' -m '%s' -x '%s'", pub, msg, sig2), 0);
    buf_free(&s);
    apps_seckey_free(k);
    buf_free(&text);
    buf_free(&sigtext);
}

static void test_encrypted_key(void **state)
{
    (void)state;
    char sec[300], pub[300];
    snprintf(sec, sizeof sec, "%s/e.key", dir);
    snprintf(pub, sizeof pub, "%s/e.pub", dir);
    apps_pubkey pk;
    assert_int_equal(apps_key_generate(sec, pub, "correct horse", &pk), LLMOS_OK);
    apps_seckey *k = NULL;
    assert_int_equal(apps_seckey_load(sec, NULL, &k), LLMOS_ERR_AUTH);
    assert_int_equal(apps_seckey_load(sec, "wrong horse", &k), LLMOS_ERR_AUTH);
    assert_non_null(strstr(llmos_errmsg(), "wrong passphrase"));
    assert_int_equal(apps_seckey_load(sec, "correct horse", &k), LLMOS_OK);
    apps_pubkey derived;
    apps_seckey_public(k, &derived);
    assert_memory_equal(derived.pk, pk.pk, 32);
    assert_memory_equal(derived.id, pk.id, 8);
    apps_seckey_free(k);
}

static void test_bad_signature_files(void **state)
{
    (void)state;
    apps_sig sig;
    const char *bad[] = {
        "",
        "untrusted comment: x\n",
        "untrusted comment: x\nnot base64!\ntrusted comment: y\nAAAA\n",
        "untrusted comment: x\nRWQp3Eyj8qqBXA==\ntrusted comment: y\nAAAA\n",
        "trusted comment: x\nRWQp\nuntrusted comment: y\nAAAA\n",
    };
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bad); i++)
        assert_int_not_equal(apps_sig_parse(bad[i], strlen(bad[i]), &sig), LLMOS_OK);
    apps_pubkey pk;
    assert_int_not_equal(apps_pubkey_parse("untrusted comment: k\nAAAA\n", 26, &pk), LLMOS_OK);
}

static int setup(void **state)
{
    (void)state;
    return tu_mkdtemp("apps-minisign", dir, sizeof dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmrf(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llmos_signs_minisign_verifies),
        cmocka_unit_test(test_minisign_signs_llmos_verifies),
        cmocka_unit_test(test_encrypted_key),
        cmocka_unit_test(test_bad_signature_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
