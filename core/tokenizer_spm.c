/* SentencePiece ("llama") encoding: spaces become U+2581 ("▁"), one is prepended when add_space_prefix says
 * so, the text starts as one symbol per UTF-8 character and adjacent symbols are merged, highest vocabulary
 * score first (ties: leftmost), while the merged text is a vocabulary entry. Symbols left outside the
 * vocabulary fall back to <0xNN> byte tokens, or to the unknown token (one for a whole run of them, as
 * SentencePiece does). The merge loop uses the shared heap with lazy invalidation, so long runs cost
 * O(n log n), not O(n^2). */
#include <stdio.h>
#include <string.h>

#include "tokenizer_impl.h"
#include "utf8.h"

void slm_tok_spm_init(slm_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_tok[b] = slm_tokenizer_find(t, name, 6);
    }
}

static void spm_try(const slm_tokenizer *t, slm_tok_work *w, int left) {
    if (left < 0) return;
    int right = w->syms[left].next;
    if (right < 0) return;
    const slm_tok_sym *L = &w->syms[left], *R = &w->syms[right];
    int32_t id = slm_tokenizer_find(t, w->text + L->start, (size_t)(L->len + R->len));
    if (id < 0) return;
    int ty = t->type[id];
    if (ty != SLM_TOKEN_TYPE_NORMAL && ty != SLM_TOKEN_TYPE_USER_DEFINED && ty != SLM_TOKEN_TYPE_UNUSED) return;
    slm_tok_cand c = {t->score[id], L->start, left, right, L->len, R->len, id};
    slm_tok_heap_push(w, &c);
}

bool slm_tok_spm_encode(const slm_tokenizer *t, slm_tok_work *w, const char *text, size_t len, bool prefix,
                        slm_tokens *out) {
    size_t cap = len * 3 + 3;
    if (!slm_tok_grow((void **)&w->text, &w->text_cap, cap, 1)) return false;
    size_t n = 0;
    if (prefix) {
        memcpy(w->text, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(w->text + n, "\xe2\x96\x81", 3);
            n += 3;
        } else w->text[n++] = text[i];
    }
    if (n == 0) return true;
    if (n > 0x7fffffff / 2) return false;
    if (!slm_tok_grow((void **)&w->syms, &w->syms_cap, n, sizeof *w->syms)) return false;
    int ns = 0;
    for (size_t i = 0; i < n;) {
        int l = slm_utf8_char_len((const unsigned char *)w->text + i, n - i);
        w->syms[ns] = (slm_tok_sym){ns - 1, ns + 1, (int)i, l, -1};
        ns++;
        i += (size_t)l;
    }
    w->syms[ns - 1].next = -1;
    w->heap_n = 0;
    for (int i = 0; i + 1 < ns; i++) spm_try(t, w, i);
    while (w->heap_n && !w->oom) {
        slm_tok_cand c = slm_tok_heap_pop(w);
        slm_tok_sym *L = &w->syms[c.left], *R = &w->syms[c.right];
        /* stale: one side was merged away or grew since the pair was queued */
        if (L->len == 0 || R->len == 0 || L->next != c.right || L->len != c.a || R->len != c.b) continue;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) w->syms[R->next].prev = c.left;
        spm_try(t, w, L->prev);
        spm_try(t, w, c.left);
    }
    if (w->oom) return false;
    bool in_unk = false; /* the last token came from a symbol outside the vocabulary */
    for (int i = 0; i >= 0; i = w->syms[i].next) {
        const slm_tok_sym *S = &w->syms[i];
        int32_t id = slm_tokenizer_find(t, w->text + S->start, (size_t)S->len);
        if (id >= 0 &&
            (t->type[id] == SLM_TOKEN_TYPE_NORMAL || t->type[id] == SLM_TOKEN_TYPE_USER_DEFINED ||
             t->type[id] == SLM_TOKEN_TYPE_UNUSED)) {
            if (!slm_tok_push(out, id)) return false;
            in_unk = false;
            continue;
        }
        bool bytes = true;
        for (int k = 0; k < S->len && bytes; k++) bytes = t->byte_tok[(unsigned char)w->text[S->start + k]] >= 0;
        if (bytes) {
            for (int k = 0; k < S->len; k++)
                if (!slm_tok_push(out, t->byte_tok[(unsigned char)w->text[S->start + k]])) return false;
            in_unk = false;
            continue;
        }
        /* no byte fallback: the symbol is unknown, and a run of unknown symbols is a single unknown token,
         * as SentencePiece merges them (one <unk> then stands for the whole unreadable stretch) */
        if (t->unk >= 0 && !in_unk && !slm_tok_push(out, t->unk)) return false;
        in_unk = true;
    }
    return true;
}
