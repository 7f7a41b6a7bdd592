/*
 * test_chat.c - chat_render on the real chat templates of eight model families.
 *
 * Each template (shared test data, the templates folder) renders fixed conversations; the
 * expected prompt is written out here by hand from the family's published format and a
 * reading of the template (every newline and space), not captured from llmos. Covered: system
 * prompts, multi-turn user/assistant, tool definitions, assistant tool calls, tool results,
 * add_generation_prompt on and off, the families' own raise_exception checks, the injectable
 * clock of strftime_now, and the ChatML fallback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/chat.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------------------- */

/* The text of templates/FILE in the shared data; skips the test when it is absent. */
static char *load_template(const char *file)
{
    char rel[256], path[4096];
    snprintf(rel, sizeof rel, "templates/%s", file);
    tu_testdata_path(path, sizeof path, rel);
    llmos_buf b = {0};
    assert_int_equal(llmos_file_read_all(path, 1 << 20, &b), LLMOS_OK);
    return buf_detach(&b, NULL);
}

static json_t *js(const char *text)
{
    json_t *v = NULL;
    if (ljson_parse_text(text, strlen(text), "test JSON", 0, &v) != LLMOS_OK)
        fail_msg("bad test JSON: %s", llmos_errmsg());
    return v;
}

/* Render and compare; on mismatch print both texts. */
static void expect_render(const char *tmpl, const char *messages, const char *tools, bool gen,
                          const char *bos, const char *eos, const char *extra,
                          const jinja_options *opts, const char *want)
{
    json_t *m = js(messages), *t = tools ? js(tools) : NULL, *x = extra ? js(extra) : NULL;
    llmos_buf out = {0};
    llmos_err err = chat_render_opts(tmpl, m, t, gen, bos, eos, x, opts, &out);
    if (err != LLMOS_OK)
        fail_msg("render failed: %s", llmos_errmsg());
    if (strcmp(out.data, want) != 0) {
        size_t i = 0;
        while (out.data[i] && out.data[i] == want[i])
            i++;
        print_error("first difference at byte %zu\n--- got:\n%s\n--- want:\n%s\n", i, out.data,
                    want);
    }
    assert_string_equal(out.data, want);
    buf_free(&out);
    json_decref(m);
    json_decref(t);
    json_decref(x);
}

/* Render expecting failure `code` with `needle` in the message. */
static void expect_fail(const char *tmpl, const char *messages, const char *tools, llmos_err code,
                        const char *needle)
{
    json_t *m = js(messages), *t = tools ? js(tools) : NULL;
    llmos_buf out = {0};
    llmos_err err = chat_render(tmpl, m, t, true, "<s>", "</s>", NULL, &out);
    if (err != code)
        fail_msg("expected error %s, got %s: %s", llmos_strerror(code), llmos_strerror(err),
                 err ? llmos_errmsg() : out.data);
    if (!strstr(llmos_errmsg(), needle))
        fail_msg("message '%s' lacks '%s'", llmos_errmsg(), needle);
    assert_int_equal(out.len, 0); /* nothing half-rendered is left behind */
    buf_free(&out);
    json_decref(m);
    json_decref(t);
}

/* ---- shared conversations ------------------------------------------------------------------ */

/* system + two user turns + one assistant turn */
static const char *const CONV_SIMPLE =
    "[{\"role\": \"system\", \"content\": \"You are a helpful assistant.\"},"
    " {\"role\": \"user\", \"content\": \"Hello!\"},"
    " {\"role\": \"assistant\", \"content\": \"Hi there.\"},"
    " {\"role\": \"user\", \"content\": \"What is 2+2?\"}]";

static const char *const CONV_NOSYS = "[{\"role\": \"user\", \"content\": \"Hello!\"},"
                                      " {\"role\": \"assistant\", \"content\": \"Hi there.\"},"
                                      " {\"role\": \"user\", \"content\": \"What is 2+2?\"}]";

static const char *const TOOLS_WEATHER =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\","
    " \"description\": \"Get the weather\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}},"
    " \"required\": [\"city\"]}}}]";

/* user asks, assistant calls a tool (arguments as an object), tool answers, assistant
 * answers, user thanks. */
