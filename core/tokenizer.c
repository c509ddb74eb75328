/* Tokenizers from GGUF metadata: the vocabulary (text -> id table, token types, scores), special tokens,
 * the family defaults (BOS, space prefix, end-of-generation tokens), and the encode driver. The work is in
 * the parts: tokenizer_spm.c (SentencePiece, "llama"), tokenizer_bpe.c (byte-level BPE, "gpt2"),
 * tokenizer_pre.c (BPE's normalization and regex split) and detokenizer.c (from ids back to text).
 *
 * Special tokens are cut out of the text first: user-defined tokens always, control tokens only when the
 * caller asks (parse_special), longest match at the leftmost position. Each stretch of text between them
 * is tokenized on its own (SentencePiece gives each its own "▁" prefix). */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ---------------------------------------------------------------------------------------------------- */
/* Vocabulary lookup */

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int32_t slm_tokenizer_find(const slm_tokenizer *t, const char *text, size_t len) {
    for (uint64_t i = hash_bytes(text, len) & t->tab_mask;; i = (i + 1) & t->tab_mask) {
        int32_t id = t->tab[i];
        if (id < 0) return -1;
        if (t->text_len[id] == len && !memcmp(t->text_pool + t->text_off[id], text, len)) return id;
    }
}

uint64_t slm_tok_table_size(uint64_t n) {
    uint64_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Creation */

slm_status slm_tok_str_array(const slm_gguf *g, const char *key, const slm_gguf_kv **out, slm_error *err) {
    const slm_gguf_kv *kv = slm_gguf_find(g, key);
    *out = NULL;
    if (!kv) return SLM_OK;
    if (kv->type != SLM_GGUF_ARRAY || kv->arr_type != SLM_GGUF_STRING)
        return slm_fail(err, SLM_ERR_FORMAT, "%s: %s is not an array of strings", g->path, key);
    *out = kv;
    return SLM_OK;
}

static int32_t get_id(const slm_gguf *g, const char *key, int n_vocab) {
    int64_t v;
    if (!slm_gguf_get_i64(g, key, &v) || v < 0 || v >= n_vocab) return -1;
    return (int32_t)v;
}

static bool get_flag(const slm_gguf *g, const char *key, bool def) {
    bool b;
    return slm_gguf_get_bool(g, key, &b) ? b : def;
}

static void add_eog(slm_tokenizer *t, int32_t id) {
    if (id < 0 || t->n_eog == SLM_TOK_MAX_EOG) return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    t->eog[t->n_eog++] = id;
}

static int32_t find_control(const slm_tokenizer *t, const char *text) {
    int32_t id = slm_tokenizer_find(t, text, strlen(text));
    return id >= 0 && (t->type[id] == SLM_TOKEN_TYPE_CONTROL || t->type[id] == SLM_TOKEN_TYPE_USER_DEFINED) ? id : -1;
}

static slm_status load_vocab(slm_tokenizer *t, const slm_gguf *g, slm_error *err) {
    const slm_gguf_kv *tokens;
    slm_status s = slm_tok_str_array(g, "tokenizer.ggml.tokens", &tokens, err);
    if (s) return s;
    if (!tokens) return slm_fail(err, SLM_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing", g->path);
    if (tokens->arr_len == 0 || tokens->arr_len > (1u << 24))
        return slm_fail(err, SLM_ERR_FORMAT, "%s: vocabulary of %llu tokens is out of range", g->path,
                        (unsigned long long)tokens->arr_len);
    int n = t->n_vocab = (int)tokens->arr_len;
    const slm_gguf_kv *types = slm_gguf_find(g, "tokenizer.ggml.token_type");
    const slm_gguf_kv *scores = slm_gguf_find(g, "tokenizer.ggml.scores");
    if (types && (types->type != SLM_GGUF_ARRAY || types->arr_len != (uint64_t)n))
        return slm_fail(err, SLM_ERR_FORMAT, "%s: tokenizer.ggml.token_type does not have %d entries", g->path, n);
    if (scores && (scores->type != SLM_GGUF_ARRAY || scores->arr_len != (uint64_t)n))
        return slm_fail(err, SLM_ERR_FORMAT, "%s: tokenizer.ggml.scores does not have %d entries", g->path, n);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        slm_gguf_str str;
        if (!slm_gguf_arr_str(tokens, (uint64_t)i, &str))
            return slm_fail(err, SLM_ERR_FORMAT, "%s: token %d is unreadable", g->path, i);
        if (str.len > 65536)
            return slm_fail(err, SLM_ERR_FORMAT, "%s: token %d is %llu bytes long", g->path, i,
                            (unsigned long long)str.len);
        total += (size_t)str.len;
    }
    t->text_pool = malloc(total + 1);
    t->text_off = malloc((size_t)n * sizeof *t->text_off);
    t->text_len = malloc((size_t)n * sizeof *t->text_len);
    t->type = malloc((size_t)n);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->tab_mask = slm_tok_table_size((uint64_t)n) - 1;
    t->tab = malloc((size_t)(t->tab_mask + 1) * sizeof *t->tab);
    if (!t->text_pool || !t->text_off || !t->text_len || !t->type || !t->score || !t->tab)
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory for a vocabulary of %d tokens", n);
    memset(t->tab, 0xff, (size_t)(t->tab_mask + 1) * sizeof *t->tab);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        slm_gguf_str str;
        slm_gguf_arr_str(tokens, (uint64_t)i, &str);
        memcpy(t->text_pool + off, str.ptr, (size_t)str.len);
        t->text_off[i] = (uint32_t)off;
        t->text_len[i] = (uint32_t)str.len;
        off += (size_t)str.len;
        int64_t ty = SLM_TOKEN_TYPE_NORMAL;
        if (types && (!slm_gguf_arr_i64(types, (uint64_t)i, &ty) || ty < 0 || ty > 6))
            return slm_fail(err, SLM_ERR_FORMAT, "%s: token %d has a bad token type", g->path, i);
        t->type[i] = (uint8_t)(ty == 0 ? SLM_TOKEN_TYPE_NORMAL : ty);
        if (scores && !slm_gguf_arr_f32(scores, (uint64_t)i, &t->score[i]))
            return slm_fail(err, SLM_ERR_FORMAT, "%s: score of token %d is unreadable", g->path, i);
        /* insert; on duplicates the first id wins, as a dictionary built in order with setdefault would */
        if (slm_tokenizer_find(t, str.ptr, (size_t)str.len) >= 0) continue;
        uint64_t h = hash_bytes(str.ptr, (size_t)str.len) & t->tab_mask;
        while (t->tab[h] >= 0) h = (h + 1) & t->tab_mask;
        t->tab[h] = i;
    }
    return SLM_OK;
}

