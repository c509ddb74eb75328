/* Tokenizers from GGUF metadata.
 *
 * SentencePiece ("llama"): spaces become U+2581 ("▁"), one is prepended when add_space_prefix says so, the
 * text starts as one symbol per UTF-8 character and adjacent symbols are merged, highest vocabulary score
 * first (ties: leftmost), while the merged text is a vocabulary entry. Symbols left outside the vocabulary
 * fall back to <0xNN> byte tokens, or to the unknown token (one for a whole run of them, as SentencePiece does).
 *
 * Byte-level BPE ("gpt2"): the text is split into chunks by the pre-tokenizer's regular expressions (PCRE2,
 * Unicode properties), every byte of a chunk is one symbol (the vocabulary spells bytes as the printable
 * code points of GPT-2's byte-to-unicode table), and adjacent symbol pairs are merged lowest merge rank
 * first (ties: leftmost). Both merge loops use a heap with lazy invalidation, so long runs (a megabyte of
 * spaces) cost O(n log n), not O(n^2).
 *
 * The split patterns are those of the families' published tokenizer.json files; Qwen2 also puts the text in
 * Unicode normal form C first (ICU, when built with SLM_HAVE_ICU).
 *
 * Special tokens are cut out of the text first: user-defined tokens always, control tokens only when the
 * caller asks (parse_special), longest match at the leftmost position. Each stretch of text between them
 * is tokenized on its own (SentencePiece gives each its own "▁" prefix). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#ifdef SLM_HAVE_ICU
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#endif

#define MAX_PASSES 3
#define MAX_EOG 16

struct slm_tokenizer {
    slm_tokenizer_kind kind;
    char pre[32];
    int n_vocab;
    char *text_pool;      /* every token's text, back to back */
    char *piece_pool;     /* every token's decoded bytes */
    uint32_t *text_off, *text_len, *piece_off, *piece_len;  /* [n_vocab] */
    uint8_t *type;        /* [n_vocab] slm_token_type */
    float *score;         /* [n_vocab] SentencePiece scores (0 when absent) */
    int32_t *tab;         /* text -> id, open addressing, -1 empty */
    uint64_t tab_mask;
    /* BPE merges: (left id, right id) -> (rank, merged id), open addressing on the pair key */
    uint64_t *merge_key;  /* ((uint64)left << 32 | right) + 1; 0 empty */
    int32_t *merge_rank, *merge_res;
    uint64_t merge_mask;
    int32_t byte_tok[256];  /* BPE: token of each byte's mapped code point; SPM: <0xNN>; -1 when absent */
    int16_t cp_byte[324];   /* BPE: mapped code point -> byte, -1 when not a mapped byte */
    uint16_t byte_cp[256];  /* BPE: byte -> mapped code point */
    bool ignore_merges;     /* a chunk that is itself a vocabulary entry is emitted whole (Llama 3) */
    bool nfc;               /* the text is put in Unicode normal form C first (Qwen2) */
    pcre2_code *re[MAX_PASSES];
    int n_re;
    int32_t *special;       /* control, unknown and user-defined ids, by first byte then longest first */
    int n_special;
    int special_first[257]; /* special[special_first[b] .. special_first[b+1]) start with byte b */
    int max_special_len;
    int32_t bos, eos, eot, eom, pad, unk;
    bool add_bos, add_eos, add_space_prefix;
    int32_t eog[MAX_EOG];
    int n_eog;
};

/* ---------------------------------------------------------------------------------------------------- */
/* UTF-8 */

/* Classifies the sequence at s[0..n): 1 = complete and valid (*seq = its length), 0 = a valid but
 * incomplete prefix, -1 = invalid (*seq = 1). Overlongs, surrogates and code points past U+10FFFF are
 * invalid. */
static int utf8_check(const unsigned char *s, size_t n, int *seq) {
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xbf;  /* allowed range of the second byte */
    *seq = 1;
    if (c < 0x80) return 1;
    if (c < 0xc2) return -1;
    if (c < 0xe0) need = 2;
    else if (c < 0xf0) {
        need = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c < 0xf5) {
        need = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return -1;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0;
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
        if (s[i] < lo_i || s[i] > hi_i) return -1;
    }
    *seq = need;
    return 1;
}

