/*
 * test_chat_families.c - the chat templates of Qwen3 and Gemma 3, as the models publish them,
 * rendered exactly by llmos's Jinja renderer.
 *
 * The templates below are the tokenizer.chat_template strings of Qwen/Qwen3-0.6B and
 * google/gemma-3-1b-it (tokenizer_config.json), copied unchanged; they belong to their
 * publishers. Each expected text was worked out from the template by hand and checked
 * against the reference renderer the models' own library uses (Python jinja2 3.1, sandboxed,
 * trim_blocks and lstrip_blocks, tojson as json.dumps). What they exercise: Qwen3's thinking
 * blocks (kept for the turn after the last user query, stripped from earlier ones, the empty
 * block that enable_thinking=false writes), its tools block and <tool_call>/<tool_response>
 * framing; Gemma 3's system prompt folded into the first user turn, the "model" role, trimmed
 * content, multimodal parts and the alternation check. Gemma 2 and Phi-3.5 are in
 * test_chat.c with the other families of the shared test data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/chat.h"
#include "llmos/json.h"
#include "llmos/toolcall.h"
#include "testutil.h"

static const char QWEN3_TEMPLATE_1[] =
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- messages[0].content + '\\n\\n' }}\n"
    "    {%- endif %}\n"
    "    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
    "{%- for message in messages[::-1] %}\n"
    "    {%- set index = (messages|length - 1) - loop.index0 %}\n"
    "    {%- if ns.multi_step_tool and message.role == \"user\" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}\n"
    "        {%- set ns.multi_step_tool = false %}\n"
    "        {%- set ns.last_query_index = index %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";
/* (in two halves: ISO C bounds a string literal at 4095 bytes) */
static const char QWEN3_TEMPLATE_2[] =
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {%- set content = message.content %}\n"
    "        {%- set reasoning_content = '' %}\n"
    "        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}\n"
    "            {%- set reasoning_content = message.reasoning_content %}\n"
    "        {%- else %}\n"
    "            {%- if '</think>' in message.content %}\n"
    "                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
    "                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}\n"
    "            {%- endif %}\n"
    "        {%- endif %}\n"
    "        {%- if loop.index0 > ns.last_query_index %}\n"
    "            {%- if loop.last or (not loop.last and reasoning_content) %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}\n"
    "            {%- else %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "            {%- endif %}\n"
    "        {%- else %}\n"
    "            {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "        {%- endif %}\n"
    "        {%- if message.tool_calls %}\n"
    "            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if (loop.first and content) or (not loop.first) %}\n"
    "                    {{- '\\n' }}\n"
    "                {%- endif %}\n"
    "                {%- if tool_call.function %}\n"
    "                    {%- set tool_call = tool_call.function %}\n"
    "                {%- endif %}\n"
    "                {{- '<tool_call>\\n{\"name\": \"' }}\n"
    "                {{- tool_call.name }}\n"
    "                {{- '\", \"arguments\": ' }}\n"
    "                {%- if tool_call.arguments is string %}\n"
    "                    {{- tool_call.arguments }}\n"
    "                {%- else %}\n"
    "                    {{- tool_call.arguments | tojson }}\n"
    "                {%- endif %}\n"
    "                {{- '}\\n</tool_call>' }}\n"
    "            {%- endfor %}\n"
    "        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}";

static const char GEMMA3_TEMPLATE[] =
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n";

static char QWEN3_TEMPLATE[sizeof QWEN3_TEMPLATE_1 + sizeof QWEN3_TEMPLATE_2];

static int join_qwen3(void **state)
{
    (void)state;
    snprintf(QWEN3_TEMPLATE, sizeof QWEN3_TEMPLATE, "%s%s", QWEN3_TEMPLATE_1, QWEN3_TEMPLATE_2);
    return 0;
}

static json_t *js(const char *text)
{
    json_t *v = NULL;
    if (ljson_parse_text(text, strlen(text), "test JSON", 0, &v) != LLMOS_OK)
        fail_msg("bad test JSON: %s", llmos_errmsg());
    return v;
}

static void expect_render(const char *tmpl, const char *messages, const char *tools, bool gen,
                          const char *extra, const char *want)
{
    json_t *m = js(messages), *t = tools ? js(tools) : NULL, *x = extra ? js(extra) : NULL;
    llmos_buf out = {0};
    llmos_err err = chat_render(tmpl, m, t, gen, "<bos>", "<eos>", x, &out);
    if (err != LLMOS_OK)
        fail_msg("render failed: %s", llmos_errmsg());
    if (strcmp(out.data, want) != 0) {
        size_t i = 0;
        while (out.data[i] && out.data[i] == want[i])
            i++;
        fail_msg("first difference at byte %zu\n--- got:\n%s\n--- want:\n%s", i, out.data, want);
    }
    buf_free(&out);
    json_decref(m);
    json_decref(t);
    json_decref(x);
}

