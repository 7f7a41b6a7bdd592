/*
 * browser.c - the browser tool: fetch a web page (libcurl) and read it as text, guarded
 * against server-side request forgery (llmos/browser.h says what is refused and why).
 *
 * One fetch, hop by hop:
 *   parse the URL (curl_url): http or https, no credentials
 *   resolve the host (getaddrinfo) and check every address it gives: one refused address
 *     refuses the URL (a name that resolves to a public and a private address is an attack)
 *   pin the connection to the first address (CURLOPT_RESOLVE): libcurl never asks DNS again,
 *     so a rebinding answer changes nothing; no proxy (CURLOPT_PROXY ""), and every socket
 *     libcurl opens is checked once more (CURLOPT_OPENSOCKETFUNCTION)
 *   GET, at most BROWSER_MAX_BYTES of body, BROWSER_TIMEOUT_S for the whole fetch
 *   a redirect (3xx with Location) is the next hop, checked from the start
 * robots.txt of each origin is fetched the same way (once per origin and llmos process) and
 * its rules for llmos-browser (else for *) are honoured: a disallowed page is not fetched.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "llmos/browser.h"
#include "llmos/json.h"
#include "llmos/tools.h"

/* ---- the address guard ------------------------------------------------------------------- */

typedef struct allowed_addr {
    int family;
    unsigned char addr[16];
    int port; /* 0: any */
} allowed_addr;

static pthread_mutex_t guard_mu = PTHREAD_MUTEX_INITIALIZER;
static allowed_addr *allow_list;
static size_t n_allow;
static bool allow_set;

/* A port number 1..65535 (all of s); -1 when it is not one. */
static int parse_port(const char *s)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || end == s || *end || v < 1 || v > 65535 ? -1 : (int)v;
}

static bool parse_addr(const char *s, int *family, unsigned char addr[16])
{
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, s, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, addr) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

/* Set the list (caller holds guard_mu). */
static llmos_err set_allow(const char *list)
{
    free(allow_list);
    allow_list = NULL;
    n_allow = 0;
    allow_set = true;
    if (!list || !*list)
        return LLMOS_OK;
    char *copy = strdup(list);
    if (!copy)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    llmos_err err = LLMOS_OK;
    for (char *save = NULL, *e = strtok_r(copy, ", ", &save); e && !err;
         e = strtok_r(NULL, ", ", &save)) {
        allowed_addr a = {0};
        char host[64];
        int port = 0;
        /* "IP", "IP:PORT", "[IPv6]:PORT" */
        if (e[0] == '[') {
            char *close = strchr(e, ']');
            if (!close || (size_t)(close - e - 1) >= sizeof host) {
                err = llmos_fail(LLMOS_ERR_INVALID, "browser allow-list: '%.60s' is not an address",
                                 e);
                break;
            }
            memcpy(host, e + 1, (size_t)(close - e - 1));
            host[close - e - 1] = 0;
            if (close[1] == ':')
                port = parse_port(close + 2);
        } else {
            snprintf(host, sizeof host, "%s", e);
            char *colon = strchr(host, ':');
            if (colon && !strchr(colon + 1, ':')) { /* one colon: IPv4:PORT */
                *colon = 0;
                port = parse_port(colon + 1);
            }
        }
        if (!parse_addr(host, &a.family, a.addr) || port < 0 || port > 65535) {
            err = llmos_fail(LLMOS_ERR_INVALID, "browser allow-list: '%.60s' is not an address", e);
            break;
        }
        a.port = port;
        allowed_addr *l = realloc(allow_list, (n_allow + 1) * sizeof *l);
        if (!l) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
            break;
        }
        allow_list = l;
        allow_list[n_allow++] = a;
    }
    free(copy);
    if (err) {
        free(allow_list);
        allow_list = NULL;
        n_allow = 0;
    }
    return err;
}

llmos_err browser_allow(const char *list)
{
    pthread_mutex_lock(&guard_mu);
    llmos_err err = set_allow(list);
    pthread_mutex_unlock(&guard_mu);
    return err;
}

