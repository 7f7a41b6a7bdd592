/*
 * test_html_text.c - HTML to readable text (html_to_text, src/tools/html_text.c): headings,
 * lists (bulleted, numbered, nested), paragraphs, tables, links as numbered references
 * resolved against the page's URL and listed at the end, images by alt text; scripts, styles,
 * templates and hidden parts dropped; white space collapsed except in <pre>; broken HTML and
 * bytes that are not HTML read without failing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/browser.h"

static char *convert(const char *html, const char *base)
{
    llmos_buf b = {0};
    assert_int_equal(html_to_text(html, strlen(html), base, &b), LLMOS_OK);
    return buf_detach(&b, NULL);
}

static void test_structure(void **state)
{
    (void)state;
    char *t = convert("<html><head><title>The  page</title><style>p{color:red}</style>"
                      "<script>alert('x')</script></head><body>"
                      "<h1>Main   title</h1><p>First\n  paragraph with <b>bold</b> text.</p>"
                      "<h2>Lists</h2><ul><li>one</li><li>two<ul><li>inner</li></ul></li></ul>"
                      "<ol><li>first</li><li>second</li></ol>"
                      "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>"
                      "<p>A <a href=\"/docs/x.html\">link</a> and <a href=\"https://e.org/\">"
                      "another</a> and <a href=\"/docs/x.html\">the first again</a>.</p>"
                      "<img src=\"i.png\" alt=\"a cat\"><pre>  keep\n    this</pre>"
                      "<div hidden>HIDDEN1</div><p style=\"display: none\">HIDDEN2</p>"
                      "<span aria-hidden=\"true\">HIDDEN3</span><noscript>HIDDEN4</noscript>"
                      "<template>HIDDEN5</template></body></html>",
                      "https://example.com/a/b.html");
    const char *want = "Title: The page\n\n"
                       "# Main title\n\n"
                       "First paragraph with bold text.\n\n"
                       "## Lists\n\n"
                       "- one\n"
                       "- two\n"
                       "  - inner\n\n"
                       "1. first\n"
                       "2. second\n\n"
                       "a | b\n"
                       "1 | 2\n\n"
                       "A link [1] and another [2] and the first again [1].\n\n"
                       "[image: a cat]\n\n"
                       "  keep\n    this\n\n"
                       "Links:\n"
                       "[1] https://example.com/docs/x.html\n"
                       "[2] https://e.org/\n";
    if (strcmp(t, want) != 0)
        fail_msg("got:\n%s\nwanted:\n%s", t, want);
    assert_null(strstr(t, "HIDDEN"));
    assert_null(strstr(t, "alert"));
    assert_null(strstr(t, "color"));
    free(t);
}

static void test_broken_and_odd_input(void **state)
{
    (void)state;
    /* unclosed tags, stray closers, entities, a javascript: link (not numbered) */
    char *t = convert("<p>one<p>two</b></i><li>item &amp; &lt;tag&gt; &eacute;"
                      "<a href=\"javascript:evil()\">click</a>",
                      NULL);
    assert_non_null(strstr(t, "one\n\ntwo"));
    assert_non_null(strstr(t, "- item & <tag> \xc3\xa9"));
    assert_non_null(strstr(t, "click"));
    assert_null(strstr(t, "Links:"));
    free(t);
    /* not HTML at all, and bytes that are not UTF-8: no failure */
    const char bin[] = "\x00\x01\xff\xfe<<<>>>\x80 plain words";
    llmos_buf b = {0};
    assert_int_equal(html_to_text(bin, sizeof bin - 1, NULL, &b), LLMOS_OK);
    buf_free(&b);
    /* deep nesting stops at the depth limit instead of the stack */
    llmos_buf deep = {0};
    for (int i = 0; i < 5000; i++)
        assert_int_equal(buf_puts(&deep, "<div>"), LLMOS_OK);
    assert_int_equal(buf_puts(&deep, "bottom"), LLMOS_OK);
    assert_int_equal(html_to_text(deep.data, deep.len, NULL, &b), LLMOS_OK);
    buf_free(&b);
    buf_free(&deep);
    /* empty */
    assert_int_equal(html_to_text("", 0, NULL, &b), LLMOS_OK);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_broken_and_odd_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
