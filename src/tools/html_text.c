/*
 * html_text.c - HTML to readable text for the browser tool (llmos/browser.h's html_to_text).
 *
 * libxml2's HTML parser reads any bytes (it recovers from every error, never fetches
 * anything: HTML_PARSE_NONET); the tree is walked once, writing text as a reader sees it:
 * headings as "# ", list items as "- " (or "1. "), blocks separated by blank lines, table
 * cells by " | ", links as "text [n]" with their URLs listed at the end, images by their alt
 * text. Scripts, styles, templates, embedded objects and parts marked hidden are dropped.
 * White space is collapsed as a browser does, except in <pre>. The walk stops descending past
 * HTML_MAX_DEPTH levels and keeps at most HTML_MAX_LINKS links.
 */
#include <assert.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <libxml/uri.h>

#include "llmos/browser.h"

#define HTML_MAX_DEPTH 200
#define HTML_MAX_LINKS 500

typedef struct writer {
    llmos_buf *out;
    size_t start; /* where this conversion began in out */
    bool space;   /* white space seen and not yet written */
    int newlines; /* newlines at the end of what was written (2: a blank line) */
    int pre;      /* inside <pre> */
    int list_depth;
    const xmlChar *base;
    char **links;
    size_t n_links;
    bool oom;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (!w->oom && n && buf_append(w->out, s, n))
        w->oom = true;
}

/* Text of the page, white space collapsed (or kept in <pre>). */
static void text(writer *w, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (w->pre) {
            put(w, s, 1);
            w->newlines = c == '\n' ? w->newlines + 1 : 0;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            w->space = true;
            continue;
        }
        if (w->space && w->newlines == 0 && w->out->len > w->start)
            put(w, " ", 1);
        w->space = false;
        put(w, s, 1);
        w->newlines = 0;
    }
}

/* End the line, and leave n - 1 blank lines (at most), unless at the start. */
static void breaks(writer *w, int n)
{
    w->space = false;
    if (w->out->len == w->start)
        return;
    while (w->newlines < n) {
        put(w, "\n", 1);
        w->newlines++;
    }
}

static bool name_is(const xmlNode *n, const char *name)
{
    return n->name && strcasecmp((const char *)n->name, name) == 0;
}

static bool name_in(const xmlNode *n, const char *const *names)
{
    for (; *names; names++)
        if (name_is(n, *names))
            return true;
    return false;
}

static const char *const dropped[] = {
    "script", "style",  "noscript", "template", "svg",      "iframe", "object", "embed", "canvas",
    "head",   "select", "button",   "input",    "textarea", "audio",  "video",  NULL};
static const char *const blocks[] = {
    "p",      "div",        "section", "article", "header", "footer",   "nav",     "main",
    "aside",  "blockquote", "table",   "ul",      "ol",     "dl",       "dt",      "dd",
    "figure", "figcaption", "address", "hr",      "form",   "fieldset", "details", "summary",
    "body",   "html",       "caption", "tbody",   "thead",  "tfoot",    NULL};

/* Hidden by its attributes (hidden, aria-hidden="true", style="display:none")? */
static bool hidden(const xmlNode *n)
{
    if (xmlHasProp((xmlNode *)n, (const xmlChar *)"hidden"))
        return true;
    bool h = false;
    xmlChar *a = xmlGetProp(n, (const xmlChar *)"aria-hidden");
    if (a && strcasecmp((const char *)a, "true") == 0)
        h = true;
    xmlFree(a);
    xmlChar *st = xmlGetProp(n, (const xmlChar *)"style");
    if (st) {
        char compact[256];
        size_t k = 0;
        for (const xmlChar *c = st; *c && k + 1 < sizeof compact; c++)
            if (!isspace(*c))
                compact[k++] = (char)tolower(*c);
        compact[k] = 0;
        if (strstr(compact, "display:none") || strstr(compact, "visibility:hidden"))
            h = true;
        xmlFree(st);
    }
    return h;
}

static void walk(writer *w, const xmlNode *n, int depth, int ol_index);

static void children(writer *w, const xmlNode *n, int depth)
{
    int ol = 0;
    bool numbered = name_is(n, "ol");
    for (const xmlNode *c = n->children; c && !w->oom; c = c->next) {
        if (numbered && c->type == XML_ELEMENT_NODE && name_is(c, "li"))
            ol++;
        walk(w, c, depth + 1, numbered ? ol : 0);
    }
}

static void link_end(writer *w, const xmlNode *n)
{
    xmlChar *href = xmlGetProp(n, (const xmlChar *)"href");
    if (!href)
        return;
    if (strncasecmp((const char *)href, "javascript:", 11) == 0 || href[0] == '#' ||
        w->n_links >= HTML_MAX_LINKS) {
        xmlFree(href);
        return;
    }
    xmlChar *full = w->base ? xmlBuildURI(href, w->base) : NULL;
    const char *url = (const char *)(full ? full : href);
    /* the same URL keeps its number */
    size_t i = 0;
    while (i < w->n_links && strcmp(w->links[i], url) != 0)
        i++;
    if (i == w->n_links) {
        char **l = realloc(w->links, (w->n_links + 1) * sizeof *l);
        char *dup = l ? strdup(url) : NULL;
        if (!dup) {
            if (l)
                w->links = l;
            w->oom = true;
        } else {
            w->links = l;
            w->links[w->n_links++] = dup;
        }
    }
    xmlFree(full);
    xmlFree(href);
    if (w->oom)
        return;
    char ref[32];
    snprintf(ref, sizeof ref, "[%zu]", i + 1);
    if (w->newlines == 0 && w->out->len > w->start)
        put(w, " ", 1);
    w->space = false;
    put(w, ref, strlen(ref));
    w->newlines = 0;
}

