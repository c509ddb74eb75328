/* Tokenizers built from GGUF metadata (tokenizer.ggml.*): SentencePiece-style ("llama": scores, byte
 * fallback, space prefix) and byte-level BPE ("gpt2": ranked merges, byte-to-unicode mapping, a
 * pre-tokenizer split chosen by tokenizer.ggml.pre), special tokens, and a streaming detokenizer that holds
 * partial UTF-8 sequences. A tokenizer is immutable after creation, so one may serve several threads. */
#ifndef SLM_TOKENIZER_H
#define SLM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "slm.h"

typedef struct slm_tokenizer slm_tokenizer;

typedef enum slm_tokenizer_kind {
    SLM_TOKENIZER_SPM = 0, /* tokenizer.ggml.model = "llama" */
    SLM_TOKENIZER_BPE = 1, /* tokenizer.ggml.model = "gpt2" */
} slm_tokenizer_kind;

/* tokenizer.ggml.token_type values (absent array: every token is NORMAL). */
typedef enum slm_token_type {
    SLM_TOKEN_TYPE_NORMAL = 1,
    SLM_TOKEN_TYPE_UNKNOWN = 2,
    SLM_TOKEN_TYPE_CONTROL = 3,
    SLM_TOKEN_TYPE_USER_DEFINED = 4,
    SLM_TOKEN_TYPE_UNUSED = 5,
    SLM_TOKEN_TYPE_BYTE = 6,
} slm_token_type;

/* Builds the tokenizer; copies everything it needs, so g may be closed afterwards. Fails with
 * SLM_ERR_UNSUPPORTED for another tokenizer.ggml.model and SLM_ERR_FORMAT for inconsistent metadata. */
slm_status slm_tokenizer_create(const slm_gguf *g, slm_tokenizer **out, slm_error *err);
void slm_tokenizer_free(slm_tokenizer *t);

/* A growable array of token ids. Zero-initialise, then free with slm_tokens_free. */
typedef struct slm_tokens {
    int32_t *ids;
    int n, cap;
} slm_tokens;
void slm_tokens_free(slm_tokens *v);

/* Appends the ids of text[0..len) to out. add_special: BOS/EOS as the model's add_bos/add_eos flags say.
 * parse_special: text of control tokens ("<|im_start|>") becomes those tokens; without it such text is
 * tokenized as ordinary characters. User-defined tokens are always matched. Any bytes are accepted
 * (invalid UTF-8 included). */
slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len, bool add_special,
                                bool parse_special, slm_tokens *out, slm_error *err);
/* A byte range of a text. */
typedef struct slm_text_span {
    size_t off, len;
} slm_text_span;
/* As slm_tokenizer_encode with parse_special, except inside the spans plain[0..n_plain) (sorted by offset,
 * not overlapping): no control token is matched there, nor one that would reach into a span, so their text
 * is tokenized as with parse_special false. The chat template's markers around a message are matched while
 * the message itself ("<|im_end|>" typed by a user) stays text. Text between special tokens is still
 * tokenized as one stretch across span boundaries, so a text without special-token text in its spans gives
 * exactly the ids of slm_tokenizer_encode with parse_special. */
slm_status slm_tokenizer_encode_spans(const slm_tokenizer *t, const char *text, size_t len, bool add_special,
                                      const slm_text_span *plain, int n_plain, slm_tokens *out, slm_error *err);

int slm_tokenizer_n_vocab(const slm_tokenizer *t);
slm_tokenizer_kind slm_tokenizer_get_kind(const slm_tokenizer *t);
const char *slm_tokenizer_pre(const slm_tokenizer *t); /* the pre-tokenizer in use ("llama-bpe", ...) */
int32_t slm_tokenizer_bos(const slm_tokenizer *t);     /* -1 when the model has none */
int32_t slm_tokenizer_eos(const slm_tokenizer *t);
int32_t slm_tokenizer_eot(const slm_tokenizer *t); /* end of turn (<|eot_id|>, <|im_end|>, ...) or -1 */
int32_t slm_tokenizer_pad(const slm_tokenizer *t);
int32_t slm_tokenizer_unk(const slm_tokenizer *t);
bool slm_tokenizer_add_bos(const slm_tokenizer *t);
bool slm_tokenizer_add_eos(const slm_tokenizer *t);
/* End of generation: EOS, EOT, EOM and the end-of-turn tokens of the supported chat families. */
bool slm_tokenizer_is_eog(const slm_tokenizer *t, int32_t id);
slm_token_type slm_tokenizer_token_type(const slm_tokenizer *t, int32_t id); /* 0 for ids out of range */
/* The vocabulary entry as stored (byte-level BPE text is in its unicode-mapped form); NULL out of range. */
const char *slm_tokenizer_token_text(const slm_tokenizer *t, int32_t id, size_t *len);
/* Id of the vocabulary entry equal to text[0..len), or -1. */
int32_t slm_tokenizer_find(const slm_tokenizer *t, const char *text, size_t len);

/* The bytes a token stands for in decoded text (possibly part of a UTF-8 sequence). Control and
 * user-defined tokens give their text. Writes at most buf_len bytes; returns the piece length, or its
 * negation when buf_len is too small (then nothing is written); 0 for ids out of range. */
int slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, char *buf, int buf_len);

/* Decodes ids into a malloc'd NUL-terminated string (*len bytes, not counting the NUL; may contain any
 * bytes). skip_special drops control tokens. A SentencePiece tokenizer that adds a space prefix removes
 * the one it added at the start and after each special token, so decode(encode(s)) == s. */
slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, int n, bool skip_special, char **out,
                                size_t *len, slm_error *err);

/* Streaming detokenizer: feed tokens (or raw piece bytes) one at a time and get back only complete UTF-8
 * sequences; an incomplete tail is held for the next call. Bytes that can never form valid UTF-8 come out
 * as U+FFFD, so the output is always valid UTF-8. */
typedef struct slm_detok {
    const slm_tokenizer *tok; /* may be NULL when only slm_detok_push_bytes is used */
    unsigned char pend[4];
    int n_pend;
    bool strip_space; /* a SentencePiece leading space still to drop */
    char *buf;        /* output of the last call */
    size_t len, cap;
} slm_detok;

/* strip_leading_space: drop one space at the very start of the stream (SentencePiece text decoded on its
 * own); pass false when the stream continues text already shown. */
void slm_detok_init(slm_detok *d, const slm_tokenizer *tok, bool strip_leading_space);
void slm_detok_free(slm_detok *d);
/* Each returns the text now complete (valid until the next call) and its length in *len; NULL only when
 * out of memory. */
const char *slm_detok_push(slm_detok *d, int32_t id, size_t *len);
const char *slm_detok_push_bytes(slm_detok *d, const char *bytes, size_t n, size_t *len);
/* The held tail at the end of a stream (as U+FFFD when it never completed). */
const char *slm_detok_flush(slm_detok *d, size_t *len);

#endif