static int special_cmp(const void *pa, const void *pb, void *ctx) {
    const slm_tokenizer *t = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    unsigned char fa = (unsigned char)t->text_pool[t->text_off[a]], fb = (unsigned char)t->text_pool[t->text_off[b]];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (t->text_len[a] != t->text_len[b]) return t->text_len[a] > t->text_len[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

static slm_status make_specials(slm_tokenizer *t, slm_error *err) {
    int n = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        int ty = t->type[i];
        if (t->text_len[i] &&
            (ty == SLM_TOKEN_TYPE_CONTROL || ty == SLM_TOKEN_TYPE_USER_DEFINED || ty == SLM_TOKEN_TYPE_UNKNOWN))
            n++;
    }
    t->special = malloc((size_t)(n ? n : 1) * sizeof *t->special);
    if (!t->special) return slm_fail(err, SLM_ERR_NOMEM, "out of memory for special tokens");
    n = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        int ty = t->type[i];
        if (t->text_len[i] &&
            (ty == SLM_TOKEN_TYPE_CONTROL || ty == SLM_TOKEN_TYPE_USER_DEFINED || ty == SLM_TOKEN_TYPE_UNKNOWN)) {
            t->special[n++] = i;
            if ((int)t->text_len[i] > t->max_special_len) t->max_special_len = (int)t->text_len[i];
        }
    }
    t->n_special = n;
    qsort_r(t->special, (size_t)n, sizeof *t->special, special_cmp, t);
    int k = 0;
    for (int b = 0; b < 256; b++) {
        t->special_first[b] = k;
        while (k < n && (unsigned char)t->text_pool[t->text_off[t->special[k]]] == b) k++;
    }
    t->special_first[256] = n;
    return SLM_OK;
}

