/*
 * web.c - the web UI over HTTP: the files of web/ (plain HTML, CSS and JavaScript, no build
 * step, nothing fetched from elsewhere), built into the program and served by `llmos serve`
 * at / and /ui/<file>.
 *
 * Every page goes out with a Content-Security-Policy that allows only this server's own
 * scripts, styles, images and requests, no inline script or style, no plugins, no framing and
 * no form posted elsewhere: text the model writes (or a web page it read) that ends up in the
 * page cannot run, and the UI itself writes model output with textContent only. The UI's data
 * comes from the same API every client uses (docs/api.md), authenticated by the login cookie
 * and the CSRF token (src/io/http_server.c).
 */
#include <string.h>

#include "io/web.h"

#define WEB_CSP                                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* The Content-Type of a file by its extension. */
static const char *web_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

const web_asset *web_find(const char *name)
{
    for (size_t i = 0; i < web_n_assets; i++)
        if (strcmp(web_assets[i].name, name) == 0)
            return &web_assets[i];
    return NULL;
}

enum MHD_Result web_serve(struct MHD_Connection *c, const char *name, bool tls, unsigned *status)
{
    static const char missing[] = "not found\n";
    const web_asset *a = web_find(name);
    struct MHD_Response *r =
        a ? MHD_create_response_from_buffer(a->size, (void *)a->data, MHD_RESPMEM_PERSISTENT)
          : MHD_create_response_from_buffer(sizeof missing - 1, (void *)missing,
                                            MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", a ? web_type(a->name) : "text/plain");
    MHD_add_response_header(r, "Content-Security-Policy", WEB_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    if (tls)
        MHD_add_response_header(r, "Strict-Transport-Security", "max-age=31536000");
    *status = a ? 200 : 404;
    enum MHD_Result ret = MHD_queue_response(c, *status, r);
    MHD_destroy_response(r);
    return ret;
}