#define QWEN3_CONV                                                                                 \
    "[{\"role\": \"system\", \"content\": \"You are terse.\"},"                                    \
    " {\"role\": \"user\", \"content\": \"2+2?\"},"                                                \
    " {\"role\": \"assistant\", \"content\": \"<think>\\nadd them\\n</think>\\n\\n4\"},"           \
    " {\"role\": \"user\", \"content\": \"And 3+3?\"}]"

#define QWEN3_HISTORY                                                                              \
    "<|im_start|>system\nYou are terse.<|im_end|>\n"                                               \
    "<|im_start|>user\n2+2?<|im_end|>\n"                                                           \
    "<|im_start|>assistant\n4<|im_end|>\n"                                                         \
    "<|im_start|>user\nAnd 3+3?<|im_end|>\n"                                                       \
    "<|im_start|>assistant\n"

static void qwen3_thinking(void **state)
{
    (void)state;
    /* the earlier answer's reasoning is dropped: it came before the last user query */
    expect_render(QWEN3_TEMPLATE, QWEN3_CONV, NULL, true, NULL, QWEN3_HISTORY);
    /* enable_thinking=false: an empty thinking block opens the answer */
    expect_render(QWEN3_TEMPLATE, QWEN3_CONV, NULL, true, "{\"enable_thinking\": false}",
                  QWEN3_HISTORY "<think>\n\n</think>\n\n");
    /* the last answer, after the last query, keeps its reasoning */
    expect_render(QWEN3_TEMPLATE,
                  "[{\"role\": \"user\", \"content\": \"2+2?\"},"
                  " {\"role\": \"assistant\", \"content\": \"<think>\\nadd them\\n</think>\\n\\n4\"}]",
                  NULL, false, NULL,
                  "<|im_start|>user\n2+2?<|im_end|>\n"
                  "<|im_start|>assistant\n<think>\nadd them\n</think>\n\n4<|im_end|>\n");
}

static void qwen3_tools(void **state)
{
    (void)state;
    expect_render(
        QWEN3_TEMPLATE,
        "[{\"role\": \"system\", \"content\": \"Be brief.\"},"
        " {\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
        " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\","
        " \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]},"
        " {\"role\": \"tool\", \"content\": \"22 C\"}]",
        "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\":"
        " \"Weather of a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\":"
        " {\"type\": \"string\"}}, \"required\": [\"city\"]}}}]",
        true, NULL,
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist "
        "with the user query.\n\nYou are provided with function signatures within <tools></tools> "
        "XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
        "\"description\": \"Weather of a city\", \"parameters\": {\"type\": \"object\", "
        "\"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
        "</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
        "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
        "{\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n22 C\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n");

    /* what Qwen3 writes back: reasoning, then a call in the Hermes format the template shows */
    const char *reply = "<think>\nThe user wants the weather.\n</think>\n\n<tool_call>\n"
                        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                        "</tool_call>";
    toolcall_result r = {0};
    assert_int_equal(toolcall_parse(TOOLCALL_HERMES, reply, strlen(reply), &r), LLMOS_OK);
    assert_int_equal(r.n_calls, 1);
    assert_string_equal(r.calls[0].name, "get_weather");
    assert_string_equal(r.calls[0].arguments, "{\"city\":\"Paris\"}");
    toolcall_result_free(&r);
}

static void gemma3_turns(void **state)
{
    (void)state;
    /* the system prompt opens the first user turn; "assistant" is "model"; content trimmed */
    expect_render(GEMMA3_TEMPLATE,
                  "[{\"role\": \"system\", \"content\": \"Answer in French.\"},"
                  " {\"role\": \"user\", \"content\": \" Hello! \"},"
                  " {\"role\": \"assistant\", \"content\": \"Bonjour.\"},"
                  " {\"role\": \"user\", \"content\": \"2+2?\"}]",
                  NULL, true, NULL,
                  "<bos><start_of_turn>user\nAnswer in French.\n\nHello!<end_of_turn>\n"
                  "<start_of_turn>model\nBonjour.<end_of_turn>\n"
                  "<start_of_turn>user\n2+2?<end_of_turn>\n"
                  "<start_of_turn>model\n");
    /* content parts: text trimmed, an image part as its marker */
    expect_render(GEMMA3_TEMPLATE,
                  "[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Describe \"},"
                  " {\"type\": \"image\"}, {\"type\": \"text\", \"text\": \" this.\"}]}]",
                  NULL, false, NULL,
                  "<bos><start_of_turn>user\nDescribe<start_of_image>this.<end_of_turn>\n");
    /* two user turns in a row break the alternation the template checks */
    json_t *m = js("[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]");
    llmos_buf out = {0};
    assert_int_equal(chat_render(GEMMA3_TEMPLATE, m, NULL, true, "<bos>", "<eos>", NULL, &out),
                     LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "Conversation roles must alternate"));
    buf_free(&out);
    json_decref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(qwen3_thinking),
        cmocka_unit_test(qwen3_tools),
        cmocka_unit_test(gemma3_turns),
    };
    return cmocka_run_group_tests(tests, join_qwen3, NULL);
}