/* Length of the character at s (1 for a byte that does not start a complete valid sequence). */
static int utf8_char_len(const unsigned char *s, size_t n) {
    int seq;
    return utf8_check(s, n, &seq) == 1 ? seq : 1;
}

static int utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes the character at s (which utf8_check found valid and complete, seq bytes long). */
static uint32_t utf8_decode(const unsigned char *s, int seq) {
    if (seq == 1) return s[0];
    uint32_t cp = s[0] & (0x7f >> seq);
    for (int i = 1; i < seq; i++) cp = (cp << 6) | (s[i] & 0x3f);
    return cp;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Hash tables */

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;  /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {  /* splitmix64 finaliser */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int32_t slm_tokenizer_find(const slm_tokenizer *t, const char *text, size_t len) {
    for (uint64_t i = hash_bytes(text, len) & t->tab_mask;; i = (i + 1) & t->tab_mask) {
        int32_t id = t->tab[i];
        if (id < 0) return -1;
        if (t->text_len[id] == len && !memcmp(t->text_pool + t->text_off[id], text, len)) return id;
    }
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

static uint64_t table_size(uint64_t n) {
    uint64_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Pre-tokenizers (the split patterns of the public tokenizer.json files of each family) */

#define P_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define P_LLAMA3                                                                                           \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define P_QWEN2                                                                                            \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"     \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define P_DIGIT "\\p{N}"

typedef struct pre_def {
    const char *names;  /* space separated tokenizer.ggml.pre values */
    const char *pattern[MAX_PASSES];
    bool ignore_merges;
    bool nfc;
} pre_def;

static const pre_def PRE_DEFS[] = {
    {" llama-bpe llama3 ", {P_LLAMA3}, true, false},
    {" dbrx smaug-bpe falcon3 ", {P_LLAMA3}, false, false},
    {" qwen2 deepseek-r1-qwen megrez ", {P_QWEN2}, false, true},
    /* Digits(individual_digits: every \p{N} character alone) then GPT-2's ByteLevel split */
    {" smollm starcoder refact codeshell ", {P_DIGIT, P_GPT2}, false, false},
    {" default gpt-2 gpt2 phi-2 olmo jina-es jina-de poro-chat ", {P_GPT2}, false, false},
};

static const pre_def *pre_lookup(const char *name) {
    char key[40];
    snprintf(key, sizeof key, " %s ", name);
    for (size_t i = 0; i < sizeof PRE_DEFS / sizeof PRE_DEFS[0]; i++)
        if (strstr(PRE_DEFS[i].names, key)) return &PRE_DEFS[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Creation */

static slm_status str_array(const slm_gguf *g, const char *key, const slm_gguf_kv **out, slm_error *err) {
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
    if (id < 0 || t->n_eog == MAX_EOG) return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    t->eog[t->n_eog++] = id;
}

static int32_t find_control(const slm_tokenizer *t, const char *text) {
    int32_t id = slm_tokenizer_find(t, text, strlen(text));
    return id >= 0 && (t->type[id] == SLM_TOKEN_TYPE_CONTROL || t->type[id] == SLM_TOKEN_TYPE_USER_DEFINED)
               ? id : -1;
}

static slm_status load_vocab(slm_tokenizer *t, const slm_gguf *g, slm_error *err) {
    const slm_gguf_kv *tokens;
    slm_status s = str_array(g, "tokenizer.ggml.tokens", &tokens, err);
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
        if (str.len > 65536) return slm_fail(err, SLM_ERR_FORMAT, "%s: token %d is %llu bytes long", g->path, i,
                                             (unsigned long long)str.len);
        total += (size_t)str.len;
    }
    t->text_pool = malloc(total + 1);
    t->text_off = malloc((size_t)n * sizeof *t->text_off);
    t->text_len = malloc((size_t)n * sizeof *t->text_len);
    t->type = malloc((size_t)n);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->tab_mask = table_size((uint64_t)n) - 1;
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

static slm_status load_merges(slm_tokenizer *t, const slm_gguf *g, slm_error *err) {
    const slm_gguf_kv *merges;
    slm_status s = str_array(g, "tokenizer.ggml.merges", &merges, err);
    if (s) return s;
    if (!merges) return slm_fail(err, SLM_ERR_FORMAT, "%s: a BPE tokenizer without tokenizer.ggml.merges", g->path);
    if (merges->arr_len > (1u << 24))
        return slm_fail(err, SLM_ERR_FORMAT, "%s: %llu merges is out of range", g->path,
                        (unsigned long long)merges->arr_len);
    uint64_t n = merges->arr_len;
    t->merge_mask = table_size(n) - 1;
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
        /* "A B": byte-level text has no plain spaces, but try each space so odd vocabularies still work */
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
            if (!t->merge_key[h]) {  /* a repeated merge keeps its first (lowest) rank */
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
        int l = utf8_encode(cp, u);
        t->byte_tok[b] = slm_tokenizer_find(t, u, (size_t)l);
    }
}

/* Decoded bytes of token i written to out (room for 4 * text length), returning their count. */
static size_t make_piece(const slm_tokenizer *t, int i, char *out) {
    const char *s = t->text_pool + t->text_off[i];
    size_t n = t->text_len[i], o = 0;
    int ty = t->type[i];
    if (ty == SLM_TOKEN_TYPE_CONTROL || ty == SLM_TOKEN_TYPE_USER_DEFINED || ty == SLM_TOKEN_TYPE_UNKNOWN) {
        memcpy(out, s, n);
        return n;
    }
    if (t->kind == SLM_TOKENIZER_SPM) {
        unsigned v;
        if (ty == SLM_TOKEN_TYPE_BYTE && n == 6 && sscanf(s, "<0x%2x>", &v) == 1) {
            out[0] = (char)v;
            return 1;
        }
        for (size_t k = 0; k < n;) {
            if (k + 3 <= n && !memcmp(s + k, "\xe2\x96\x81", 3)) {
                out[o++] = ' ';
                k += 3;
            } else
                out[o++] = s[k++];
        }
        return o;
    }
    for (size_t k = 0; k < n;) {
        int seq;
        if (utf8_check((const unsigned char *)s + k, n - k, &seq) == 1) {
            uint32_t cp = utf8_decode((const unsigned char *)s + k, seq);
            if (cp < 324 && t->cp_byte[cp] >= 0) out[o++] = (char)t->cp_byte[cp];
            else { memcpy(out + o, s + k, (size_t)seq); o += (size_t)seq; }
            k += (size_t)seq;
        } else
            out[o++] = s[k++];
    }
    return o;
}

static slm_status make_pieces(slm_tokenizer *t, slm_error *err) {
    size_t total = 0;
    for (int i = 0; i < t->n_vocab; i++) total += t->text_len[i];
    t->piece_pool = malloc(total + 1);
    t->piece_off = malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece_pool || !t->piece_off || !t->piece_len)
        return slm_fail(err, SLM_ERR_NOMEM, "out of memory for token pieces");
    /* a piece is never longer than its text: "▁" (3 bytes) becomes 1, mapped code points shrink or stay */
    size_t off = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        t->piece_off[i] = (uint32_t)off;
        t->piece_len[i] = (uint32_t)make_piece(t, i, t->piece_pool + off);
        off += t->piece_len[i];
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
        if (t->text_len[i] && (ty == SLM_TOKEN_TYPE_CONTROL || ty == SLM_TOKEN_TYPE_USER_DEFINED ||
                               ty == SLM_TOKEN_TYPE_UNKNOWN))
            n++;
    }
    t->special = malloc((size_t)(n ? n : 1) * sizeof *t->special);
    if (!t->special) return slm_fail(err, SLM_ERR_NOMEM, "out of memory for special tokens");
    n = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        int ty = t->type[i];
        if (t->text_len[i] && (ty == SLM_TOKEN_TYPE_CONTROL || ty == SLM_TOKEN_TYPE_USER_DEFINED ||
                               ty == SLM_TOKEN_TYPE_UNKNOWN)) {
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

static slm_status compile_pre(slm_tokenizer *t, const slm_gguf *g, slm_error *err) {
    slm_gguf_str pre = {"default", 7};
    slm_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    snprintf(t->pre, sizeof t->pre, "%.*s", (int)(pre.len < 31 ? pre.len : 31), pre.ptr);
    const pre_def *d = pre_lookup(t->pre);
    if (!d) {
        /* an unknown name: GPT-2's split is the common ancestor of the others and the safest guess */
        d = pre_lookup("default");
        snprintf(t->pre, sizeof t->pre, "default");
    }
    t->ignore_merges = d->ignore_merges;
    t->nfc = d->nfc;
    for (int i = 0; i < MAX_PASSES && d->pattern[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        /* MATCH_INVALID_UTF: invalid bytes never match and fall into the gaps between matches, which become
         * chunks of their own, so any byte string can be tokenized */
        t->re[i] = pcre2_compile((PCRE2_SPTR)d->pattern[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
        if (!t->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return slm_fail(err, SLM_ERR_UNSUPPORTED, "pre-tokenizer %s: pattern %d does not compile: %s", t->pre, i,
                            (const char *)msg);
        }
        pcre2_jit_compile(t->re[i], PCRE2_JIT_COMPLETE);  /* without JIT (unsupported CPU) it still works */
        t->n_re = i + 1;
    }
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
        s = slm_fail(err, SLM_ERR_UNSUPPORTED, "%s: tokenizer model '%.*s' is not supported (llama, gpt2 are)",
                     g->path, (int)(model.len < 40 ? model.len : 40), model.ptr);
        goto fail;
    }
    if ((s = load_vocab(t, g, err))) goto fail;
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    if (t->kind == SLM_TOKENIZER_BPE) {
        if ((s = load_merges(t, g, err))) goto fail;
        byte_map(t);
        if ((s = compile_pre(t, g, err))) goto fail;
    } else {
        snprintf(t->pre, sizeof t->pre, "spm");
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            t->byte_tok[b] = slm_tokenizer_find(t, name, 6);
        }
    }
    if ((s = make_pieces(t, err))) goto fail;
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
    static const char *const turn_ends[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|eom_id|>",
                                            "<|endoftext|>", "<|return|>", "<EOT>"};
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

int slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, char *buf, int buf_len) {
    if (id < 0 || id >= t->n_vocab) return 0;
    int n = (int)t->piece_len[id];
    if (n > buf_len) return -n;
    memcpy(buf, t->piece_pool + t->piece_off[id], (size_t)n);
    return n;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Encoding */

void slm_tokens_free(slm_tokens *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

static bool push(slm_tokens *v, int32_t id) {
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

typedef struct sym {
    int prev, next;  /* -1 at the ends */
    int start, len;  /* bytes of the working text */
    int32_t id;      /* BPE: current token; SPM: unused until the end */
} sym;

typedef struct cand {
    double prio;      /* higher first: the SPM score, or minus the BPE rank */
    int pos;          /* start of the left symbol: equal priorities merge leftmost first */
    int left, right;
    int32_t a, b;     /* BPE: the ids the pair had; SPM: the lengths it had (to detect stale entries) */
    int32_t res;
} cand;

/* Scratch memory of one encode call, grown as needed. */
typedef struct work {
    sym *syms;
    size_t syms_cap;
    cand *heap;
    size_t heap_n, heap_cap;
    char *text;
    size_t text_cap;
    char *norm;           /* NFC output */
    size_t norm_cap;
    pcre2_match_data *md;
    int regex_rc;         /* a PCRE2 matching error (not "no match"), 0 when none */
    bool oom;
} work;

static bool grow(void **p, size_t *cap, size_t want, size_t elem) {
    if (want <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < want) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool cand_before(const cand *x, const cand *y) {
    if (x->prio != y->prio) return x->prio > y->prio;
    return x->pos < y->pos;
}

static void heap_push(work *w, const cand *c) {
    if (!grow((void **)&w->heap, &w->heap_cap, w->heap_n + 1, sizeof *w->heap)) {
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

static cand heap_pop(work *w) {
    cand top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < n && cand_before(&w->heap[l], best)) { m = l; best = &w->heap[l]; }
        if (r < n && cand_before(&w->heap[r], best)) m = r;
        if (m == i) break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (n) w->heap[i] = last;
    return top;
}

static void spm_try(const slm_tokenizer *t, work *w, int left) {
    if (left < 0) return;
    int right = w->syms[left].next;
    if (right < 0) return;
    const sym *L = &w->syms[left], *R = &w->syms[right];
    int32_t id = slm_tokenizer_find(t, w->text + L->start, (size_t)(L->len + R->len));
    if (id < 0) return;
    int ty = t->type[id];
    if (ty != SLM_TOKEN_TYPE_NORMAL && ty != SLM_TOKEN_TYPE_USER_DEFINED && ty != SLM_TOKEN_TYPE_UNUSED) return;
    cand c = {t->score[id], L->start, left, right, L->len, R->len, id};
    heap_push(w, &c);
}

/* SentencePiece on one fragment of raw text; prefix: start it with "▁". */
static bool encode_spm(const slm_tokenizer *t, work *w, const char *text, size_t len, bool prefix, slm_tokens *out) {
    size_t cap = len * 3 + 3;
    if (!grow((void **)&w->text, &w->text_cap, cap, 1)) return false;
    size_t n = 0;
    if (prefix) { memcpy(w->text, "\xe2\x96\x81", 3); n = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(w->text + n, "\xe2\x96\x81", 3); n += 3; }
        else w->text[n++] = text[i];
    }
    if (n == 0) return true;
    if (n > 0x7fffffff / 2) return false;
    if (!grow((void **)&w->syms, &w->syms_cap, n, sizeof *w->syms)) return false;
    int ns = 0;
    for (size_t i = 0; i < n;) {
        int l = utf8_char_len((const unsigned char *)w->text + i, n - i);
        w->syms[ns] = (sym){ns - 1, ns + 1, (int)i, l, -1};
        ns++;
        i += (size_t)l;
    }
    w->syms[ns - 1].next = -1;
    w->heap_n = 0;
    for (int i = 0; i + 1 < ns; i++) spm_try(t, w, i);
    while (w->heap_n && !w->oom) {
        cand c = heap_pop(w);
        sym *L = &w->syms[c.left], *R = &w->syms[c.right];
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
    bool in_unk = false;  /* the last token came from a symbol outside the vocabulary */
    for (int i = 0; i >= 0; i = w->syms[i].next) {
        const sym *S = &w->syms[i];
        int32_t id = slm_tokenizer_find(t, w->text + S->start, (size_t)S->len);
        if (id >= 0 && (t->type[id] == SLM_TOKEN_TYPE_NORMAL || t->type[id] == SLM_TOKEN_TYPE_USER_DEFINED ||
                        t->type[id] == SLM_TOKEN_TYPE_UNUSED)) {
            if (!push(out, id)) return false;
            in_unk = false;
            continue;
        }
        bool bytes = true;
        for (int k = 0; k < S->len && bytes; k++) bytes = t->byte_tok[(unsigned char)w->text[S->start + k]] >= 0;
        if (bytes) {
            for (int k = 0; k < S->len; k++)
                if (!push(out, t->byte_tok[(unsigned char)w->text[S->start + k]])) return false;
            in_unk = false;
            continue;
        }
        /* no byte fallback: the symbol is unknown, and a run of unknown symbols is a single unknown token,
         * as SentencePiece merges them (one <unk> then stands for the whole unreadable stretch) */
        if (t->unk >= 0 && !in_unk && !push(out, t->unk)) return false;
        in_unk = true;
    }
    return true;
}

static void bpe_try(const slm_tokenizer *t, work *w, int left) {
    if (left < 0) return;
    int right = w->syms[left].next;
    if (right < 0) return;
    int32_t rank, res;
    if (!merge_find(t, w->syms[left].id, w->syms[right].id, &rank, &res)) return;
    cand c = {-(double)rank, w->syms[left].start, left, right, w->syms[left].id, w->syms[right].id, res};
    heap_push(w, &c);
}

/* Byte-level BPE on one pre-tokenized chunk. */
static bool encode_bpe_chunk(const slm_tokenizer *t, work *w, const char *text, size_t len, slm_tokens *out) {
    if (len == 0) return true;
    if (len > 0x7fffffff / 2) return false;
    if (t->ignore_merges) {
        if (!grow((void **)&w->text, &w->text_cap, len * 2, 1)) return false;
        size_t n = 0;
        for (size_t i = 0; i < len; i++) n += (size_t)utf8_encode(t->byte_cp[(unsigned char)text[i]], w->text + n);
        int32_t id = slm_tokenizer_find(t, w->text, n);
        if (id >= 0) return push(out, id);
    }
    if (!grow((void **)&w->syms, &w->syms_cap, len, sizeof *w->syms)) return false;
    int ns = (int)len;
    for (int i = 0; i < ns; i++) w->syms[i] = (sym){i - 1, i + 1, i, 1, t->byte_tok[(unsigned char)text[i]]};
    w->syms[ns - 1].next = -1;
    w->heap_n = 0;
    for (int i = 0; i + 1 < ns; i++) bpe_try(t, w, i);
    while (w->heap_n && !w->oom) {
        cand c = heap_pop(w);
        sym *L = &w->syms[c.left], *R = &w->syms[c.right];
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
        if (id >= 0 && !push(out, id)) return false;
    }
    return true;
}

/* Splits text by pre-tokenizer pass `pass` (matches and the gaps between them are chunks) and hands each
 * chunk to the next pass, the last one to BPE. */
static bool encode_bpe(const slm_tokenizer *t, work *w, int pass, const char *text, size_t len, slm_tokens *out) {
    if (pass == t->n_re) return encode_bpe_chunk(t, w, text, len, out);
    size_t off = 0, last = 0;
    while (off < len) {
        int rc = pcre2_match(t->re[pass], (PCRE2_SPTR)text, len, off, 0, w->md, NULL);
        /* the JIT stack is small; the interpreter keeps its backtracking on the heap */
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
            rc = pcre2_match(t->re[pass], (PCRE2_SPTR)text, len, off, PCRE2_NO_JIT, w->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;  /* the rest is one gap */
        if (rc < 0) {
            w->regex_rc = rc;
            return false;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t s = ov[0], e = ov[1];
        if (s > last && !encode_bpe(t, w, pass + 1, text + last, s - last, out)) return false;
        if (e > s && !encode_bpe(t, w, pass + 1, text + s, e - s, out)) return false;
        if (e == s) {  /* an empty match: step over one character so the loop progresses */
            off = s + (size_t)utf8_char_len((const unsigned char *)text + s, len - s);
            last = s;
        } else
            off = last = e;
    }
    if (last < len && !encode_bpe(t, w, pass + 1, text + last, len - last, out)) return false;
    return true;
}

#ifdef SLM_HAVE_ICU
/* NFC of one valid UTF-8 run into w->norm; false when ICU fails (the caller then keeps the text). */
static bool nfc_run(work *w, const char *text, size_t len, size_t *out_len) {
    UErrorCode e = U_ZERO_ERROR;
    const UNormalizer2 *nfc = unorm2_getNFCInstance(&e);
    if (U_FAILURE(e) || len > 0x1fffffff) return false;
    UChar *u16 = malloc(len * 2 * sizeof *u16 + 2), *n16 = malloc(len * 6 * sizeof *n16 + 2);
    bool ok = false;
    int32_t l16 = 0, ln = 0, l8 = 0;
    if (!u16 || !n16) goto done;
    u_strFromUTF8(u16, (int32_t)(len * 2 + 1), &l16, text, (int32_t)len, &e);
    if (U_FAILURE(e)) goto done;
    ln = unorm2_normalize(nfc, u16, l16, n16, (int32_t)(len * 6 + 1), &e);
    if (U_FAILURE(e)) goto done;
    /* NFC never makes UTF-8 longer than 3x its UTF-16 length */
    if (!grow((void **)&w->norm, &w->norm_cap, (size_t)ln * 3 + 1, 1)) goto done;
    u_strToUTF8(w->norm, (int32_t)w->norm_cap, &l8, n16, ln, &e);
    ok = U_SUCCESS(e);
    *out_len = (size_t)l8;
done:
    free(u16);
    free(n16);
    return ok;
}
#endif

/* Normal form C before the split (Qwen2's normalizer). Only runs of valid UTF-8 are normalized; invalid
 * bytes pass through unchanged, so any byte string still round-trips. Without ICU the text is used as
 * it is (the same for text already in NFC, which is nearly all text). */
static bool encode_nfc(const slm_tokenizer *t, work *w, const char *text, size_t len, slm_tokens *out) {
#ifdef SLM_HAVE_ICU
    /* quick path: ASCII and Latin-1-only text below U+0300 cannot change */
    size_t i = 0;
    while (i < len && (unsigned char)text[i] < 0xcc) i++;
    if (i == len) return encode_bpe(t, w, 0, text, len, out);
    size_t run = 0;
    for (i = 0; i <= len;) {
        int seq = 1, r = i < len ? utf8_check((const unsigned char *)text + i, len - i, &seq) : -1;
        if (r == 1) { i += (size_t)seq; continue; }
        if (i > run) {
            size_t nl = 0;
            if (nfc_run(w, text + run, i - run, &nl)) {
                /* w->norm is reused by the next run: normalize, then tokenize from a private copy */
                char *copy = malloc(nl ? nl : 1);
                if (!copy) return false;
                memcpy(copy, w->norm, nl);
                bool ok = encode_bpe(t, w, 0, copy, nl, out);
                free(copy);
                if (!ok) return false;
            } else if (!encode_bpe(t, w, 0, text + run, i - run, out))
                return false;
        }
        if (i == len) break;
        if (!encode_bpe(t, w, 0, text + i, 1, out)) return false;  /* an invalid byte, alone */
        run = ++i;
    }
    return true;
#else
    return encode_bpe(t, w, 0, text, len, out);
#endif
}

/* The longest special token at text[0..len) that the call may match, or -1. */
static int32_t match_special(const slm_tokenizer *t, const char *text, size_t len, bool parse_special) {
    unsigned char b = (unsigned char)text[0];
    for (int k = t->special_first[b]; k < t->special_first[b + 1]; k++) {
        int32_t id = t->special[k];
        if (!parse_special && t->type[id] != SLM_TOKEN_TYPE_USER_DEFINED) continue;
        size_t l = t->text_len[id];
        if (l <= len && !memcmp(t->text_pool + t->text_off[id], text, l)) return id;
    }
    return -1;
}

/* One stretch of text between special tokens. SentencePiece prefixes every non-empty stretch with "▁", as
 * the llama tokenizers of transformers (legacy mode) and llama.cpp both do, so text after a special token
 * starts a new word. */
static bool encode_raw(const slm_tokenizer *t, work *w, const char *text, size_t len, slm_tokens *out) {
    if (len == 0) return true;
    if (t->kind == SLM_TOKENIZER_SPM) return encode_spm(t, w, text, len, t->add_space_prefix, out);
    if (t->nfc) return encode_nfc(t, w, text, len, out);
    return encode_bpe(t, w, 0, text, len, out);
}

slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len, bool add_special,
                                bool parse_special, slm_tokens *out, slm_error *err) {
    if (!text && len) return slm_fail(err, SLM_ERR_INVALID_ARG, "tokenize: NULL text");
    if (len > 0x3fffffff) return slm_fail(err, SLM_ERR_INVALID_ARG, "tokenize: %zu bytes is too long", len);
    work w;
    memset(&w, 0, sizeof w);
    bool ok = true;
    if (t->n_re) {
        w.md = pcre2_match_data_create(4, NULL);
        ok = w.md != NULL;
    }
    if (ok && add_special && slm_tokenizer_add_bos(t)) ok = push(out, t->bos);
    size_t seg = 0;
    if (t->n_special && ok) {
        for (size_t pos = 0; pos < len && ok;) {
            int32_t id = match_special(t, text + pos, len - pos, parse_special);
            if (id < 0) { pos++; continue; }
            ok = encode_raw(t, &w, text + seg, pos - seg, out) && push(out, id);
            pos += t->text_len[id];
            seg = pos;
        }
    }
    if (ok) ok = encode_raw(t, &w, text + seg, len - seg, out);
    if (ok && add_special && slm_tokenizer_add_eos(t)) ok = push(out, t->eos);
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

/* ---------------------------------------------------------------------------------------------------- */
/* Decoding */

static bool is_special_type(int ty) { return ty == SLM_TOKEN_TYPE_CONTROL || ty == SLM_TOKEN_TYPE_UNKNOWN; }

slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, int n, bool skip_special,
                                char **out, size_t *len, slm_error *err) {
    size_t total = 1;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n_vocab) total += t->piece_len[ids[i]];
    char *s = malloc(total);
    if (!s) return slm_fail(err, SLM_ERR_NOMEM, "out of memory decoding %d tokens", n);
    size_t o = 0;
    bool strip = t->kind == SLM_TOKENIZER_SPM && t->add_space_prefix;
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) continue;
        bool special = is_special_type(t->type[id]);
        bool separator = special || t->type[id] == SLM_TOKEN_TYPE_USER_DEFINED;
        const char *p = t->piece_pool + t->piece_off[id];
        size_t l = t->piece_len[id];
        if (separator) {
            /* the text after a special token had its own "▁" prefix (see encode_raw) */
            strip = t->kind == SLM_TOKENIZER_SPM && t->add_space_prefix;
            if (special && skip_special) continue;
        } else if (strip) {
            if (l && p[0] == ' ') { p++; l--; }
            strip = false;
        }
        memcpy(s + o, p, l);
        o += l;
    }
    s[o] = 0;
    *out = s;
    *len = o;
    return SLM_OK;
}

void slm_detok_init(slm_detok *d, const slm_tokenizer *tok, bool strip_leading_space) {
    memset(d, 0, sizeof *d);
    d->tok = tok;
    d->strip_space = strip_leading_space && tok && tok->kind == SLM_TOKENIZER_SPM && tok->add_space_prefix;
}

void slm_detok_free(slm_detok *d) {
    free(d->buf);
    d->buf = NULL;
    d->len = d->cap = 0;
}

static bool detok_out(slm_detok *d, const void *p, size_t n) {
    if (!grow((void **)&d->buf, &d->cap, d->len + n + 1, 1)) return false;
    memcpy(d->buf + d->len, p, n);
    d->len += n;
    d->buf[d->len] = 0;
    return true;
}

static const char REPLACEMENT[] = "\xef\xbf\xbd";

/* Emits the complete sequences of pend + bytes and keeps an incomplete tail in pend. */
static bool detok_feed(slm_detok *d, const unsigned char *bytes, size_t n) {
    size_t i = 0;
    /* finish the held sequence first, one byte at a time */
    while (d->n_pend && i < n) {
        d->pend[d->n_pend++] = bytes[i++];
        int seq, r = utf8_check(d->pend, (size_t)d->n_pend, &seq);
        if (r == 0) continue;
        if (r == 1) {
            if (!detok_out(d, d->pend, (size_t)seq)) return false;
            d->n_pend = 0;
        } else {
            /* the held lead byte is bad: replace it and rescan what followed it */
            unsigned char rest[4];
            int nr = d->n_pend - 1;
            memcpy(rest, d->pend + 1, (size_t)nr);
            d->n_pend = 0;
            if (!detok_out(d, REPLACEMENT, 3)) return false;
            if (!detok_feed(d, rest, (size_t)nr)) return false;
        }
    }
    size_t run = i;  /* start of a run of valid sequences copied in one go */
    while (i < n) {
        int seq, r = utf8_check(bytes + i, n - i, &seq);
        if (r == 1) { i += (size_t)seq; continue; }
        if (!detok_out(d, bytes + run, i - run)) return false;
        if (r == 0) {
            d->n_pend = (int)(n - i);
            memcpy(d->pend, bytes + i, n - i);
            return true;
        }
        if (!detok_out(d, REPLACEMENT, 3)) return false;
        run = ++i;
    }
    return detok_out(d, bytes + run, n - run);
}

const char *slm_detok_push_bytes(slm_detok *d, const char *bytes, size_t n, size_t *len) {
    d->len = 0;
    if (!detok_out(d, "", 0) || !detok_feed(d, (const unsigned char *)bytes, n)) { *len = 0; return NULL; }
    *len = d->len;
    return d->buf;
}

const char *slm_detok_push(slm_detok *d, int32_t id, size_t *len) {
    const slm_tokenizer *t = d->tok;
    if (!t || id < 0 || id >= t->n_vocab) return slm_detok_push_bytes(d, "", 0, len);
    const char *p = t->piece_pool + t->piece_off[id];
    size_t l = t->piece_len[id];
    if (d->strip_space && !is_special_type(t->type[id])) {
        if (l && p[0] == ' ') { p++; l--; }
        d->strip_space = false;
    }
    return slm_detok_push_bytes(d, p, l, len);
}

const char *slm_detok_flush(slm_detok *d, size_t *len) {
    d->len = 0;
    bool ok = detok_out(d, "", 0);
    for (int i = 0; ok && i < d->n_pend; i++) ok = detok_out(d, REPLACEMENT, 3);
    d->n_pend = 0;
    if (!ok) { *len = 0; return NULL; }
    *len = d->len;
    return d->buf;
}
