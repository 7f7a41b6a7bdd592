/*
 * web.h - the web UI's files, built into the program (scripts/embed_web.cmake makes
 * web_assets.c from web/), and how the HTTP device serves them (web.c).
 */
#ifndef LLMOS_IO_WEB_H
#define LLMOS_IO_WEB_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct web_asset {
    const char *name; /* "index.html", "app.js", ... */
    const unsigned char *data;
    size_t size;
} web_asset;

extern const web_asset web_assets[];
extern const size_t web_n_assets;

/* The file called name, or NULL. */
const web_asset *web_find(const char *name);

/* Answer GET of the UI's file `name` on c (404 when there is none) with its type, a strict
 * Content-Security-Policy (nothing but this server's own scripts, styles and requests), no
 * framing, and HSTS when tls. *status gets what was answered. */
enum MHD_Result web_serve(struct MHD_Connection *c, const char *name, bool tls, unsigned *status);

#endif
