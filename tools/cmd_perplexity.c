/* slm perplexity: how well a model predicts a text, the figure users compare quantizations by, and the KL
 * divergence of a model's predictions from a reference's on the same tokens.
 *
 * The convention is the one llama.cpp's llama-perplexity users know, so that figures compare: the whole text
 * is tokenized once (with the BOS the model adds), cut into chunks of n_ctx tokens (the tail that fills no
 * chunk is dropped), and each chunk is evaluated from an empty context, its first token replaced by BOS
 * when the model adds one. Only the second half of each chunk is scored, so that every scored token has at
 * least n_ctx/2 tokens of context: the logits of position j predict token j + 1 for j = n_ctx/2 .. n_ctx-2,
 * n_ctx - 1 - n_ctx/2 tokens a chunk. Perplexity = exp(mean negative log-likelihood); its standard error is
 * that of the mean NLL (sample variance / (N - 1)) carried through exp (delta method: PPL * se).
 *
 * KL base file (--kl-divergence-base FILE), all in the byte order of the machine that wrote it (the version
 * word tells a foreign order):
 *   char  magic[8] = "SLMKLD1\0"
 *   u32   version = 1, n_vocab, n_ctx, n_chunks, first (= n_ctx/2, the first scored logit row)
 *   i32   tokens[n_chunks * n_ctx]                       the tokens evaluated, BOS already in place
 *   f32   logp[n_chunks][n_ctx - 1 - first][n_vocab]     log-softmax of each scored row
 * The full log-softmax in f32 is kept rather than a quantized or top-k form: the KL of a model against its
 * own base is then exactly 0 and small differences (another thread count, f32 activations) are measured,
 * not the rounding of the file; it costs 4 * n_vocab bytes per scored token (about 192 KiB for a 49k
 * vocabulary), fine for the tens of chunks a comparison needs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli_common.h"
#include "cli_io.h"
#include "slm.h"

#define KLD_MAGIC "SLMKLD1"
#define KLD_VERSION 1u
#define MIN_CTX 8

typedef struct kld_header {
    char magic[8];
    uint32_t version, n_vocab, n_ctx, n_chunks, first;
} kld_header;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Running sums of a per-token quantity, for its mean and the standard error of the mean. */
typedef struct running {
    double sum, sum2;
    long long n;
} running;

static void stat_add(running *s, double x) {
    s->sum += x;
    s->sum2 += x * x;
    s->n++;
}
static double stat_mean(const running *s) { return s->n ? s->sum / (double)s->n : 0; }
static double stat_se(const running *s) {
    if (s->n < 2) return 0;
    double m = stat_mean(s), var = s->sum2 / (double)s->n - m * m;
    return var > 0 ? sqrt(var / (double)(s->n - 1)) : 0;
}

/* log(sum(exp(l))) of a row, in double. */
static double log_sum_exp(const float *l, int n) {
    float mx = l[0];
    for (int i = 1; i < n; i++)
        if (l[i] > mx) mx = l[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)l[i] - mx);
    return mx + log(s);
}

