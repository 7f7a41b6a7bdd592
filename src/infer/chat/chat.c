/*
 * chat.c - chat templates: the variables a model's template expects, and the ChatML fallback.
 *
 * A chat template is rendered with the variables Hugging Face's apply_chat_template passes:
 * messages, tools (absent when there are none), add_generation_prompt, bos_token, eos_token,
 * plus whatever extra context the caller gives (date_string, builtin_tools, ...). The
 * interpreter itself is jinja.c.
 */
#include <string.h>

#include "llmos/chat.h"

/* ChatML (<|im_start|>role\ncontent<|im_end|>\n), the format of Qwen, Hermes and many
 * fine-tunes: the least surprising choice for a model that ships no template. Content that is
 * not a string (null for a pure tool call) is written as JSON, and tool calls follow the
 * Hermes/Qwen <tool_call> convention. */
static const char chat_chatml[] =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- elif message.content is not none and message.content is defined %}"
    "{{- message.content | tojson }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- set call = tool_call.function if tool_call.function is defined else tool_call %}"
    "{%- if message.content or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n' + ({'name': call.name, 'arguments': call.arguments} | tojson)"
    " + '\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

const char *chat_template_for(const char *model_template, const char **used_name)
{
    if (model_template && model_template[0]) {
        if (used_name)
            *used_name = "model";
        return model_template;
    }
    if (used_name)
        *used_name = CHAT_FALLBACK_NAME;
    return chat_chatml;
}

llmos_err chat_render_opts(const char *tmpl, const json_t *messages, const json_t *tools,
                           bool add_generation_prompt, const char *bos_token, const char *eos_token,
                           const json_t *extra, const jinja_options *opts, llmos_buf *out)
{
    if (!tmpl || !out)
        return llmos_fail(LLMOS_ERR_INVALID, "chat_render: template and output are required");
    if (!json_is_array(messages))
        return llmos_fail(LLMOS_ERR_INVALID, "chat_render: messages must be a JSON array");
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "chat_render: tools must be a JSON array, null or absent");
    if (extra && !json_is_null(extra) && !json_is_object(extra))
        return llmos_fail(LLMOS_ERR_INVALID, "chat_render: extra context must be a JSON object");

    json_t *ctx = json_object();
    if (!ctx)
        return llmos_fail(LLMOS_ERR_NOMEM, "chat_render: out of memory");
    if (json_is_object(extra) && json_object_update(ctx, (json_t *)extra) != 0)
        goto nomem;
    /* set_new takes ownership; the shared values are borrowed by reference count. */
    if (json_object_set(ctx, "messages", (json_t *)messages) != 0)
        goto nomem;
    if (json_is_array(tools)) {
        if (json_object_set(ctx, "tools", (json_t *)tools) != 0)
            goto nomem;
    } else {
        json_object_del(ctx, "tools"); /* "no tools" wins over an extra member of that name */
    }
    if (json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt)) ||
        json_object_set_new(ctx, "bos_token", json_string(bos_token ? bos_token : "")) ||
        json_object_set_new(ctx, "eos_token", json_string(eos_token ? eos_token : "")))
        goto nomem;

    llmos_err err = jinja_render(tmpl, strlen(tmpl), ctx, opts, out);
    json_decref(ctx);
    return err;
nomem:
    json_decref(ctx);
    return llmos_fail(LLMOS_ERR_NOMEM, "chat_render: out of memory building the context");
}

llmos_err chat_render(const char *tmpl, const json_t *messages, const json_t *tools,
                      bool add_generation_prompt, const char *bos_token, const char *eos_token,
                      const json_t *extra, llmos_buf *out)
{
    return chat_render_opts(tmpl, messages, tools, add_generation_prompt, bos_token, eos_token,
                            extra, NULL, out);
}