static bool on_allow_list(int family, const unsigned char *addr, int port)
{
    pthread_mutex_lock(&guard_mu);
    if (!allow_set)
        (void)set_allow(getenv("LLMOS_BROWSER_ALLOW"));
    bool yes = false;
    for (size_t i = 0; i < n_allow && !yes; i++)
        yes = allow_list[i].family == family &&
              memcmp(allow_list[i].addr, addr, family == AF_INET ? 4 : 16) == 0 &&
              (allow_list[i].port == 0 || allow_list[i].port == port);
    pthread_mutex_unlock(&guard_mu);
    return yes;
}

/* A refused IPv4 range: its name, or NULL when a is public. */
static const char *v4_range(const unsigned char a[4])
{
    uint32_t x = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
    static const struct {
        uint32_t net;
        int bits;
        const char *name;
    } ranges[] = {
        {0x00000000, 8, "'this network' (0.0.0.0/8)"},
        {0x0A000000, 8, "private (10.0.0.0/8)"},
        {0x64400000, 10, "carrier-grade NAT (100.64.0.0/10, cloud metadata among them)"},
        {0x7F000000, 8, "loopback (127.0.0.0/8)"},
        {0xA9FE0000, 16, "link-local (169.254.0.0/16, the cloud metadata address among them)"},
        {0xAC100000, 12, "private (172.16.0.0/12)"},
        {0xC0000000, 24, "IETF protocol assignments (192.0.0.0/24)"},
        {0xC0000200, 24, "documentation (192.0.2.0/24)"},
        {0xC0586300, 24, "6to4 relay (192.88.99.0/24)"},
        {0xC0A80000, 16, "private (192.168.0.0/16)"},
        {0xC6120000, 15, "benchmarking (198.18.0.0/15)"},
        {0xC6336400, 24, "documentation (198.51.100.0/24)"},
        {0xCB007100, 24, "documentation (203.0.113.0/24)"},
        {0xE0000000, 4, "multicast (224.0.0.0/4)"},
        {0xF0000000, 4, "reserved or broadcast (240.0.0.0/4)"},
    };
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(ranges); i++) {
        uint32_t mask = ranges[i].bits ? ~0u << (32 - ranges[i].bits) : 0;
        if ((x & mask) == ranges[i].net)
            return ranges[i].name;
    }
    return NULL;
}

static bool v6_prefix(const unsigned char a[16], const unsigned char *p, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, p, (size_t)bytes) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char m = (unsigned char)(0xFF << (8 - rest));
    return (a[bytes] & m) == (p[bytes] & m);
}

/* A refused IPv6 range (or the IPv4 address it embeds): its name, or NULL when public. */
static const char *v6_range(const unsigned char a[16])
{
    static const unsigned char zero[16] = {0}, loop[16] = {[15] = 1},
                               mapped[12] = {[10] = 0xFF, [11] = 0xFF},
                               nat64[12] = {0x00, 0x64, 0xFF, 0x9B}, sixto4[2] = {0x20, 0x02},
                               teredo[4] = {0x20, 0x01, 0x00, 0x00}, ll[2] = {0xFE, 0x80},
                               ula[1] = {0xFC}, mc[1] = {0xFF}, sitelocal[2] = {0xFE, 0xC0},
                               doc[4] = {0x20, 0x01, 0x0D, 0xB8}, discard[8] = {0x01, 0x00};
    if (memcmp(a, zero, 16) == 0)
        return "unspecified (::)";
    if (memcmp(a, loop, 16) == 0)
        return "loopback (::1)";
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 ||
        (memcmp(a, zero, 12) == 0)) { /* ::ffff:a.b.c.d, 64:ff9b::a.b.c.d, ::a.b.c.d */
        const char *r = v4_range(a + 12);
        return r ? r : NULL;
    }
    if (v6_prefix(a, sixto4, 16)) { /* 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD */
        const char *r = v4_range(a + 2);
        if (r)
            return r;
    }
    if (v6_prefix(a, teredo, 32)) { /* the client's address, inverted, in the last 32 bits */
        unsigned char v4[4] = {(unsigned char)~a[12], (unsigned char)~a[13], (unsigned char)~a[14],
                               (unsigned char)~a[15]};
        const char *r = v4_range(v4);
        if (r)
            return r;
    }
    if (v6_prefix(a, ll, 10))
        return "link-local (fe80::/10)";
    if (v6_prefix(a, sitelocal, 10))
        return "site-local (fec0::/10)";
    if (v6_prefix(a, ula, 7))
        return "unique local, private (fc00::/7, the cloud metadata fd00:ec2::254 among them)";
    if (v6_prefix(a, mc, 8))
        return "multicast (ff00::/8)";
    if (v6_prefix(a, doc, 32))
        return "documentation (2001:db8::/32)";
    if (v6_prefix(a, discard, 64))
        return "discard (100::/64)";
    return NULL;
}