static int argmax(const float *l, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

/* Reads exactly n bytes; false with the reason printed. */
static bool read_all(FILE *f, void *buf, size_t n, const char *path) {
    if (fread(buf, 1, n, f) == n) return true;
    fprintf(stderr, "slm: %s: %s\n", path, ferror(f) ? strerror(errno) : "the file ends early (truncated?)");
    return false;
}

static bool write_all(FILE *f, const void *buf, size_t n, const char *path) {
    errno = 0;
    if (fwrite(buf, 1, n, f) == n) return true;
    fprintf(stderr, "slm: writing %s: %s\n", path, errno ? strerror(errno) : "write error");
    return false;
}

/* Opens a KL base and checks its header and size; NULL with the reason printed. */
static FILE *kld_open(const char *path, kld_header *h) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "slm: cannot read the KL base %s: %s\n", path, strerror(errno));
        return NULL;
    }
    if (!read_all(f, h, sizeof *h, path)) goto bad;
    if (memcmp(h->magic, KLD_MAGIC, 8) != 0) {
        fprintf(stderr, "slm: %s is not a KL base written by slm perplexity --kl-divergence-base\n", path);
        goto bad;
    }
    if (h->version != KLD_VERSION) {
        fprintf(stderr, "slm: %s: KL base version %u (or another byte order); this slm reads version %u\n", path,
                h->version, KLD_VERSION);
        goto bad;
    }
    if (h->n_vocab < 1 || h->n_ctx < MIN_CTX || h->n_ctx > (1u << 24) || h->n_chunks < 1 || h->first != h->n_ctx / 2) {
        fprintf(stderr, "slm: %s: a damaged KL base header (n_vocab %u, n_ctx %u, n_chunks %u, first %u)\n", path,
                h->n_vocab, h->n_ctx, h->n_chunks, h->first);
        goto bad;
    }
    struct stat st;
    double want = (double)sizeof *h + 4.0 * h->n_chunks * h->n_ctx +
        4.0 * h->n_chunks * (h->n_ctx - 1 - h->first) * (double)h->n_vocab;
    if (fstat(fileno(f), &st) != 0 || (double)st.st_size != want) {
        fprintf(stderr, "slm: %s: %.0f bytes where its header (n_vocab %u, n_ctx %u, %u chunks) implies %.0f\n", path,
                (double)st.st_size, h->n_vocab, h->n_ctx, h->n_chunks, want);
        goto bad;
    }
    return f;
bad:
    fclose(f);
    return NULL;
}

/* The chunks of a text's tokens: n_chunks * n_ctx ids, each chunk's first one BOS when bos >= 0. NULL with the
 * reason printed when the text is too short. */
static int32_t *make_chunks(const int32_t *toks, int n_tok, int n_ctx, int max_chunks, int32_t bos, int *n_chunks) {
    int n = n_tok / n_ctx;
    if (n < 2) {
        fprintf(stderr,
                "slm: the text is %d tokens: perplexity needs at least 2 chunks of %d (-c), %d tokens; give a "
                "longer text or a smaller -c\n",
                n_tok, n_ctx, 2 * n_ctx);
        return NULL;
    }
    if (max_chunks > 0 && n > max_chunks) n = max_chunks;
    int32_t *out = malloc((size_t)n * (size_t)n_ctx * sizeof *out);
    if (!out) {
        fprintf(stderr, "slm: out of memory for %d chunks of %d tokens\n", n, n_ctx);
        return NULL;
    }
    memcpy(out, toks, (size_t)n * (size_t)n_ctx * sizeof *out);
    if (bos >= 0)
        for (int k = 0; k < n; k++) out[(size_t)k * (size_t)n_ctx] = bos;
    *n_chunks = n;
    return out;
}

