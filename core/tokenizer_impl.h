/* What the tokenizer's parts share (core/tokenizer.c: vocabulary, special tokens and the encode driver;
 * tokenizer_spm.c, tokenizer_bpe.c: the two merge algorithms; tokenizer_pre.c: normalization and the
 * pre-tokenizer's regex split; detokenizer.c: pieces, decoding and the streaming detokenizer): the
 * tokenizer's fields, the scratch memory of one encode call with the merge queue both merge loops use, and
 * each part's entry points. Only those files include it. */
#ifndef SLM_TOKENIZER_IMPL_H
#define SLM_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

#define SLM_TOK_MAX_PASSES 3
#define SLM_TOK_MAX_EOG 16

struct slm_tokenizer {
    slm_tokenizer_kind kind;
    char pre[32];
    int n_vocab;
    char *text_pool;                                       /* every token's text, back to back */
    char *piece_pool;                                      /* every token's decoded bytes */
    uint32_t *text_off, *text_len, *piece_off, *piece_len; /* [n_vocab] */
    uint8_t *type;                                         /* [n_vocab] slm_token_type */
    float *score;                                          /* [n_vocab] SentencePiece scores (0 when absent) */
    int32_t *tab;                                          /* text -> id, open addressing, -1 empty */
    uint64_t tab_mask;
    /* BPE merges: (left id, right id) -> (rank, merged id), open addressing on the pair key */
    uint64_t *merge_key; /* ((uint64)left << 32 | right) + 1; 0 empty */
    int32_t *merge_rank, *merge_res;
    uint64_t merge_mask;
    int32_t byte_tok[256]; /* BPE: token of each byte's mapped code point; SPM: <0xNN>; -1 when absent */
    int16_t cp_byte[324];  /* BPE: mapped code point -> byte, -1 when not a mapped byte */
    uint16_t byte_cp[256]; /* BPE: byte -> mapped code point */
    bool ignore_merges;    /* a chunk that is itself a vocabulary entry is emitted whole (Llama 3) */
    bool nfc;              /* the text is put in Unicode normal form C first (Qwen2) */
    pcre2_code *re[SLM_TOK_MAX_PASSES];
    int n_re;
    int32_t *special; /* control, unknown and user-defined ids, by first byte then longest first */
    int n_special;
    int special_first[257]; /* special[special_first[b] .. special_first[b+1]) start with byte b */
    int max_special_len;
    int32_t bos, eos, eot, eom, pad, unk;
    bool add_bos, add_eos, add_space_prefix;
    int32_t eog[SLM_TOK_MAX_EOG];
    int n_eog;
};

typedef struct slm_tok_sym {
    int prev, next; /* -1 at the ends */
    int start, len; /* bytes of the working text */
    int32_t id;     /* BPE: current token; SPM: unused until the end */
} slm_tok_sym;

typedef struct slm_tok_cand {
    double prio; /* higher first: the SPM score, or minus the BPE rank */
    int pos;     /* start of the left symbol: equal priorities merge leftmost first */
    int left, right;
    int32_t a, b; /* BPE: the ids the pair had; SPM: the lengths it had (to detect stale entries) */
    int32_t res;
} slm_tok_cand;

/* Scratch memory of one encode call, grown as needed. */
typedef struct slm_tok_work {
    slm_tok_sym *syms;
    size_t syms_cap;
    slm_tok_cand *heap;
    size_t heap_n, heap_cap;
    char *text;
    size_t text_cap;
    char *norm; /* NFC output */
    size_t norm_cap;
    pcre2_match_data *md;
    int regex_rc; /* a PCRE2 matching error (not "no match"), 0 when none */
    bool oom;
} slm_tok_work;

/* Common (tokenizer.c) */
bool slm_tok_push(slm_tokens *v, int32_t id); /* false when out of memory */
/* Grows *p (of *cap elements of elem bytes) to hold want elements; false when out of memory. */
bool slm_tok_grow(void **p, size_t *cap, size_t want, size_t elem);
/* The merge queue: the best candidate first (highest priority, then leftmost); sets w->oom on failure. */
void slm_tok_heap_push(slm_tok_work *w, const slm_tok_cand *c);
slm_tok_cand slm_tok_heap_pop(slm_tok_work *w);
uint64_t slm_tok_table_size(uint64_t n); /* open-addressing table size for n entries (a power of two) */
/* The array of strings under key, or *out NULL when absent; SLM_ERR_FORMAT when it is of another type. */
slm_status slm_tok_str_array(const slm_gguf *g, const char *key, const slm_gguf_kv **out, slm_error *err);

/* SentencePiece (tokenizer_spm.c) */
void slm_tok_spm_init(slm_tokenizer *t); /* the <0xNN> byte-fallback tokens */
/* One fragment of raw text; prefix: start it with "▁". */
bool slm_tok_spm_encode(const slm_tokenizer *t, slm_tok_work *w, const char *text, size_t len, bool prefix,
                        slm_tokens *out);

/* Byte-level BPE (tokenizer_bpe.c) */
slm_status slm_tok_bpe_init(slm_tokenizer *t, const slm_gguf *g, slm_error *err); /* merges, byte mapping */
bool slm_tok_bpe_encode(const slm_tokenizer *t, slm_tok_work *w, const char *text, size_t len, slm_tokens *out);

/* Pre-tokenizer (tokenizer_pre.c) */
slm_status slm_tok_pre_init(slm_tokenizer *t, const slm_gguf *g, slm_error *err); /* tokenizer.ggml.pre */
/* Normalizes (when the family does) and splits text into chunks, each encoded by slm_tok_bpe_encode. */
bool slm_tok_pre_encode(const slm_tokenizer *t, slm_tok_work *w, const char *text, size_t len, slm_tokens *out);

/* Detokenizer (detokenizer.c) */
slm_status slm_tok_make_pieces(slm_tokenizer *t, slm_error *err); /* every token's decoded bytes */

#endif