static bool addr_allowed(int family, const unsigned char *addr, int port, char *why, size_t size)
{
    if (on_allow_list(family, addr, port))
        return true;
    const char *r = family == AF_INET ? v4_range(addr) : v6_range(addr);
    if (r && why)
        snprintf(why, size, "%s", r);
    return r == NULL;
}

bool browser_address_allowed(const char *addr, int port, char *why, size_t size)
{
    int family;
    unsigned char a[16];
    if (!addr || !parse_addr(addr, &family, a)) {
        if (why)
            snprintf(why, size, "not an address");
        return false;
    }
    return addr_allowed(family, a, port, why, size);
}

/* ---- one hop -------------------------------------------------------------------------------- */

typedef struct target {
    char scheme[8];
    char host[256]; /* as in the URL (IPv6 without brackets) */
    int port;
    char path[2048]; /* path and query, for robots.txt */
    char addr[64];   /* the checked address it is pinned to */
} target;

/* Parse and check url, resolve and check its host; t gets where to connect. */
static llmos_err check_url(const char *url, target *t)
{
    memset(t, 0, sizeof *t);
    CURLU *u = curl_url();
    if (!u)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pass = NULL, *path = NULL,
         *query = NULL;
    llmos_err err = LLMOS_OK;
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
        err = llmos_fail(LLMOS_ERR_INVALID, "'%.200s' is not a URL llmos can fetch", url);
        goto done;
    }
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        err = llmos_fail(LLMOS_ERR_DENIED, "'%.200s': only http and https URLs are fetched, not %s",
                         url, scheme);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        err = llmos_fail(LLMOS_ERR_INVALID, "'%.200s' has no host", url);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK) {
        err = llmos_fail(LLMOS_ERR_DENIED,
                         "'%.200s': a URL with a user name or password is not "
                         "fetched",
                         url);
        goto done;
    }
    (void)curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    (void)curl_url_get(u, CURLUPART_PATH, &path, 0);
    (void)curl_url_get(u, CURLUPART_QUERY, &query, 0);
    snprintf(t->scheme, sizeof t->scheme, "%s",
             strcasecmp(scheme, "https") == 0 ? "https" : "http");
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']')
        snprintf(t->host, sizeof t->host, "%.*s", (int)(hl - 2), host + 1);
    else
        snprintf(t->host, sizeof t->host, "%s", host);
    t->port = port ? parse_port(port) : (strcmp(t->scheme, "https") == 0 ? 443 : 80);
    if (t->port < 0) {
        err = llmos_fail(LLMOS_ERR_INVALID, "'%.200s': the port is not a number 1-65535", url);
        goto done;
    }
    snprintf(t->path, sizeof t->path, "%s%s%s", path ? path : "/", query ? "?" : "",
             query ? query : "");
    /* every address of the host */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(t->host, NULL, &hints, &res);
    if (rc != 0) {
        err = llmos_fail(LLMOS_ERR_NETWORK, "'%.200s': the host %s cannot be resolved (%s)", url,
                         t->host, gai_strerror(rc));
        goto done;
    }
    for (struct addrinfo *ai = res; ai && !err; ai = ai->ai_next) {
        char text[64] = "", why[160] = "";
        unsigned char a[16];
        int family = ai->ai_family;
        if (family == AF_INET)
            memcpy(a, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
        else if (family == AF_INET6)
            memcpy(a, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
        else
            continue;
        inet_ntop(family, a, text, sizeof text);
        if (!addr_allowed(family, a, t->port, why, sizeof why))
            err = llmos_fail(LLMOS_ERR_DENIED,
                             "'%.200s': refused: %s is %s, which the browser does not reach "
                             "(server-side request forgery guard)",
                             url, strcmp(text, t->host) == 0 ? "the address" : text, why);
        else if (!t->addr[0])
            snprintf(t->addr, sizeof t->addr, "%s", text);
    }
    freeaddrinfo(res);
    if (!err && !t->addr[0])
        err = llmos_fail(LLMOS_ERR_NETWORK, "'%.200s': %s has no address", url, t->host);
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_free(pass);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return err;
}

typedef struct sink {
    llmos_buf *b;
    size_t max;
    bool truncated;
} sink;

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    sink *s = ctx;
    size_t len = size * n, room = s->b->len < s->max ? s->max - s->b->len : 0;
    if (len > room) {
        s->truncated = true;
        if (room && buf_append(s->b, p, room))
            return 0;
        return 0; /* stop: the limit */
    }
    return buf_append(s->b, p, len) ? 0 : len;
}