static const char *const CONV_TOOLS =
    "[{\"role\": \"system\", \"content\": \"You are a weather bot.\"},"
    " {\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
    " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\","
    "  \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]},"
    " {\"role\": \"tool\", \"content\": \"{\\\"temp\\\": 22}\"},"
    " {\"role\": \"assistant\", \"content\": \"It is 22 degrees.\"},"
    " {\"role\": \"user\", \"content\": \"Thanks!\"}]";

/* ---- Qwen2.5 ------------------------------------------------------------------------------- */

static void test_qwen_plain(void **state)
{
    (void)state;
    char *t = load_template("Qwen-Qwen2.5-7B-Instruct.jinja");
    expect_render(t, CONV_SIMPLE, NULL, true, "", "<|im_end|>", NULL, NULL,
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\nHello!<|im_end|>\n"
                  "<|im_start|>assistant\nHi there.<|im_end|>\n"
                  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                  "<|im_start|>assistant\n");
    /* no system message: Qwen's default one; no generation prompt */
    expect_render(t, CONV_NOSYS, NULL, false, "", "<|im_end|>", NULL, NULL,
                  "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                  "assistant.<|im_end|>\n"
                  "<|im_start|>user\nHello!<|im_end|>\n"
                  "<|im_start|>assistant\nHi there.<|im_end|>\n"
                  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    free(t);
}

static void test_qwen_tools(void **state)
{
    (void)state;
    char *t = load_template("Qwen-Qwen2.5-7B-Instruct.jinja");
    expect_render(
        t, CONV_TOOLS, TOOLS_WEATHER, true, "", "<|im_end|>", NULL, NULL,
        "<|im_start|>system\nYou are a weather bot.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
        "\"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": "
        "{\"type\": \"string\", \"description\": \"The city\"}}, \"required\": [\"city\"]}}}\n"
        "</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n"
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n{\"temp\": 22}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nIt is 22 degrees.<|im_end|>\n"
        "<|im_start|>user\nThanks!<|im_end|>\n"
        "<|im_start|>assistant\n");
    free(t);
}

/* ---- Llama 3.1 ----------------------------------------------------------------------------- */

static void test_llama31_plain(void **state)
{
    (void)state;
    char *t = load_template("meta-llama-Llama-3.1-8B-Instruct.jinja");
    expect_render(t, CONV_SIMPLE, NULL, true, "<|begin_of_text|>", "<|eot_id|>", NULL, NULL,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Cutting Knowledge Date: December 2023\n"
                  "Today Date: 26 Jul 2024\n\n"
                  "You are a helpful assistant.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* date_string from the extra context; no system message gives an empty system block */
    expect_render(t, CONV_NOSYS, NULL, false, "<|begin_of_text|>", "<|eot_id|>",
                  "{\"date_string\": \"03 Mar 2025\"}", NULL,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Cutting Knowledge Date: December 2023\n"
                  "Today Date: 03 Mar 2025\n\n"
                  "<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>");
    free(t);
}

/* The tool definitions as Llama's templates print them: tojson(indent=4). */
#define LLAMA_TOOL_JSON                                                                            \
    "{\n"                                                                                          \
    "    \"type\": \"function\",\n"                                                                \
    "    \"function\": {\n"                                                                        \
    "        \"name\": \"get_weather\",\n"                                                         \
    "        \"description\": \"Get the weather\",\n"                                              \
    "        \"parameters\": {\n"                                                                  \
    "            \"type\": \"object\",\n"                                                          \
    "            \"properties\": {\n"                                                              \
    "                \"city\": {\n"                                                                \
    "                    \"type\": \"string\",\n"                                                  \
    "                    \"description\": \"The city\"\n"                                          \
    "                }\n"                                                                          \
    "            },\n"                                                                             \
    "            \"required\": [\n"                                                                \
    "                \"city\"\n"                                                                   \
    "            ]\n"                                                                              \
    "        }\n"                                                                                  \
    "    }\n"                                                                                      \
    "}"

/* Tools go into the first user message; the tool result, a string, is "iterable" to Jinja and
 * therefore printed through tojson - quoted and escaped, exactly as the Python renderer does. */
#define LLAMA_TOOLS_AFTER_DATE                                                                     \
    "You are a weather bot.<|eot_id|>"                                                             \
    "<|start_header_id|>user<|end_header_id|>\n\n"                                                 \
    "Given the following functions, please respond with a JSON for a function call with its "      \
    "proper arguments that best answers the given prompt.\n\n"                                     \
    "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument "      \
    "name and its value}.Do not use variables.\n\n" LLAMA_TOOL_JSON "\n\n"                         \
    "Weather in Paris?<|eot_id|>"                                                                  \
    "<|start_header_id|>assistant<|end_header_id|>\n\n"                                            \
    "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>"                 \
    "<|start_header_id|>ipython<|end_header_id|>\n\n"                                              \
    "\"{\\\"temp\\\": 22}\"<|eot_id|>"                                                             \
    "<|start_header_id|>assistant<|end_header_id|>\n\nIt is 22 degrees.<|eot_id|>"                 \
    "<|start_header_id|>user<|end_header_id|>\n\nThanks!<|eot_id|>"                                \
    "<|start_header_id|>assistant<|end_header_id|>\n\n"

static void test_llama31_tools(void **state)
{
    (void)state;
    char *t = load_template("meta-llama-Llama-3.1-8B-Instruct.jinja");
    expect_render(t, CONV_TOOLS, TOOLS_WEATHER, true, "<|begin_of_text|>", "<|eot_id|>", NULL, NULL,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Environment: ipython\n"
                  "Cutting Knowledge Date: December 2023\n"
                  "Today Date: 26 Jul 2024\n\n" LLAMA_TOOLS_AFTER_DATE);
    /* tools in the system message instead, and the ipython mode of builtin tools */
    expect_render(t,
                  "[{\"role\": \"user\", \"content\": \"Hi\"},"
                  " {\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\":"
                  " \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}}]}]",
                  TOOLS_WEATHER, false, "", "",
                  "{\"tools_in_user_message\": false,"
                  " \"builtin_tools\": [\"brave_search\", \"code_interpreter\"]}",
                  NULL,
                  "<|start_header_id|>system<|end_header_id|>\n\n"
                  "Environment: ipython\n"
                  "Tools: brave_search\n\n"
                  "Cutting Knowledge Date: December 2023\n"
                  "Today Date: 26 Jul 2024\n\n"
                  "You have access to the following functions. To call a function, please "
                  "respond with JSON for a function call.Respond in the format {\"name\": "
                  "function name, \"parameters\": dictionary of argument name and its value}."
                  "Do not use variables.\n\n" LLAMA_TOOL_JSON "\n\n"
                  "<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n"
                  "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}<|eom_id|>");
    /* the family's own rule: one tool call per message */
    expect_fail(t,
                "[{\"role\": \"user\", \"content\": \"Hi\"},"
                " {\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"a\","
                " \"arguments\": {}}}, {\"function\": {\"name\": \"b\", \"arguments\": {}}}]}]",
                NULL, LLMOS_ERR_INVALID, "This model only supports single tool-calls at once!");
    free(t);
}

/* ---- Llama 3.2 ----------------------------------------------------------------------------- */

static void test_llama32(void **state)
{
    (void)state;
    char *t = load_template("meta-llama-Llama-3.2-3B-Instruct.jinja");
    /* strftime_now("%d %b %Y") on the injected clock: 2025-01-01 00:00:00 UTC */
    jinja_options o = {.now = 1735689600};
    expect_render(t, CONV_TOOLS, TOOLS_WEATHER, true, "<|begin_of_text|>", "<|eot_id|>", NULL, &o,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Environment: ipython\n"
                  "Cutting Knowledge Date: December 2023\n"
                  "Today Date: 01 Jan 2025\n\n" LLAMA_TOOLS_AFTER_DATE);
    o.now = 1700000000; /* 2023-11-14 22:13:20 UTC */
    expect_render(t, CONV_SIMPLE, NULL, false, "<|begin_of_text|>", "<|eot_id|>", NULL, &o,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Cutting Knowledge Date: December 2023\n"
                  "Today Date: 14 Nov 2023\n\n"
                  "You are a helpful assistant.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>");
    /* tools but no user message to carry them */
    expect_fail(t, "[{\"role\": \"system\", \"content\": \"x\"}]", TOOLS_WEATHER, LLMOS_ERR_INVALID,
                "Cannot put tools in the first user message");
    free(t);
}

/* ---- Mistral Nemo -------------------------------------------------------------------------- */

static void test_mistral_nemo(void **state)
{
    (void)state;
    char *t = load_template("mistralai-Mistral-Nemo-Instruct-2407.jinja");
    /* The system message goes into the last user turn; tools just before the last user turn. */
    expect_render(t,
                  "[{\"role\": \"system\", \"content\": \"You are a weather bot.\"},"
                  " {\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
                  " {\"role\": \"assistant\", \"tool_calls\": [{\"id\": \"call12345\", \"type\":"
                  " \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\":"
                  " {\"city\": \"Paris\"}}}]},"
                  " {\"role\": \"tool\", \"tool_call_id\": \"call12345\", \"content\":"
                  " \"{\\\"temp\\\": 22}\"},"
                  " {\"role\": \"assistant\", \"content\": \"It is 22 degrees.\"},"
                  " {\"role\": \"user\", \"content\": \"Thanks!\"}]",
                  TOOLS_WEATHER, true, "<s>", "</s>", NULL, NULL,
                  "<s>[INST]Weather in Paris?[/INST]"
                  "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, "
                  "\"id\": \"call12345\"}]</s>"
                  "[TOOL_RESULTS]{\"content\": {\"temp\": 22}, \"call_id\": \"call12345\"}"
                  "[/TOOL_RESULTS]"
                  "It is 22 degrees.</s>"
                  "[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": {\"name\": "
                  "\"get_weather\", \"description\": \"Get the weather\", \"parameters\": "
                  "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", "
                  "\"description\": \"The city\"}}, \"required\": [\"city\"]}}}]"
                  "[/AVAILABLE_TOOLS]"
                  "[INST]You are a weather bot.\n\nThanks![/INST]");
    expect_render(t, CONV_NOSYS, NULL, false, "<s>", "</s>", NULL, NULL,
                  "<s>[INST]Hello![/INST]Hi there.</s>[INST]What is 2+2?[/INST]");
    expect_fail(t,
                "[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\":"
                " \"b\"}]",
                NULL, LLMOS_ERR_INVALID, "conversation roles must alternate user/assistant");
    expect_fail(t,
                "[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\","
                " \"tool_calls\": [{\"id\": \"short\", \"function\": {\"name\": \"f\","
                " \"arguments\": {}}}]}]",
                NULL, LLMOS_ERR_INVALID,
                "Tool call IDs should be alphanumeric strings with length 9!");
    free(t);
}

/* ---- Phi-3.5 ------------------------------------------------------------------------------- */

static void test_phi35(void **state)
{
    (void)state;
    char *t = load_template("microsoft-Phi-3.5-mini-instruct.jinja");
    expect_render(t, CONV_SIMPLE, NULL, true, "<s>", "<|endoftext|>", NULL, NULL,
                  "<|system|>\nYou are a helpful assistant.<|end|>\n"
                  "<|user|>\nHello!<|end|>\n"
                  "<|assistant|>\nHi there.<|end|>\n"
                  "<|user|>\nWhat is 2+2?<|end|>\n"
                  "<|assistant|>\n");
    /* without a generation prompt the template ends with the eos token; an empty system
     * message is left out */
    expect_render(t,
                  "[{\"role\": \"system\", \"content\": \"\"},"
                  " {\"role\": \"user\", \"content\": \"Hello!\"},"
                  " {\"role\": \"assistant\", \"content\": \"Hi there.\"}]",
                  NULL, false, "<s>", "<|endoftext|>", NULL, NULL,
                  "<|user|>\nHello!<|end|>\n<|assistant|>\nHi there.<|end|>\n<|endoftext|>");
    /* Phi-3.5's template has no tool support: tool definitions and tool results are left out,
     * an assistant message that only calls a tool becomes an empty turn */
    expect_render(t, CONV_TOOLS, TOOLS_WEATHER, true, "<s>", "<|endoftext|>", NULL, NULL,
                  "<|system|>\nYou are a weather bot.<|end|>\n"
                  "<|user|>\nWeather in Paris?<|end|>\n"
                  "<|assistant|>\n<|end|>\n"
                  "<|assistant|>\nIt is 22 degrees.<|end|>\n"
                  "<|user|>\nThanks!<|end|>\n"
                  "<|assistant|>\n");
    free(t);
}

/* ---- Gemma 2 ------------------------------------------------------------------------------- */

static void test_gemma2(void **state)
{
    (void)state;
    char *t = load_template("google-gemma-2-2b-it.jinja");
    expect_render(t, CONV_NOSYS, NULL, true, "<bos>", "<eos>", NULL, NULL,
                  "<bos><start_of_turn>user\nHello!<end_of_turn>\n"
                  "<start_of_turn>model\nHi there.<end_of_turn>\n"
                  "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
                  "<start_of_turn>model\n");
    /* content is trimmed */
    expect_render(t, "[{\"role\": \"user\", \"content\": \"  spaced out \\n\"}]", NULL, false,
                  "<bos>", "<eos>", NULL, NULL,
                  "<bos><start_of_turn>user\nspaced out<end_of_turn>\n");
    /* Gemma has no system role: the template raises, and the message says so */
    expect_fail(t, CONV_SIMPLE, NULL, LLMOS_ERR_INVALID, "System role not supported");
    expect_fail(t, CONV_SIMPLE, NULL, LLMOS_ERR_INVALID,
                "template line 1, column 59: raise_exception: System role not supported");
    expect_fail(t, "[{\"role\": \"assistant\", \"content\": \"a\"}]", NULL, LLMOS_ERR_INVALID,
                "Conversation roles must alternate user/assistant/user/assistant/...");
    /* no tool role either: a tool result breaks the alternation check */
    expect_fail(t,
                "[{\"role\": \"user\", \"content\": \"Weather?\"},"
                " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"function\":"
                " {\"name\": \"get_weather\", \"arguments\": {}}}]},"
                " {\"role\": \"tool\", \"content\": \"22\"}]",
                TOOLS_WEATHER, LLMOS_ERR_INVALID, "Conversation roles must alternate");
    free(t);
}

/* ---- Hermes 3 tool use --------------------------------------------------------------------- */

/* Hermes's system block after the tool list */
#define HERMES_AFTER_TOOLS                                                                         \
    " </tools>"                                                                                    \
    "Use the following pydantic model json schema for each tool call you will make: "              \
    "{\"properties\": {\"name\": {\"title\": \"Name\", \"type\": \"string\"}, \"arguments\": "     \
    "{\"title\": \"Arguments\", \"type\": \"object\"}}, \"required\": [\"name\", "                 \
    "\"arguments\"], \"title\": \"FunctionCall\", \"type\": \"object\"}}\n"                        \
    "For each function call return a json object with function name and arguments within "         \
    "<tool_call></tool_call> XML tags as follows:\n"                                               \
    "<tool_call>\n"                                                                                \
    "{\"name\": <function-name>, \"arguments\": <args-dict>}\n"                                    \
    "</tool_call><|im_end|>\n"

#define HERMES_BEFORE_TOOLS                                                                        \
    "<|begin_of_text|><|im_start|>system\n"                                                        \
    "You are a function calling AI model. You are provided with function signatures within "       \
    "<tools></tools> XML tags. You may call one or more functions to assist with the user "        \
    "query. Don't make assumptions about what values to plug into functions. Here are the "        \
    "available tools: <tools> "

static void test_hermes3_plain(void **state)
{
    (void)state;
    char *t = load_template("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja");
    /* No tools: the tool list is empty (an undefined `tools` iterates as empty); the caller's
     * system message follows the template's own system block. */
    expect_render(t, CONV_SIMPLE, NULL, true, "<|begin_of_text|>", "<|im_end|>", NULL, NULL,
                  HERMES_BEFORE_TOOLS HERMES_AFTER_TOOLS
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\nHello!<|im_end|>\n"
                  "<|im_start|>assistant\nHi there.<|im_end|>\n"
                  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                  "<|im_start|>assistant\n");
    free(t);
}

static void test_hermes3_tools(void **state)
{
    (void)state;
    char *t = load_template("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja");
    /* The macro json_to_python_type turns JSON schema types into Python ones, a list of types
     * into Union[...]; argument lines follow each other without a newline, as the template
     * writes them. */
    const char *tools =
        "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\":"
        " \"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {"
        "\"city\": {\"type\": \"string\", \"description\": \"The city\"},"
        " \"unit\": {\"type\": [\"string\", \"number\"], \"description\": \" Unit \"}},"
        " \"required\": [\"city\"]}}}]";
    const char *conv =
        "[{\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
        " {\"role\": \"assistant\", \"tool_calls\": [{\"type\": \"function\", \"function\": "
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
        "\"celsius\"}}}]},"
        " {\"role\": \"tool\", \"content\": \"{\\\"temp\\\": 22}\"},"
        " {\"role\": \"assistant\", \"content\": \"It is 22 degrees.\"}]";
    expect_render(
        t, conv, tools, true, "<|begin_of_text|>", "<|im_end|>", NULL, NULL,
        HERMES_BEFORE_TOOLS
        "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
        "\"get_weather(city: str, unit: Union[str,float]) - Get the weather\n\n"
        "    Args:\n"
        "        city(str): The city        unit(Union[str,float]): Unit\", "
        "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
        "\"string\", \"description\": \"The city\"}, \"unit\": {\"type\": [\"string\", "
        "\"number\"], \"description\": \" Unit \"}}, \"required\": [\"city\"]}}" HERMES_AFTER_TOOLS
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n"
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
        "\"celsius\"}}\n</tool_call><|im_end|>\n"
        "<|im_start|>tool\n<tool_response>\n{\"temp\": 22}\n</tool_response>\n<|im_end|>"
        "<|im_start|>assistant\nIt is 22 degrees.<|im_end|>\n"
        "<|im_start|>assistant\n");
    free(t);
}

static void test_hermes3_runaway(void **state)
{
    (void)state;
    char *t = load_template("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja");
    /* A "null" type in a union makes the template's macro recurse forever in any Jinja (a
     * string is iterable, so "null" becomes Union of its letters, and so on): the depth limit
     * must stop it with a clear error instead of crashing. */
    const char *tools =
        "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\","
        " \"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\":"
        " [\"string\", \"null\"], \"description\": \"x\"}}}}}]";
    expect_fail(t, "[{\"role\": \"user\", \"content\": \"hi\"}]", tools, LLMOS_ERR_LIMIT,
                "macro calls nested deeper than");
    free(t);
}

/* ---- DeepSeek R1 distill ------------------------------------------------------------------- */

static void test_deepseek_r1(void **state)
{
    (void)state;
    char *t = load_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
    /* The reasoning before </think> is dropped from earlier assistant turns; the generation
     * prompt opens a <think> block. */
    expect_render(t,
                  "[{\"role\": \"system\", \"content\": \"Be brief.\"},"
                  " {\"role\": \"user\", \"content\": \"Hello!\"},"
                  " {\"role\": \"assistant\", \"content\": \"<think>\\nGreet back.\\n</think>\\n\\n"
                  "Hi there.\"},"
                  " {\"role\": \"user\", \"content\": \"What is 2+2?\"}]",
                  NULL, true, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", NULL, NULL,
                  "<｜begin▁of▁sentence｜>Be brief."
                  "<｜User｜>Hello!"
                  "<｜Assistant｜>\n\nHi there.<｜end▁of▁sentence｜>"
                  "<｜User｜>What is 2+2?"
                  "<｜Assistant｜><think>\n");
    /* A tool call (content null, arguments a JSON string the template concatenates) and its
     * result; the answer after tool output is written as is. The template does not print
     * tool definitions, so passing them changes nothing. */
    expect_render(t,
                  "[{\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
                  " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\":"
                  " \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\":"
                  " \"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
                  " {\"role\": \"tool\", \"content\": \"{\\\"temp\\\": 22}\"},"
                  " {\"role\": \"assistant\", \"content\": \"It is 22 degrees.\"},"
                  " {\"role\": \"user\", \"content\": \"Thanks!\"}]",
                  TOOLS_WEATHER, true, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", NULL,
                  NULL,
                  "<｜begin▁of▁sentence｜>"
                  "<｜User｜>Weather in Paris?"
                  "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function"
                  "<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```"
                  "<｜tool▁call▁end｜>"
                  "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{\"temp\": 22}"
                  "<｜tool▁output▁end｜>"
                  "<｜tool▁outputs▁end｜>It is 22 degrees.<｜end▁of▁sentence｜>"
                  "<｜User｜>Thanks!"
                  "<｜Assistant｜><think>\n");
    free(t);
}

/* ---- API ----------------------------------------------------------------------------------- */

static void test_fallback_chatml(void **state)
{
    (void)state;
    const char *name = NULL;
    const char *tmpl = chat_template_for(NULL, &name);
    assert_non_null(tmpl);
    assert_string_equal(name, CHAT_FALLBACK_NAME);
    assert_ptr_equal(chat_template_for("", &name), tmpl);
    assert_string_equal(name, CHAT_FALLBACK_NAME);
    assert_string_equal(chat_template_for("{{ x }}", &name), "{{ x }}");
    assert_string_equal(name, "model");

    expect_render(tmpl, CONV_SIMPLE, NULL, true, "", "", NULL, NULL,
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\nHello!<|im_end|>\n"
                  "<|im_start|>assistant\nHi there.<|im_end|>\n"
                  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                  "<|im_start|>assistant\n");
    expect_render(tmpl, CONV_TOOLS, NULL, false, "", "", NULL, NULL,
                  "<|im_start|>system\nYou are a weather bot.<|im_end|>\n"
                  "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
                  "<|im_start|>assistant\n<tool_call>\n"
                  "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                  "</tool_call><|im_end|>\n"
                  "<|im_start|>tool\n{\"temp\": 22}<|im_end|>\n"
                  "<|im_start|>assistant\nIt is 22 degrees.<|im_end|>\n"
                  "<|im_start|>user\nThanks!<|im_end|>\n");
}

static void test_bad_arguments(void **state)
{
    (void)state;
    llmos_buf out = {0};
    json_t *obj = js("{}"), *arr = js("[]");
    assert_int_equal(chat_render("x", obj, NULL, false, NULL, NULL, NULL, &out), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "messages must be a JSON array"));
    assert_int_equal(chat_render("x", arr, obj, false, NULL, NULL, NULL, &out), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "tools"));
    assert_int_equal(chat_render("x", arr, NULL, false, NULL, NULL, arr, &out), LLMOS_ERR_INVALID);
    assert_int_equal(chat_render(NULL, arr, NULL, false, NULL, NULL, NULL, &out),
                     LLMOS_ERR_INVALID);
    /* tools absent vs. given; bos/eos NULL are empty; named parameters beat extra members */
    json_t *extra = js("{\"bos_token\": \"X\", \"tools\": [1], \"who\": \"me\"}");
    assert_int_equal(chat_render("[{{ bos_token }}|{{ tools is defined }}|{{ who }}|"
                                 "{{ add_generation_prompt }}]",
                                 arr, NULL, true, NULL, NULL, extra, &out),
                     LLMOS_OK);
    assert_string_equal(out.data, "[|False|me|True]");
    buf_free(&out);
    json_decref(extra);
    json_decref(obj);
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen_plain),      cmocka_unit_test(test_qwen_tools),
        cmocka_unit_test(test_llama31_plain),   cmocka_unit_test(test_llama31_tools),
        cmocka_unit_test(test_llama32),         cmocka_unit_test(test_mistral_nemo),
        cmocka_unit_test(test_phi35),           cmocka_unit_test(test_gemma2),
        cmocka_unit_test(test_hermes3_plain),   cmocka_unit_test(test_hermes3_tools),
        cmocka_unit_test(test_hermes3_runaway), cmocka_unit_test(test_deepseek_r1),
        cmocka_unit_test(test_fallback_chatml), cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
