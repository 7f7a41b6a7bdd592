/*
 * llmos/browser.h - fetch a web page for the model, refusing to be turned against the machine
 * it runs on or its network (server-side request forgery), and read HTML as text
 * (src/tools/browser.c, src/tools/html_text.c; docs/tools.md, "browser").
 *
 * A fetch (libcurl) takes http and https only. The host is resolved first and every address it
 * resolves to is checked: loopback, private (RFC 1918, unique local), link-local (the cloud
 * metadata address 169.254.169.254 among them), carrier-grade NAT, unspecified, multicast,
 * broadcast, reserved and documentation ranges, and IPv6 forms that embed such an IPv4
 * address (mapped, NAT64, 6to4) are refused. The connection is then pinned to the address
 * checked (CURLOPT_RESOLVE), so a second DNS answer cannot change where it goes, and every
 * socket libcurl opens is checked again (no proxy is ever used). Redirects are followed by
 * llmos, at most BROWSER_MAX_REDIRECTS, each target checked like the first URL. Responses are
 * cut at a size and a time limit. robots.txt is read and honoured for llmos's user agent.
 *
 * Numeric hosts in any form the resolver accepts (2130706433, 0177.0.0.1, 0x7f.1, 127.1) are
 * checked as the address they resolve to, so they are refused like 127.0.0.1.
 */
#ifndef LLMOS_BROWSER_H
#define LLMOS_BROWSER_H

#include <stdbool.h>
#include <stddef.h>

#include "llmos/base.h"

#define BROWSER_MAX_REDIRECTS 5
#define BROWSER_MAX_BYTES     (4 << 20) /* a response body, at most */
#define BROWSER_TIMEOUT_S     20        /* a whole fetch, redirects included */
#define BROWSER_USER_AGENT                                                                         \
    "llmos-browser/" LLMOS_VERSION " (an AI assistant fetching a page for its user; honours "      \
    "robots.txt)"

/* What came back. */
typedef struct browser_page {
    char url[2048];         /* the final URL, after redirects */
    long status;            /* the HTTP status */
    char content_type[128]; /* as the server said, "" when it did not */
    llmos_buf body;         /* the body, at most the limit */
    bool truncated;         /* cut at the size limit */
    int redirects;          /* followed */
} browser_page;

/* Fetch url (GET). LLMOS_ERR_DENIED for a URL or address the guard refuses (the message names
 * what and why) and for a page robots.txt forbids; LLMOS_ERR_NETWORK for a failed connection
 * or a timeout; LLMOS_ERR_INVALID for a URL that does not parse. Free *out with
 * browser_page_free, also after an error. */
LLMOS_API LLMOS_NODISCARD llmos_err browser_fetch(const char *url, browser_page *out);
LLMOS_API void browser_page_free(browser_page *p);

/* Addresses the guard lets through although they are private, for tests and for a user who
 * means to reach a local server: a comma-separated list of "IP" or "IP:PORT" ("127.0.0.1:8080,
 * ::1"); NULL or "" for none. Replaces the previous list; the environment variable
 * LLMOS_BROWSER_ALLOW is read when no list was set. LLMOS_ERR_INVALID for an entry that is not
 * an address. */
LLMOS_API LLMOS_NODISCARD llmos_err browser_allow(const char *list);

/* Whether the guard lets a connection to the numeric address addr (IPv4 or IPv6 text) on port
 * go ahead; why (may be NULL) gets the range it falls in when not. */
LLMOS_API bool browser_address_allowed(const char *addr, int port, char *why, size_t size);

/* HTML to readable text (libxml2's HTML parser, which takes any bytes): headings as "# ",
 * "## ", ..., list items as "- ", paragraphs and line breaks kept, tables a row a line, links
 * as "text [n]" with the numbered list of their URLs at the end (resolved against base_url,
 * may be NULL), scripts, styles, templates and hidden parts dropped, white space collapsed.
 * Appends to out. */
LLMOS_API LLMOS_NODISCARD llmos_err html_to_text(const char *html, size_t len, const char *base_url,
                                                 llmos_buf *out);

#endif