/* Every socket libcurl opens is checked again (a proxy, a second address, a bug). */
static curl_socket_t on_open(void *ctx, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)ctx;
    (void)purpose;
    unsigned char addr[16];
    int port;
    if (a->family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->addr;
        memcpy(addr, &in->sin_addr, 4);
        port = ntohs(in->sin_port);
    } else if (a->family == AF_INET6) {
        const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)&a->addr;
        memcpy(addr, &in->sin6_addr, 16);
        port = ntohs(in->sin6_port);
    } else {
        return CURL_SOCKET_BAD;
    }
    if (!addr_allowed(a->family, addr, port, NULL, 0))
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* GET url (already checked into t) pinned to t->addr; a redirect's absolute target goes to
 * next (malloc'd) when the status is 3xx. */
static llmos_err hop(const char *url, const target *t, double deadline, size_t max,
                     browser_page *page, char **next)
{
    *next = NULL;
    double left = deadline - (double)time(NULL);
    if (left <= 0)
        return llmos_fail(LLMOS_ERR_NETWORK, "'%.200s': the fetch took longer than %d s", url,
                          BROWSER_TIMEOUT_S);
    CURL *c = curl_easy_init();
    if (!c)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    char pin[400];
    bool v6 = strchr(t->addr, ':') != NULL;
    snprintf(pin, sizeof pin, "%s:%d:%s%s%s", t->host, t->port, v6 ? "[" : "", t->addr,
             v6 ? "]" : "");
    struct curl_slist *resolve = curl_slist_append(NULL, pin);
    sink s = {.b = &page->body, .max = max};
    buf_clear(&page->body);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open);
    curl_easy_setopt(c, CURLOPT_USERAGENT, BROWSER_USER_AGENT);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(left * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    CURLcode rc = curl_easy_perform(c);
    llmos_err err = LLMOS_OK;
    if (rc == CURLE_WRITE_ERROR && s.truncated)
        rc = CURLE_OK; /* cut at the limit: what came is the page */
    if (rc != CURLE_OK) {
        err = llmos_fail(LLMOS_ERR_NETWORK, "'%.200s': %s", url,
                         rc == CURLE_OPERATION_TIMEDOUT ? "timed out" : curl_easy_strerror(rc));
    } else {
        page->truncated = s.truncated;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &page->status);
        char *ct = NULL, *loc = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(page->content_type, sizeof page->content_type, "%s", ct ? ct : "");
        snprintf(page->url, sizeof page->url, "%s", url);
        if (page->status >= 300 && page->status < 400 &&
            curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc && *loc) {
            *next = strdup(loc);
            if (!*next)
                err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
        }
    }
    curl_slist_free_all(resolve);
    curl_easy_cleanup(c);
    return err;
}

/* Fetch url with redirects (each hop checked); robots.txt not looked at. */
static llmos_err fetch_checked(const char *url, double deadline, size_t max, browser_page *out)
{
    char *cur = strdup(url);
    if (!cur)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    llmos_err err = LLMOS_OK;
    for (int hops = 0;; hops++) {
        target t;
        if ((err = check_url(cur, &t)))
            break;
        char *next = NULL;
        if ((err = hop(cur, &t, deadline, max, out, &next)))
            break;
        if (!next)
            break;
        if (hops >= BROWSER_MAX_REDIRECTS) {
            free(next);
            err = llmos_fail(LLMOS_ERR_NETWORK, "'%.200s': more than %d redirects", url,
                             BROWSER_MAX_REDIRECTS);
            break;
        }
        free(cur);
        cur = next;
        out->redirects++;
    }
    free(cur);
    return err;
}

