/* Chat templates of the supported families, recognised from the tokenizer.chat_template text (a Jinja
 * program we do not run: each family's format is written out here instead, from its documented layout).
 *
 * The rendered text never contains the BOS token: tokenize it with add_special (the tokenizer adds BOS
 * where the model wants one) and parse_special (so "<|im_start|>" becomes the control token). */
#ifndef SLM_CHAT_H
#define SLM_CHAT_H

#include <stdbool.h>

#include "slm.h"
#include "tokenizer.h"

typedef enum slm_chat_family {
    SLM_CHAT_NONE = 0, /* no template, or one of no supported family */
    SLM_CHAT_CHATML,   /* <|im_start|>role\n...<|im_end|>\n  (Qwen2, SmolLM2, ...) */
    SLM_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    SLM_CHAT_PHI3,     /* <|role|>\n...<|end|>\n  (Phi-3, Phi-3.5, Phi-4-mini) */
    SLM_CHAT_PHI4,     /* <|im_start|>role<|im_sep|>...<|im_end|>  (Phi-4) */
    SLM_CHAT_GEMMA,    /* <start_of_turn>user\n...<end_of_turn>\n, assistant is "model" */
} slm_chat_family;

/* The public message (include/slm.h) under its internal name. */
typedef slm_chat_message slm_chat_msg;

typedef struct slm_chat_template {
    slm_chat_family family;
    bool from_vocab; /* the file has no template: the family was chosen from the vocabulary */
    /* The system message the template inserts when the conversation has none (ChatML templates of Qwen2
     * and SmolLM2 carry one), or NULL. */
    char *default_system;
} slm_chat_template;

const char *slm_chat_family_name(slm_chat_family f); /* "chatml", "llama3", ... "none" */
/* The family of a template text; SLM_CHAT_NONE for NULL or an unknown template. */
slm_chat_family slm_chat_detect(const char *tmpl);
/* The family whose turn markers vocab holds as special (control or user-defined) tokens, for a file without
 * tokenizer.chat_template: <|im_sep|> Phi-4, <|start_header_id|> Llama 3, <start_of_turn> + <end_of_turn>
 * Gemma, <|user|> + <|end|> Phi-3, <|im_start|> + <|im_end|> ChatML (most specific first: Phi-4 has
 * <|im_start|> too). SLM_CHAT_NONE when none fits or vocab is NULL. */
slm_chat_family slm_chat_detect_vocab(const slm_tokenizer *vocab);
/* Family and default system prompt of a template text. tmpl NULL (the model has none): the family the
 * vocabulary's special tokens imply (slm_chat_detect_vocab); rendering a layout whose markers the model
 * does not have would feed it text it was never trained on, so when none fits this fails with
 * SLM_ERR_UNSUPPORTED. An unrecognised template fails likewise. vocab may be NULL when tmpl is not. */
slm_status slm_chat_template_init(const char *tmpl, const slm_tokenizer *vocab, slm_chat_template *out, slm_error *err);
void slm_chat_template_free(slm_chat_template *t);

/* Renders msgs[0..n) into a malloc'd NUL-terminated string; add_generation_prompt appends the header
 * that opens the assistant's turn. Roles other than system/user/assistant fail with SLM_ERR_INVALID_ARG. */
slm_status slm_chat_render(const slm_chat_template *t, const slm_chat_msg *msgs, int n, bool add_generation_prompt,
                           char **out, slm_error *err);

/* The same, and where each message's content lies in the text: (*spans)[0..*n_spans), in order, malloc'd
 * (NULL when there are none; free it). Empty contents have no span. The template's own text (markers, roles,
 * a default system message) is outside every span. */
slm_status slm_chat_render_spans(const slm_chat_template *t, const slm_chat_msg *msgs, int n,
                                 bool add_generation_prompt, char **out, slm_text_span **spans, int *n_spans,
                                 slm_error *err);

/* For `slm run --chat`: one user prompt (with an optional system prompt, NULL for none) in the template
 * tmpl (the model's tokenizer.chat_template, may be NULL: then chosen from vocab), with the generation
 * prompt. */
slm_status slm_chat_format_single(const char *tmpl, const slm_tokenizer *vocab, const char *system, const char *prompt,
                                  char **out, slm_error *err);

#endif
