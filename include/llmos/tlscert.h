/*
 * llmos/tlscert.h - a self-signed TLS certificate for `llmos serve --tls-self-signed`
 * (src/security/tlscert.c, OpenSSL's libcrypto).
 */
#ifndef LLMOS_TLSCERT_H
#define LLMOS_TLSCERT_H

#include "llmos/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Make an ECDSA P-256 key and a certificate for it, self-signed, valid `days` days from now,
 * for the names localhost, 127.0.0.1 and ::1 (subjectAltName), usable by a TLS server and as
 * its own certificate authority (so a client can trust exactly it: curl's --cacert, llmos
 * serve's --api-ca). Writes both PEM files atomically, the key with mode 0600. */
LLMOS_API LLMOS_NODISCARD llmos_err tlscert_self_signed(const char *cert_path, const char *key_path,
                                                        unsigned days);

/* Days the certificate at cert_path (PEM) is still valid for; LLMOS_ERR_NOT_FOUND when the file
 * is missing, LLMOS_ERR_FORMAT when it is no certificate. Negative when it has expired. */
LLMOS_API LLMOS_NODISCARD llmos_err tlscert_days_left(const char *cert_path, int *days);

#ifdef __cplusplus
}
#endif

#endif
