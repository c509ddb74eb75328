/* simple: loads a GGUF model, tokenizes a prompt, generates greedily and prints the text as it comes, on
 * the public API (slm.h) alone.
 *
 *   simple MODEL.gguf [PROMPT] [N_TOKENS]
 *
 * Build against an installed slm:
 *   cc simple.c $(pkg-config --cflags --libs slm) -o simple                             (libslm.so)
 *   cc simple.c $(pkg-config --cflags slm) $(pkg-config --static --libs slm | sed 's/-lslm /-l:libslm.a /')
 *                                                                                      (libslm.a) */
#include <slm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, slm_status s, const slm_error *err) {
    fprintf(stderr, "simple: %s: %s (%s)\n", what, err->msg[0] ? err->msg : "failed", slm_status_name(s));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT] [N_TOKENS]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    int n_predict = 32;
    if (argc > 3) {
        char *end;
        long v = strtol(argv[3], &end, 10);
        if (!*argv[3] || *end || v < 1 || v > 1000000) {
            fprintf(stderr, "simple: N_TOKENS must be a number from 1 to 1000000, not '%s'\n", argv[3]);
            return 2;
        }
        n_predict = (int)v;
    }

    slm_params params = slm_params_default();
    params.n_ctx = 1024; /* enough for a short prompt and reply; the KV cache is sized by it */
    slm_error err = {{0}};
    slm_model *model = NULL;
    slm_context *ctx = NULL;
    slm_sampler *sampler = NULL;
    slm_detokenizer *detok = NULL;
    int32_t *tokens = NULL;
    int rc = 1;

    slm_status s = slm_model_load(argv[1], &params, &model, &err);
    if (s) return fail("cannot load the model", s, &err);
    if ((s = slm_context_create(model, &ctx, &err))) {
        fail("cannot create a context", s, &err);
        goto done;
    }
    int n_ctx = slm_context_n_ctx(ctx), n_prompt = 0;
    tokens = malloc((size_t)n_ctx * sizeof *tokens);
    if (!tokens) {
        fprintf(stderr, "simple: out of memory\n");
        goto done;
    }
    s = slm_tokenize(model, prompt, strlen(prompt), true, false, tokens, n_ctx, &n_prompt, &err);
    if (s) {
        fail("cannot tokenize the prompt", s, &err);
        goto done;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "simple: the prompt is empty\n");
        goto done;
    }

    slm_sampler_params sp = slm_sampler_params_default();
    sp.temp = 0; /* greedy: the most likely token every time */
    if ((s = slm_sampler_create(&sp, slm_model_get_info(model).n_vocab, &sampler, &err))) {
        fail("cannot create a sampler", s, &err);
        goto done;
    }
    /* the reply continues the prompt's text, so its first space is kept */
    if ((s = slm_detokenizer_create(model, false, &detok, &err))) {
        fail("detokenizer", s, &err);
        goto done;
    }

    printf("%s", prompt);
    if ((s = slm_eval(ctx, tokens, n_prompt, false, &err))) {
        fail("eval", s, &err);
        goto done;
    }
    for (int i = 0; i < n_predict; i++) {
        int32_t t = slm_sampler_sample(sampler, slm_logits(ctx, -1));
        if (slm_token_is_eog(model, t)) break;
        size_t len;
        const char *text = slm_detokenizer_push(detok, t, &len);
        if (!text) {
            fprintf(stderr, "\nsimple: out of memory\n");
            goto done;
        }
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        if (slm_context_pos(ctx) >= n_ctx) break; /* no room to evaluate it: the context is full */
        if ((s = slm_eval(ctx, &t, 1, false, &err))) {
            fail("eval", s, &err);
            goto done;
        }
    }
    size_t len;
    const char *tail = slm_detokenizer_flush(detok, &len);
    if (tail) fwrite(tail, 1, len, stdout);
    printf("\n");
    rc = 0;
done:
    slm_detokenizer_free(detok);
    slm_sampler_free(sampler);
    free(tokens);
    slm_context_free(ctx);
    slm_model_free(model);
    return rc;
}