int slm_cmd_perplexity(int argc, char **argv) {
    slm_cli_opts o;
    if (!slm_cli_parse("perplexity", argc, argv, 2, &o)) return 1;
    if (o.help) {
        slm_cli_usage(stdout, "perplexity");
        return 0;
    }
    if (o.kl && !o.kl_base) {
        fprintf(stderr, "slm: --kl-divergence compares with a base: give it with --kl-divergence-base FILE\n");
        return 1;
    }
    if (!o.kl && !o.file) {
        fprintf(stderr, "slm: perplexity needs a text file (-f FILE)\n");
        return 1;
    }
    if (!o.model) {
        fprintf(stderr, "slm: no model given (-m FILE)\n");
        return 1;
    }
    int rc = 1, n_chunks = 0, n_tok = 0;
    char *text = NULL;
    int32_t *toks = NULL, *chunks = NULL;
    float *row = NULL;
    FILE *base = NULL, *out = NULL;
    slm_model *m = NULL;
    slm_context *c = NULL;
    kld_header h;
    memset(&h, 0, sizeof h);
    int n_ctx = o.params.n_ctx > 0 ? o.params.n_ctx : 512;
    if (o.kl) {
        base = kld_open(o.kl_base, &h);
        if (!base) goto done;
        if (o.params.n_ctx > 0 && (unsigned)o.params.n_ctx != h.n_ctx) {
            fprintf(stderr, "slm: -c %d, but the KL base %s was made with -c %u\n", o.params.n_ctx, o.kl_base, h.n_ctx);
            goto done;
        }
        n_ctx = (int)h.n_ctx;
    }
    if (n_ctx < MIN_CTX) {
        fprintf(stderr, "slm: -c %d is too small: perplexity scores the second half of each chunk; use -c %d or more\n",
                n_ctx, MIN_CTX);
        goto done;
    }
    size_t len = 0;
    if (o.file) {
        text = slm_cli_read_file(o.file, &len);
        if (!text) goto done;
        if (len == 0) {
            fprintf(stderr, "slm: %s is empty\n", o.file);
            goto done;
        }
    }
    o.params.n_ctx = n_ctx;
    if (slm_cli_load(&o, &m, &c)) {
        m = NULL;
        c = NULL;
        goto done;
    }
    if (slm_context_n_ctx(c) < n_ctx) {
        fprintf(stderr, "slm: the context holds %d tokens, fewer than the chunk of %d\n", slm_context_n_ctx(c), n_ctx);
        goto done;
    }
    int n_vocab = slm_model_get_info(m).n_vocab, first = n_ctx / 2;
    if (text) {
        /* special-token text in the file stays text, as in any document being scored */
        toks = slm_cli_tokenize(m, text, len, true, false, &n_tok);
        if (!toks) goto done;
        int32_t bos = slm_token_bos(m);
        bool adds_bos = n_tok > 0 && bos >= 0 && toks[0] == bos;
        chunks = make_chunks(toks, n_tok, n_ctx, o.kl ? 0 : o.chunks, adds_bos ? bos : -1, &n_chunks);
        if (!chunks) goto done;
    }
    if (o.kl) {
        if ((int)h.n_vocab != n_vocab) {
            fprintf(stderr,
                    "slm: the KL base %s was made with a vocabulary of %u tokens; this model's has %d: compare "
                    "models of the same vocabulary\n",
                    o.kl_base, h.n_vocab, n_vocab);
            goto done;
        }
        size_t nt = (size_t)h.n_chunks * h.n_ctx;
        int32_t *bt = malloc(nt * sizeof *bt);
        if (!bt || !read_all(base, bt, nt * sizeof *bt, o.kl_base)) {
            if (!bt) fprintf(stderr, "slm: out of memory for the base's %zu tokens\n", nt);
            free(bt);
            goto done;
        }
        for (size_t i = 0; i < nt; i++)
            if (bt[i] < 0 || bt[i] >= n_vocab) {
                fprintf(stderr, "slm: %s: token %zu is id %d, outside the vocabulary of %d\n", o.kl_base, i, bt[i],
                        n_vocab);
                free(bt);
                goto done;
            }
        if (chunks) {
            /* the text given must be the base's: its chunks and tokens */
            size_t nc = (size_t)n_chunks * (size_t)n_ctx, i = 0;
            while (i < nc && i < nt && chunks[i] == bt[i]) i++;
            if (i < nt) {
                fprintf(stderr,
                        "slm: %s does not give the KL base's tokens (%u chunks of %u): they differ at token %zu "
                        "(%s); a base is compared on its own text, with the same tokenizer\n",
                        o.file, h.n_chunks, h.n_ctx, i, i < nc ? "another id" : "the text is shorter");
                free(bt);
                goto done;
            }
        }
        free(chunks);
        chunks = bt;
        n_chunks = (int)h.n_chunks;
        if (o.chunks > 0 && n_chunks > o.chunks) n_chunks = o.chunks;
    }
    row = malloc((size_t)n_vocab * sizeof *row);
    if (!row) {
        fprintf(stderr, "slm: out of memory\n");
        goto done;
    }
    if (o.kl_base && !o.kl) {
        out = fopen(o.kl_base, "wb");
        if (!out) {
            fprintf(stderr, "slm: cannot create %s: %s\n", o.kl_base, strerror(errno));
            goto done;
        }
        kld_header wh = {KLD_MAGIC,       KLD_VERSION,        (uint32_t)n_vocab,
                         (uint32_t)n_ctx, (uint32_t)n_chunks, (uint32_t)first};
        if (!write_all(out, &wh, sizeof wh, o.kl_base) ||
            !write_all(out, chunks, (size_t)n_chunks * (size_t)n_ctx * sizeof *chunks, o.kl_base))
            goto done;
    }
    fprintf(stderr, "slm: %d tokens, %d chunks of %d, %d scored in each\n", text ? n_tok : n_chunks * n_ctx, n_chunks,
            n_ctx, n_ctx - 1 - first);
    running nll = {0}, kld = {0};
    double kl_max = 0, eval_s = 0;
    long long same_top = 0;
    slm_error err = {{0}};
    for (int k = 0; k < n_chunks; k++) {
        const int32_t *ck = chunks + (size_t)k * (size_t)n_ctx;
        slm_context_rewind(c, 0);
        double t0 = now_s();
        slm_status s = slm_eval(c, ck, n_ctx, true, &err);
        eval_s += now_s() - t0;
        if (s) {
            char what[48];
            snprintf(what, sizeof what, "eval of chunk %d", k + 1);
            slm_cli_fail(what, s, &err);
            goto done;
        }
        for (int j = first; j < n_ctx - 1; j++) {
            const float *lg = slm_logits(c, j);
            double lse = log_sum_exp(lg, n_vocab);
            stat_add(&nll, lse - lg[ck[j + 1]]);
            if (out) {
                for (int i = 0; i < n_vocab; i++) row[i] = (float)(lg[i] - lse);
                if (!write_all(out, row, (size_t)n_vocab * sizeof *row, o.kl_base)) goto done;
            } else if (base) {
                if (!read_all(base, row, (size_t)n_vocab * sizeof *row, o.kl_base)) goto done;
                /* KL(base || this) = sum p log(p / q), p from the base, q from this model */
                double kl = 0;
                for (int i = 0; i < n_vocab; i++) {
                    double lp = row[i];
                    if (lp > -745) kl += exp(lp) * (lp - ((double)lg[i] - lse));
                }
                if (kl < 0) kl = 0; /* rounding of a distribution against itself */
                stat_add(&kld, kl);
                if (kl > kl_max) kl_max = kl;
                same_top += argmax(row, n_vocab) == argmax(lg, n_vocab);
            }
        }
        char buf[64];
        int l = snprintf(buf, sizeof buf, "[%d]%.4f%s", k + 1, exp(stat_mean(&nll)), k + 1 < n_chunks ? "," : "\n");
        if (!slm_cli_write(buf, (size_t)l)) goto done;
    }
    if (out) {
        FILE *f = out;
        out = NULL;
        int e = cli_close_stream(f);
        if (e) {
            fprintf(stderr, "slm: writing %s: %s\n", o.kl_base, strerror(e));
            goto done;
        }
    }
    double ppl = exp(stat_mean(&nll));
    printf("Final estimate: PPL = %.4f +/- %.5f  (%lld tokens scored in %d chunk%s of %d)\n", ppl, ppl * stat_se(&nll),
           nll.n, n_chunks, n_chunks == 1 ? "" : "s", n_ctx);
    if (base)
        printf("KL divergence: mean %.6f +/- %.6f, max %.6f; top-1 agreement %.3f%% (%lld of %lld)\n", stat_mean(&kld),
               stat_se(&kld), kl_max, 100.0 * (double)same_top / (double)kld.n, same_top, kld.n);
    if (o.kl_base && !o.kl) printf("KL base written to %s\n", o.kl_base);
    fprintf(stderr, "slm: %d tokens evaluated in %.2f s: %.1f tokens/s\n", n_chunks * n_ctx, eval_s,
            eval_s > 0 ? n_chunks * n_ctx / eval_s : 0);
    rc = 0;
done:
    if (out) {
        /* a base cut short would only fail later, further from the cause */
        fclose(out);
        remove(o.kl_base);
    }
    if (base) fclose(base);
    free(row);
    free(chunks);
    free(toks);
    free(text);
    slm_context_free(c);
    slm_model_free(m);
    return rc;
}
