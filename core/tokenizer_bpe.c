/* Byte-level BPE ("gpt2") encoding of one pre-tokenized chunk: every byte is one symbol (the vocabulary
 * spells bytes as the printable code points of GPT-2's byte-to-unicode table), and adjacent symbol pairs are
 * merged lowest merge rank first (ties: leftmost), with the shared heap and lazy invalidation, so long runs
 * (a megabyte of spaces) cost O(n log n), not O(n^2). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer_impl.h"
#include "utf8.h"

static uint64_t hash_u64(uint64_t x) { /* splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static bool merge_find(const slm_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *res) {
    if (!t->merge_key || a < 0 || b < 0) return false;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (uint64_t i = hash_u64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        if (t->merge_key[i] == 0) return false;
        if (t->merge_key[i] == key) {
            *rank = t->merge_rank[i];
            *res = t->merge_res[i];
            return true;
        }
    }
}

static slm_status load_merges(slm_tokenizer *t, const slm_gguf *g, slm_error *err) {
    const slm_gguf_kv *merges;
    slm_status s = slm_tok_str_array(g, "tokenizer.ggml.merges", &merges, err);
    if (s) return s;
    if (!merges) return slm_fail(err, SLM_ERR_FORMAT, "%s: a BPE tokenizer without tokenizer.ggml.merges", g->path);
    if (merges->arr_len > (1u << 24))
        return slm_fail(err, SLM_ERR_FORMAT, "%s: %llu merges is out of range", g->path,
                        (unsigned long long)merges->arr_len);
    uint64_t n = merges->arr_len;
    t->merge_mask = slm_tok_table_size(n) - 1;
    t->merge_key = calloc(t->merge_mask + 1, sizeof *t->merge_key);
    t->merge_rank = malloc((t->merge_mask + 1) * sizeof *t->merge_rank);
    t->merge_res = malloc((t->merge_mask + 1) * sizeof *t->merge_res);
    char *cat = malloc(131072);
    if (!t->merge_key || !t->merge_rank || !t->merge_res || !cat) {
        free(cat);
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory for %llu merges", (unsigned long long)n);
    }
    for (uint64_t r = 0; r < n; r++) {
        slm_gguf_str m;
        if (!slm_gguf_arr_str(merges, r, &m) || m.len > 131072) continue;
        /* "A B": byte-level text has no plain spaces, but try each space so odd vocabularies still slm_tok_work */
        for (uint64_t p = 0; p < m.len; p++) {
            if (m.ptr[p] != ' ') continue;
            int32_t a = slm_tokenizer_find(t, m.ptr, (size_t)p);
            int32_t b = slm_tokenizer_find(t, m.ptr + p + 1, (size_t)(m.len - p - 1));
            if (a < 0 || b < 0) continue;
            memcpy(cat, m.ptr, (size_t)p);
            memcpy(cat + p, m.ptr + p + 1, (size_t)(m.len - p - 1));
            int32_t res = slm_tokenizer_find(t, cat, (size_t)(m.len - 1));
            if (res < 0) break;
            uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
            uint64_t h = hash_u64(key) & t->merge_mask;
            while (t->merge_key[h] && t->merge_key[h] != key) h = (h + 1) & t->merge_mask;
            if (!t->merge_key[h]) { /* a repeated merge keeps its first (lowest) rank */
                t->merge_key[h] = key;
                t->merge_rank[h] = (int32_t)r;
                t->merge_res[h] = res;
            }
            break;
        }
    }
    free(cat);
    return SLM_OK;
}

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for themselves, the rest are numbered from
 * U+0100 upwards in byte order. */
static void byte_map(slm_tokenizer *t) {
    int n = 0;
    for (int i = 0; i < 324; i++) t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        uint32_t cp = keep ? (uint32_t)b : 256u + (uint32_t)n++;
        t->cp_byte[cp] = (int16_t)b;
        t->byte_cp[b] = (uint16_t)cp;
        char u[4];
        int l = slm_utf8_encode(cp, u);
        t->byte_tok[b] = slm_tokenizer_find(t, u, (size_t)l);
    }
}

slm_status slm_tok_bpe_init(slm_tokenizer *t, const slm_gguf *g, slm_error *err) {
    slm_status s = load_merges(t, g, err);
    if (!s) byte_map(t);
    return s;
}

static void bpe_try(const slm_tokenizer *t, slm_tok_work *w, int left) {
    if (left < 0) return;
    int right = w->syms[left].next;
    if (right < 0) return;
    int32_t rank, res;
    if (!merge_find(t, w->syms[left].id, w->syms[right].id, &rank, &res)) return;
    slm_tok_cand c = {-(double)rank, w->syms[left].start, left, right, w->syms[left].id, w->syms[right].id, res};
    slm_tok_heap_push(w, &c);
}

/* Byte-level BPE on one pre-tokenized chunk. */
bool slm_tok_bpe_encode(const slm_tokenizer *t, slm_tok_work *w, const char *text, size_t len, slm_tokens *out) {
    if (len == 0) return true;
    if (len > 0x7fffffff / 2) return false;
    if (t->ignore_merges) {
        if (!slm_tok_grow((void **)&w->text, &w->text_cap, len * 2, 1)) return false;
        size_t n = 0;
        for (size_t i = 0; i < len; i++) n += (size_t)slm_utf8_encode(t->byte_cp[(unsigned char)text[i]], w->text + n);
        int32_t id = slm_tokenizer_find(t, w->text, n);
        if (id >= 0) return slm_tok_push(out, id);
    }
    if (!slm_tok_grow((void **)&w->syms, &w->syms_cap, len, sizeof *w->syms)) return false;
    int ns = (int)len;
    for (int i = 0; i < ns; i++) w->syms[i] = (slm_tok_sym){i - 1, i + 1, i, 1, t->byte_tok[(unsigned char)text[i]]};
    w->syms[ns - 1].next = -1;
    w->heap_n = 0;
    for (int i = 0; i + 1 < ns; i++) bpe_try(t, w, i);
    while (w->heap_n && !w->oom) {
        slm_tok_cand c = slm_tok_heap_pop(w);
        slm_tok_sym *L = &w->syms[c.left], *R = &w->syms[c.right];
        if (L->len == 0 || R->len == 0 || L->next != c.right || L->id != c.a || R->id != c.b) continue;
        L->len += R->len;
        L->id = c.res;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) w->syms[R->next].prev = c.left;
        bpe_try(t, w, L->prev);
        bpe_try(t, w, c.left);
    }
    if (w->oom) return false;
    for (int i = 0; i >= 0; i = w->syms[i].next) {
        int32_t id = w->syms[i].id >= 0 ? w->syms[i].id : t->unk;
        if (id >= 0 && !slm_tok_push(out, id)) return false;
    }
    return true;
}