slm_status slm_tokenizer_create(const slm_gguf *g, slm_tokenizer **out, slm_error *err) {
    *out = NULL;
    slm_gguf_str model;
    if (!slm_gguf_get_str(g, "tokenizer.ggml.model", &model))
        return slm_fail(err, SLM_ERR_FORMAT, "%s: tokenizer.ggml.model is missing", g->path);
    slm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return slm_fail(err, SLM_ERR_NOMEM, "out of memory for a tokenizer");
    slm_status s = SLM_OK;
    if (slm_gguf_str_eq(model, "llama")) t->kind = SLM_TOKENIZER_SPM;
    else if (slm_gguf_str_eq(model, "gpt2")) t->kind = SLM_TOKENIZER_BPE;
    else {
        s = slm_fail(err, SLM_ERR_UNSUPPORTED, "%s: tokenizer model '%.*s' is not supported (llama, gpt2 are)", g->path,
                     (int)(model.len < 40 ? model.len : 40), model.ptr);
        goto fail;
    }
    if ((s = load_vocab(t, g, err))) goto fail;
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    if (t->kind == SLM_TOKENIZER_BPE) {
        if ((s = slm_tok_bpe_init(t, g, err))) goto fail;
        if ((s = slm_tok_pre_init(t, g, err))) goto fail;
    } else {
        snprintf(t->pre, sizeof t->pre, "spm");
        slm_tok_spm_init(t);
    }
    if ((s = slm_tok_make_pieces(t, err))) goto fail;
    if ((s = make_specials(t, err))) goto fail;

    int n = t->n_vocab;
    t->bos = get_id(g, "tokenizer.ggml.bos_token_id", n);
    t->eos = get_id(g, "tokenizer.ggml.eos_token_id", n);
    t->eot = get_id(g, "tokenizer.ggml.eot_token_id", n);
    t->eom = get_id(g, "tokenizer.ggml.eom_token_id", n);
    t->pad = get_id(g, "tokenizer.ggml.padding_token_id", n);
    t->unk = get_id(g, "tokenizer.ggml.unknown_token_id", n);
    if (t->kind == SLM_TOKENIZER_SPM && t->unk < 0) t->unk = 0 < n && t->type[0] == SLM_TOKEN_TYPE_UNKNOWN ? 0 : -1;
    /* Defaults of the families when a flag is absent: SentencePiece models add BOS and a space prefix;
     * byte-level BPE adds neither, except Llama 3, whose tokenizer adds <|begin_of_text|>. */
    bool spm = t->kind == SLM_TOKENIZER_SPM;
    t->add_bos = get_flag(g, "tokenizer.ggml.add_bos_token", spm || !strcmp(t->pre, "llama-bpe"));
    t->add_eos = get_flag(g, "tokenizer.ggml.add_eos_token", false);
    t->add_space_prefix = get_flag(g, "tokenizer.ggml.add_space_prefix", spm);
    if (t->kind == SLM_TOKENIZER_BPE) t->add_space_prefix = false;
    /* End of turn for chat families whose files do not name it */
    static const char *const turn_ends[] = {"<|eot_id|>", "<|im_end|>",    "<|end|>",    "<end_of_turn>",
                                            "<|eom_id|>", "<|endoftext|>", "<|return|>", "<EOT>"};
    for (size_t i = 0; t->eot < 0 && i < 4; i++) t->eot = find_control(t, turn_ends[i]);
    add_eog(t, t->eos);
    add_eog(t, t->eot);
    add_eog(t, t->eom);
    for (size_t i = 0; i < sizeof turn_ends / sizeof turn_ends[0]; i++) add_eog(t, find_control(t, turn_ends[i]));
    *out = t;
    return SLM_OK;
fail:
    slm_tokenizer_free(t);
    return s;
}