/* ---- robots.txt ----------------------------------------------------------------------------- */

/* Does pattern (robots.txt: '*' any run, '$' the end) match the start of path? */
static bool robots_match(const char *pat, const char *path)
{
    for (; *pat; pat++, path++) {
        if (*pat == '*') {
            for (const char *p = path;; p++) {
                if (robots_match(pat + 1, p))
                    return true;
                if (!*p)
                    return false;
            }
        }
        if (*pat == '$' && pat[1] == 0)
            return *path == 0;
        if (*path != *pat)
            return false;
    }
    return true;
}

/* Is path allowed by robots.txt text for our agent? The group naming "llmos" wins over "*";
 * within it the longest matching rule decides, Allow on a tie. */
static bool robots_allows(const char *txt, size_t len, const char *path)
{
    int best_group = 0; /* 2: names llmos, 1: '*' */
    int decided_len = -1;
    bool allowed = true;
    for (int pass = 2; pass >= 1 && decided_len < 0; pass--) {
        bool in_group = false, group_has_rules = false;
        size_t i = 0;
        bool any_group = false;
        while (i < len) {
            size_t e = i;
            while (e < len && txt[e] != '\n')
                e++;
            char line[1024] = {0};
            size_t l = e - i < sizeof line - 1 ? e - i : sizeof line - 1;
            memcpy(line, txt + i, l);
            line[l] = 0;
            i = e + 1;
            char *hash = strchr(line, '#');
            if (hash)
                *hash = 0;
            char *colon = strchr(line, ':');
            if (!colon)
                continue;
            *colon = 0;
            char *key = line, *val = colon + 1;
            while (isspace((unsigned char)*key))
                key++;
            while (isspace((unsigned char)*val))
                val++;
            for (char *z = val + strlen(val); z > val && isspace((unsigned char)z[-1]);)
                *--z = 0;
            for (char *z = key + strlen(key); z > key && isspace((unsigned char)z[-1]);)
                *--z = 0;
            if (strcasecmp(key, "user-agent") == 0) {
                if (group_has_rules)
                    in_group = false, group_has_rules = false;
                bool match = pass == 2 ? strcasestr(val, "llmos") != NULL : strcmp(val, "*") == 0;
                in_group = in_group || match;
                any_group = any_group || match;
            } else if (in_group &&
                       (strcasecmp(key, "disallow") == 0 || strcasecmp(key, "allow") == 0)) {
                group_has_rules = true;
                if (!*val)
                    continue; /* "Disallow:" allows everything */
                int n = (int)strlen(val);
                if (robots_match(val, path) && n >= decided_len) {
                    bool allow = strcasecmp(key, "allow") == 0;
                    if (n > decided_len || allow)
                        allowed = allow;
                    decided_len = n;
                }
            } else if (in_group) {
                group_has_rules = true;
            }
        }
        if (any_group) {
            best_group = pass;
            break;
        }
    }
    (void)best_group;
    return allowed;
}

typedef struct robots_entry {
    char origin[300];
    char *txt; /* NULL: none (everything allowed) */
    size_t len;
} robots_entry;

static pthread_mutex_t robots_mu = PTHREAD_MUTEX_INITIALIZER;
static robots_entry robots_cache[32];
static size_t robots_next;

