/*
 * tlscert.c - a self-signed certificate for serving the web UI and the API over TLS on this
 * machine (llmos/tlscert.h).
 *
 * The key is ECDSA P-256 (what every browser and TLS library takes); the certificate names
 * localhost, 127.0.0.1 and ::1 in subjectAltName (browsers ignore the common name), has a
 * random 128-bit serial, and carries basicConstraints CA:TRUE with keyCertSign, so that a
 * client can be told to trust this one certificate as its authority instead of turning
 * verification off. It protects the connection from others on the network path; it does not
 * prove to a browser who the server is until the user trusts the certificate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "llmos/tlscert.h"

/* One X.509 v3 extension from its OpenSSL config text. */
static int tlscert_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* The PEM text of what write() puts into a memory BIO, written to path atomically. */
static llmos_err tlscert_write(const char *path, BIO *bio, unsigned mode)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || !data)
        return llmos_fail(LLMOS_ERR_INTERNAL, "tls: could not encode %s", path);
    return llmos_file_write_atomic(path, data, (size_t)n, mode);
}

llmos_err tlscert_self_signed(const char *cert_path, const char *key_path, unsigned days)
{
    if (!cert_path || !key_path || days == 0 || days > 3650)
        return llmos_fail(LLMOS_ERR_INVALID, "tlscert_self_signed: two paths and 1-3650 days");
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    BIGNUM *serial = BN_new();
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    llmos_err err = LLMOS_OK;
    X509_NAME *name = cert ? X509_get_subject_name(cert) : NULL;
    if (!key || !cert || !serial || !cb || !kb || !name ||
        !BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) || !X509_set_version(cert, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(cert), -60) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400) ||
        !X509_set_pubkey(cert, key) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"llmos", -1, -1,
                                    0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                                    -1, -1, 0) ||
        !X509_set_issuer_name(cert, name) ||
        !tlscert_ext(cert, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") ||
        !tlscert_ext(cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !tlscert_ext(cert, NID_key_usage, "critical,digitalSignature,keyCertSign") ||
        !tlscert_ext(cert, NID_ext_key_usage, "serverAuth") ||
        !tlscert_ext(cert, NID_subject_key_identifier, "hash") ||
        !X509_sign(cert, key, EVP_sha256()) || !PEM_write_bio_X509(cb, cert) ||
        !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL))
        err = llmos_fail(LLMOS_ERR_INTERNAL, "tls: OpenSSL could not make the certificate");
    if (!err)
        err = tlscert_write(key_path, kb, 0600);
    if (!err)
        err = tlscert_write(cert_path, cb, 0644);
    BIO_free(cb);
    BIO_free(kb);
    BN_free(serial);
    X509_free(cert);
    EVP_PKEY_free(key);
    return err;
}

llmos_err tlscert_days_left(const char *cert_path, int *days)
{
    FILE *f = fopen(cert_path, "r");
    if (!f)
        return llmos_fail(errno == ENOENT ? LLMOS_ERR_NOT_FOUND : LLMOS_ERR_IO, "tls: %s: %s",
                          cert_path, strerror(errno));
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!cert)
        return llmos_fail(LLMOS_ERR_FORMAT, "tls: %s holds no PEM certificate", cert_path);
    int d = 0, s = 0;
    int ok = ASN1_TIME_diff(&d, &s, NULL, X509_get0_notAfter(cert));
    X509_free(cert);
    if (!ok)
        return llmos_fail(LLMOS_ERR_FORMAT, "tls: %s: its expiry cannot be read", cert_path);
    *days = d;
    return LLMOS_OK;
}