void slm_tokenizer_free(slm_tokenizer *t) {
    if (!t) return;
    free(t->text_pool);
    free(t->piece_pool);
    free(t->text_off);
    free(t->text_len);
    free(t->piece_off);
    free(t->piece_len);
    free(t->type);
    free(t->score);
    free(t->tab);
    free(t->merge_key);
    free(t->merge_rank);
    free(t->merge_res);
    free(t->special);
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t);
}

/* ---------------------------------------------------------------------------------------------------- */
/* Accessors */

int slm_tokenizer_n_vocab(const slm_tokenizer *t) { return t->n_vocab; }
slm_tokenizer_kind slm_tokenizer_get_kind(const slm_tokenizer *t) { return t->kind; }
const char *slm_tokenizer_pre(const slm_tokenizer *t) { return t->pre; }
int32_t slm_tokenizer_bos(const slm_tokenizer *t) { return t->bos; }
int32_t slm_tokenizer_eos(const slm_tokenizer *t) { return t->eos; }
int32_t slm_tokenizer_eot(const slm_tokenizer *t) { return t->eot; }
int32_t slm_tokenizer_pad(const slm_tokenizer *t) { return t->pad; }
int32_t slm_tokenizer_unk(const slm_tokenizer *t) { return t->unk; }
bool slm_tokenizer_add_bos(const slm_tokenizer *t) { return t->add_bos && t->bos >= 0; }
bool slm_tokenizer_add_eos(const slm_tokenizer *t) { return t->add_eos && t->eos >= 0; }