static llmos_err robots_check(const target *t, const char *url, double deadline)
{
    char origin[300];
    bool v6 = strchr(t->host, ':') != NULL;
    snprintf(origin, sizeof origin, "%s://%s%s%s:%d", t->scheme, v6 ? "[" : "", t->host,
             v6 ? "]" : "", t->port);
    pthread_mutex_lock(&robots_mu);
    robots_entry *hit = NULL;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(robots_cache); i++)
        if (strcmp(robots_cache[i].origin, origin) == 0)
            hit = &robots_cache[i];
    bool allowed = true;
    if (hit) {
        allowed = !hit->txt || robots_allows(hit->txt, hit->len, t->path);
        pthread_mutex_unlock(&robots_mu);
    } else {
        pthread_mutex_unlock(&robots_mu);
        char rurl[400];
        snprintf(rurl, sizeof rurl, "%s/robots.txt", origin);
        browser_page rp = {0};
        char *txt = NULL;
        size_t len = 0;
        if (fetch_checked(rurl, deadline, 512 * 1024, &rp) == LLMOS_OK && rp.status == 200) {
            len = rp.body.len;
            txt = buf_detach(&rp.body, NULL);
        }
        llmos_err_clear();
        browser_page_free(&rp);
        allowed = !txt || robots_allows(txt, len, t->path);
        pthread_mutex_lock(&robots_mu);
        robots_entry *e = &robots_cache[robots_next++ % LLMOS_ARRAY_LEN(robots_cache)];
        free(e->txt);
        snprintf(e->origin, sizeof e->origin, "%s", origin);
        e->txt = txt;
        e->len = len;
        pthread_mutex_unlock(&robots_mu);
    }
    if (!allowed)
        return llmos_fail(LLMOS_ERR_DENIED,
                          "'%.200s': the site's robots.txt asks robots not to "
                          "fetch it",
                          url);
    return LLMOS_OK;
}

/* ---- the fetch -------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void browser_page_free(browser_page *p)
{
    if (!p)
        return;
    buf_free(&p->body);
    memset(p, 0, sizeof *p);
}

llmos_err browser_fetch(const char *url, browser_page *out)
{
    assert(url && out);
    memset(out, 0, sizeof *out);
    pthread_once(&curl_once, curl_init_once);
    double deadline = (double)time(NULL) + BROWSER_TIMEOUT_S;
    char *cur = strdup(url);
    if (!cur)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    llmos_err err = LLMOS_OK;
    for (int hops = 0;; hops++) {
        target t;
        if ((err = check_url(cur, &t)) || (err = robots_check(&t, cur, deadline)))
            break;
        char *next = NULL;
        if ((err = hop(cur, &t, deadline, BROWSER_MAX_BYTES, out, &next)))
            break;
        if (!next)
            break;
        if (hops >= BROWSER_MAX_REDIRECTS) {
            free(next);
            err = llmos_fail(LLMOS_ERR_NETWORK, "'%.200s': more than %d redirects", url,
                             BROWSER_MAX_REDIRECTS);
            break;
        }
        free(cur);
        cur = next;
        out->redirects++;
    }
    free(cur);
    return err;
}

/* ---- the tool --------------------------------------------------------------------------- */

static llmos_err browser_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    const char *url = ljson_get_string(env->args, "url", "");
    browser_page p;
    llmos_err err = browser_fetch(url, &p);
    llmos_buf *o = env->out;
    if (!err && buf_printf(o, "URL: %s\nStatus: %ld\nContent-Type: %s\n%s\n", p.url, p.status,
                           p.content_type[0] ? p.content_type : "(none)",
                           p.truncated ? "(cut at the size limit)\n" : ""))
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    if (!err) {
        const char *ct = p.content_type;
        if (!*ct || strncasecmp(ct, "text/html", 9) == 0 ||
            strncasecmp(ct, "application/xhtml", 17) == 0)
            err = html_to_text(p.body.data ? p.body.data : "", p.body.len, p.url, o);
        else if (strncasecmp(ct, "text/", 5) == 0 || strstr(ct, "json") || strstr(ct, "xml"))
            err = buf_append(o, p.body.data ? p.body.data : "", p.body.len)
                      ? llmos_fail(LLMOS_ERR_NOMEM, "no memory")
                      : LLMOS_OK;
        else if (buf_printf(o, "(%zu bytes of %s, not text: not shown)\n", p.body.len, ct))
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    }
    browser_page_free(&p);
    return err;
}

const ktool tool_browser = {
    .name = "browser",
    .description = "Fetch a web page (http or https) and read it as text: headings, lists, and "
                   "links as numbered references listed at the end. Local and private network "
                   "addresses are refused.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"url\": {\"type\": \"string\"}}, "
                  "\"required\": [\"url\"], \"additionalProperties\": false}",
    .capability = KCAP_READ,
    .output_trusted = false,
    .run = browser_run,
};