static void walk(writer *w, const xmlNode *n, int depth, int ol_index)
{
    if (depth > HTML_MAX_DEPTH)
        return;
    if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
        if (n->content)
            text(w, (const char *)n->content);
        return;
    }
    if (n->type != XML_ELEMENT_NODE) {
        if (n->type == XML_DOCUMENT_NODE || n->type == XML_HTML_DOCUMENT_NODE)
            children(w, n, depth);
        return;
    }
    if (name_in(n, dropped) || hidden(n))
        return;
    if (name_is(n, "br")) {
        if (w->pre)
            put(w, "\n", 1);
        else
            breaks(w, 1);
        w->newlines = w->newlines ? w->newlines : 1;
        return;
    }
    if (name_is(n, "img")) {
        xmlChar *alt = xmlGetProp(n, (const xmlChar *)"alt");
        if (alt && *alt) {
            text(w, "[image: ");
            text(w, (const char *)alt);
            text(w, "]");
        }
        xmlFree(alt);
        return;
    }
    int level = 0;
    if ((n->name[0] == 'h' || n->name[0] == 'H') && n->name[1] >= '1' && n->name[1] <= '6' &&
        !n->name[2])
        level = n->name[1] - '0';
    if (level) {
        breaks(w, 2);
        put(w, "######", (size_t)level);
        put(w, " ", 1);
        w->newlines = 0;
        children(w, n, depth);
        breaks(w, 2);
        return;
    }
    if (name_is(n, "li")) {
        breaks(w, 1);
        for (int i = 1; i < w->list_depth; i++)
            put(w, "  ", 2);
        char mark[24];
        if (ol_index)
            snprintf(mark, sizeof mark, "%d. ", ol_index);
        else
            snprintf(mark, sizeof mark, "- ");
        put(w, mark, strlen(mark));
        w->newlines = 0;
        children(w, n, depth);
        breaks(w, 1);
        return;
    }
    if (name_is(n, "tr")) {
        breaks(w, 1);
        bool first = true;
        for (const xmlNode *c = n->children; c && !w->oom; c = c->next) {
            if (c->type != XML_ELEMENT_NODE || !(name_is(c, "td") || name_is(c, "th")))
                continue;
            if (!first)
                text(w, " |");
            w->space = true;
            first = false;
            children(w, c, depth + 1);
        }
        breaks(w, 1);
        return;
    }
    if (name_is(n, "pre")) {
        breaks(w, 2);
        w->pre++;
        children(w, n, depth);
        w->pre--;
        breaks(w, 2);
        return;
    }
    if (name_is(n, "ul") || name_is(n, "ol")) {
        breaks(w, w->list_depth ? 1 : 2);
        w->list_depth++;
        children(w, n, depth);
        w->list_depth--;
        breaks(w, w->list_depth ? 1 : 2);
        return;
    }
    if (name_is(n, "title")) { /* reached only when <head> is not dropped: never */
        return;
    }
    bool block = name_in(n, blocks);
    if (block)
        breaks(w, name_is(n, "p") || name_is(n, "blockquote") || name_is(n, "table") ? 2 : 1);
    children(w, n, depth);
    if (name_is(n, "a"))
        link_end(w, n);
    if (block)
        breaks(w, name_is(n, "p") || name_is(n, "blockquote") || name_is(n, "table") ? 2 : 1);
}

/* The <title> of the document, if any, as the first line. */
static void title(writer *w, const xmlNode *n, int depth)
{
    for (; n && depth < 8; n = n->next) {
        if (n->type == XML_ELEMENT_NODE && name_is(n, "title")) {
            xmlChar *t = xmlNodeGetContent(n);
            if (t && *t) {
                text(w, "Title: ");
                text(w, (const char *)t);
                breaks(w, 2);
            }
            xmlFree(t);
            return;
        }
        if (n->type == XML_ELEMENT_NODE && (name_is(n, "html") || name_is(n, "head")))
            title(w, n->children, depth + 1);
    }
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
static void xml_init(void)
{
    xmlInitParser();
}

llmos_err html_to_text(const char *html, size_t len, const char *base_url, llmos_buf *out)
{
    assert((html || !len) && out);
    pthread_once(&xml_once, xml_init);
    if (len > (size_t)BROWSER_MAX_BYTES * 4)
        len = (size_t)BROWSER_MAX_BYTES * 4;
    htmlDocPtr doc = htmlReadMemory(html ? html : "", (int)len, base_url, NULL,
                                    HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                        HTML_PARSE_NONET);
    writer w = {.out = out, .start = out->len, .base = (const xmlChar *)base_url};
    if (doc) {
        title(&w, doc->children, 0);
        walk(&w, (const xmlNode *)doc, 0, 0);
        xmlFreeDoc(doc);
    }
    if (!w.oom && w.n_links) {
        breaks(&w, 2);
        put(&w, "Links:\n", 7);
        for (size_t i = 0; i < w.n_links; i++) {
            char ref[32];
            snprintf(ref, sizeof ref, "[%zu] ", i + 1);
            put(&w, ref, strlen(ref));
            put(&w, w.links[i], strlen(w.links[i]));
            put(&w, "\n", 1);
        }
    } else if (!w.oom && out->len > w.start && w.newlines == 0) {
        put(&w, "\n", 1);
    }
    for (size_t i = 0; i < w.n_links; i++)
        free(w.links[i]);
    free(w.links);
    return w.oom ? llmos_fail(LLMOS_ERR_NOMEM, "html_to_text: no memory") : LLMOS_OK;
}