bool slm_tokenizer_is_eog(const slm_tokenizer *t, int32_t id) {
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

slm_token_type slm_tokenizer_token_type(const slm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? (slm_token_type)t->type[id] : (slm_token_type)0;
}

const char *slm_tokenizer_token_text(const slm_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    *len = t->text_len[id];
    return t->text_pool + t->text_off[id];
}

/* ---------------------------------------------------------------------------------------------------- */
/* Encoding */

void slm_tokens_free(slm_tokens *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

bool slm_tok_push(slm_tokens *v, int32_t id) {
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 256;
        if (cap < v->cap) return false;
        int32_t *ids = realloc(v->ids, (size_t)cap * sizeof *ids);
        if (!ids) return false;
        v->ids = ids;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return true;
}

bool slm_tok_grow(void **p, size_t *cap, size_t want, size_t elem) {
    if (want <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < want) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool cand_before(const slm_tok_cand *x, const slm_tok_cand *y) {
    if (x->prio != y->prio) return x->prio > y->prio;
    return x->pos < y->pos;
}

void slm_tok_heap_push(slm_tok_work *w, const slm_tok_cand *c) {
    if (!slm_tok_grow((void **)&w->heap, &w->heap_cap, w->heap_n + 1, sizeof *w->heap)) {
        w->oom = true;
        return;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_before(c, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = *c;
}

slm_tok_cand slm_tok_heap_pop(slm_tok_work *w) {
    slm_tok_cand top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const slm_tok_cand *best = &last;
        if (l < n && cand_before(&w->heap[l], best)) {
            m = l;
            best = &w->heap[l];
        }
        if (r < n && cand_before(&w->heap[r], best)) m = r;
        if (m == i) break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* The longest special token at text[0..len) that the call may match, or -1: user-defined tokens anywhere,
 * control tokens only when they end within control_len bytes (0: none may match here). */
static int32_t match_special(const slm_tokenizer *t, const char *text, size_t len, size_t control_len) {
    unsigned char b = (unsigned char)text[0];
    for (int k = t->special_first[b]; k < t->special_first[b + 1]; k++) {
        int32_t id = t->special[k];
        size_t l = t->text_len[id];
        if (t->type[id] != SLM_TOKEN_TYPE_USER_DEFINED && l > control_len) continue;
        if (l <= len && !memcmp(t->text_pool + t->text_off[id], text, l)) return id;
    }
    return -1;
}

/* One stretch of text between special tokens. SentencePiece prefixes every non-empty stretch with "▁", as
 * the llama tokenizers of transformers (legacy mode) and llama.cpp both do, so text after a special token
 * starts a new word. */
static bool encode_raw(const slm_tokenizer *t, slm_tok_work *w, const char *text, size_t len, slm_tokens *out) {
    if (len == 0) return true;
    if (t->kind == SLM_TOKENIZER_SPM) return slm_tok_spm_encode(t, w, text, len, t->add_space_prefix, out);
    return slm_tok_pre_encode(t, w, text, len, out);
}

/* How many bytes from pos a control token may span: none inside a plain span, up to the next one outside.
 * *k is the first span not yet behind pos (pos only grows, so the spans are walked once). */
static size_t control_room(const slm_text_span *plain, int n_plain, int *k, size_t pos, size_t len) {
    while (*k < n_plain && plain[*k].off + plain[*k].len <= pos) (*k)++;
    if (*k == n_plain) return len - pos;
    return plain[*k].off <= pos ? 0 : plain[*k].off - pos;
}

static slm_status encode(const slm_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                         const slm_text_span *plain, int n_plain, slm_tokens *out, slm_error *err) {
    if (!text && len) return slm_fail(err, SLM_ERR_INVALID_ARG, "tokenize: NULL text");
    if (len > 0x3fffffff) return slm_fail(err, SLM_ERR_INVALID_ARG, "tokenize: %zu bytes is too long", len);
    slm_tok_work w;
    memset(&w, 0, sizeof w);
    bool ok = true;
    if (t->n_re) {
        w.md = pcre2_match_data_create(4, NULL);
        ok = w.md != NULL;
    }
    if (ok && add_special && slm_tokenizer_add_bos(t)) ok = slm_tok_push(out, t->bos);
    size_t seg = 0;
    if (t->n_special && ok) {
        int k = 0;
        for (size_t pos = 0; pos < len && ok;) {
            size_t room = !parse_special ? 0 : plain ? control_room(plain, n_plain, &k, pos, len) : len - pos;
            int32_t id = match_special(t, text + pos, len - pos, room);
            if (id < 0) {
                pos++;
                continue;
            }
            ok = encode_raw(t, &w, text + seg, pos - seg, out) && slm_tok_push(out, id);
            pos += t->text_len[id];
            seg = pos;
        }
    }
    if (ok) ok = encode_raw(t, &w, text + seg, len - seg, out);
    if (ok && add_special && slm_tokenizer_add_eos(t)) ok = slm_tok_push(out, t->eos);
    free(w.syms);
    free(w.heap);
    free(w.text);
    free(w.norm);
    pcre2_match_data_free(w.md);
    if (!ok && w.regex_rc) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(w.regex_rc, msg, sizeof msg);
        return slm_fail(err, SLM_ERR_UNSUPPORTED, "pre-tokenizer %s: matching failed: %s", t->pre, (const char *)msg);
    }
    if (!ok) return slm_fail(err, SLM_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
    return SLM_OK;
}

slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len, bool add_special,
                                bool parse_special, slm_tokens *out, slm_error *err) {
    return encode(t, text, len, add_special, parse_special, NULL, 0, out, err);
}

slm_status slm_tokenizer_encode_spans(const slm_tokenizer *t, const char *text, size_t len, bool add_special,
                                      const slm_text_span *plain, int n_plain, slm_tokens *out, slm_error *err) {
    for (int i = 0; i < n_plain; i++)
        if (plain[i].off > len || plain[i].len > len - plain[i].off ||
            (i && plain[i].off < plain[i - 1].off + plain[i - 1].len))
            return slm_fail(err, SLM_ERR_INVALID_ARG, "tokenize: span %d is outside the text or out of order", i);
    return encode(t, text, len, add_special, true, plain, n_plain, out, err);
}
