/* Chat templates: family detection from real template texts and the exact rendering of each family,
 * written out by hand from the families' documented prompt formats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "test_util.h"

/* Template texts as the models' GGUF files carry them (abridged where the rest does not matter). */
static const char SMOLLM2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' "
    "+ message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";
static const char QWEN25_ESCAPED[] =  /* a template that writes its newlines as the escape \n */
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
    "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
    "helpful assistant.<|im_end|>\\n' }}{%- endif %}";
static const char CHATML_PLAIN[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
static const char LLAMA3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
static const char PHI3[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + "
    "message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') "
    "%}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}";
static const char PHI4[] =
    "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' + "
    "message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + "
    "message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}";
static const char GEMMA[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + "
    "message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{'<start_of_turn>model\n'}}{% endif %}";

static void expect(const char *tmpl, const slm_chat_msg *msgs, int n, bool gen, const char *want, const char *what) {
    slm_chat_template t;
    slm_error err = {{0}};
    slm_status s = slm_chat_template_init(tmpl, &t, &err);
    CHECK(s == SLM_OK, "%s: init: %s", what, err.msg);
    if (s) return;
    char *out = NULL;
    s = slm_chat_apply(&t, msgs, n, gen, &out, &err);
    CHECK(s == SLM_OK, "%s: apply: %s", what, err.msg);
    CHECK(out && !strcmp(out, want), "%s:\n--- got ---\n%s\n--- want ---\n%s", what, out ? out : "(null)", want);
    free(out);
    slm_chat_template_free(&t);
}

int main(void) {
    CHECK(slm_chat_detect(SMOLLM2) == SLM_CHAT_CHATML, "smollm2");
    CHECK(slm_chat_detect(QWEN25_ESCAPED) == SLM_CHAT_CHATML, "qwen2.5");
    CHECK(slm_chat_detect(LLAMA3) == SLM_CHAT_LLAMA3, "llama3");
    CHECK(slm_chat_detect(PHI3) == SLM_CHAT_PHI3, "phi3");
    CHECK(slm_chat_detect(PHI4) == SLM_CHAT_PHI4, "phi4");
    CHECK(slm_chat_detect(GEMMA) == SLM_CHAT_GEMMA, "gemma");
    CHECK(slm_chat_detect("{{ messages }}") == SLM_CHAT_NONE, "unknown");
    CHECK(slm_chat_detect(NULL) == SLM_CHAT_NONE, "null");
    CHECK(!strcmp(slm_chat_family_name(SLM_CHAT_GEMMA), "gemma"), "name");

    slm_chat_template t;
    slm_error err = {{0}};
    CHECK(slm_chat_template_init("{{ messages }}", &t, &err) == SLM_ERR_UNSUPPORTED && err.msg[0],
          "an unknown template is refused with a message");
    CHECK(slm_chat_template_init(QWEN25_ESCAPED, &t, &err) == SLM_OK && t.default_system &&
              !strcmp(t.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
          "default system prompt from an escaped template: %s", t.default_system ? t.default_system : "(none)");
    slm_chat_template_free(&t);

    const slm_chat_msg conv[] = {
        {"user", "Hi!"},
        {"assistant", "Hello. How can I help?"},
        {"user", "What is 2+2?"},
    };
    const slm_chat_msg with_sys[] = {
        {"system", "Be brief."},
        {"user", "Hi!"},
    };

    /* ChatML with the template's own default system message (SmolLM2) */
    expect(SMOLLM2, conv, 3, true,
           "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
           "<|im_start|>user\nHi!<|im_end|>\n"
           "<|im_start|>assistant\nHello. How can I help?<|im_end|>\n"
           "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
           "<|im_start|>assistant\n",
           "smollm2 conversation");
    expect(SMOLLM2, with_sys, 2, true,
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
           "smollm2 with a system message (replaces the default)");
    expect(CHATML_PLAIN, conv, 1, false, "<|im_start|>user\nHi!<|im_end|>\n", "chatml, no generation prompt");
    expect(NULL, conv, 1, true, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
           "no template: ChatML without a default system");

    /* Llama 3: contents trimmed, no BOS text (the tokenizer adds <|begin_of_text|>) */
    const slm_chat_msg padded[] = {{"system", "  Be brief.\n"}, {"user", "\nHi! "}};
    expect(LLAMA3, padded, 2, true,
           "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n",
           "llama3");
    expect(LLAMA3, conv, 2, false,
           "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello. How can I help?<|eot_id|>",
           "llama3 without generation prompt");

    /* Phi-3 */
    expect(PHI3, conv, 3, true,
           "<|user|>\nHi!<|end|>\n<|assistant|>\nHello. How can I help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n"
           "<|assistant|>\n",
           "phi3");
    expect(PHI3, with_sys, 2, true, "<|system|>\nBe brief.<|end|>\n<|user|>\nHi!<|end|>\n<|assistant|>\n",
           "phi3 with system");

    /* Phi-4 */
    expect(PHI4, with_sys, 2, true,
           "<|im_start|>system<|im_sep|>Be brief.<|im_end|><|im_start|>user<|im_sep|>Hi!<|im_end|>"
           "<|im_start|>assistant<|im_sep|>",
           "phi4");

    /* Gemma: assistant is "model", the system text opens the first user turn */
    expect(GEMMA, conv, 3, true,
           "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\nHello. How can I help?<end_of_turn>\n"
           "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
           "gemma");
    expect(GEMMA, with_sys, 2, true,
           "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\n", "gemma with system");

    /* bad roles are refused */
    const slm_chat_msg bad[] = {{"tool", "x"}};
    char *out = NULL;
    CHECK(slm_chat_template_init(CHATML_PLAIN, &t, &err) == SLM_OK, "init");
    CHECK(slm_chat_apply(&t, bad, 1, true, &out, &err) == SLM_ERR_INVALID_ARG && !out, "role 'tool' refused");
    slm_chat_template_free(&t);

    /* the helper behind `slm run --chat` */
    CHECK(slm_chat_format_single(SMOLLM2, "Be brief.", "Hi!", &out, &err) == SLM_OK, "single: %s", err.msg);
    CHECK(out && !strcmp(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
                              "<|im_start|>assistant\n"),
          "single with system: %s", out ? out : "(null)");
    free(out);
    CHECK(slm_chat_format_single(LLAMA3, NULL, "Hi!", &out, &err) == SLM_OK, "single llama3");
    CHECK(out && !strcmp(out, "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\n"),
          "single llama3: %s", out ? out : "(null)");
    free(out);
    CHECK(slm_chat_format_single("{{ messages }}", NULL, "Hi!", &out, &err) == SLM_ERR_UNSUPPORTED, "unknown");
    return slm_test_finish("test_chat");
}
