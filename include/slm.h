/* slm — local LLM inference runtime. The public C API. */
#ifndef SLM_H
#define SLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libslm.so is built with hidden visibility: what this header declares is what it exports. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

typedef enum slm_status {
    SLM_OK = 0,
    SLM_ERR_IO,          /* file missing or unreadable */
    SLM_ERR_FORMAT,      /* malformed or hostile file contents */
    SLM_ERR_UNSUPPORTED, /* valid input this build cannot run (architecture, tensor type, op) */
    SLM_ERR_INVALID_ARG, /* a caller passed something out of range */
    SLM_ERR_NOMEM,       /* host allocation failed */
    SLM_ERR_DEVICE,      /* a device failed (allocation, launch, device lost) */
    SLM_ERR_CONTEXT,     /* the tokens do not fit in the context window */
    SLM_ERR_NO_DEVICE,   /* the requested device does not exist */
    SLM_ERR_NUMERIC,     /* the model produced NaN or infinite logits (broken weights or settings); the
                            tokens of that eval are not appended */
} slm_status;

const char *slm_status_name(slm_status s);

/* Every fallible call fills one of these (when not NULL) with a readable message. */
typedef struct slm_error {
    char msg[512];
} slm_error;

/* Threads. A model, once loaded, is shared read-only: any number of threads may use it at once, for
 * tokenizing, chat templates, detokenizers, samplers and creating and freeing contexts. A context is used
 * by one thread at a time (any thread; not two at once); contexts of one model run in parallel on the CPU,
 * each with its own n_threads workers, and take turns on a GPU: a context holds the model's GPUs for the
 * whole of a batch of slm_eval, the others wait. A detokenizer or sampler, like a context, belongs to one
 * thread at a time. Free every context of a model before the model. */
typedef struct slm_model slm_model;
typedef struct slm_context slm_context;

typedef struct slm_params {
    int n_threads;            /* CPU threads of each context; <= 0: the CPUs this process may run on (affinity,
                                 CPU quota), which also caps a larger request (slm_plan_info.note says so) */
    int n_ctx;                /* context window in tokens; <= 0: min(model's, 4096) */
    int n_batch;              /* largest batch per eval call; <= 0: 512 */
    const char *device;       /* "auto" (default, also NULL): the first hardware GPU (CUDA, then Vulkan) with
                             n_gpu_layers of it, else the CPU; software Vulkan (lavapipe) only when named.
                             "cpu": CPU only; "vulkan:0", "cuda:0", or several GPUs: "cuda:0,cuda:1" */
    int n_gpu_layers;         /* SLM_NGL_ALL, SLM_NGL_AUTO (fit), 0..n: the last n layers (+ output head first) */
    size_t vram_budget;       /* 0: the device's free memory; else a cap in bytes (per GPU) */
    const char *tensor_split; /* several GPUs: their shares of the GPU layers, "3,1" (NULL: equal) */
    bool verbose;             /* print the plan and load messages to stderr */
    /* Element types of the KV cache (K and V apart), 0 = SLM_KV_F16, so a zeroed or older initializer keeps
     * f16. Quantized rows are whole 32-element blocks: they need a head size that is a multiple of 32, and a
     * backend with a kernel for them (today the CPU; a GPU without one refuses at context creation). */
    int type_k, type_v; /* slm_kv_type */
} slm_params;

/* KV cache types (slm_params.type_k / type_v; llama.cpp's -ctk / -ctv names). */
typedef enum slm_kv_type {
    SLM_KV_F16 = 0,
    SLM_KV_Q8_0 = 1, /* 34 bytes per 32 elements: 53% of f16 */
    SLM_KV_Q4_0 = 2, /* 18 bytes per 32 elements: 28% of f16 */
    SLM_KV_TYPE_COUNT
} slm_kv_type;
/* "f16", "q8_0", "q4_0"; NULL for a value out of range. */
const char *slm_kv_type_name(int t);
/* The type named `name` (as slm_kv_type_name spells it), or -1. */
int slm_kv_type_from_name(const char *name);

/* Named n_gpu_layers values. */
#define SLM_NGL_ALL (-1)  /* every layer and the output head on the GPU(s) */
#define SLM_NGL_AUTO (-2) /* as many as fit the GPUs' free memory (or vram_budget) */

slm_params slm_params_default(void);

/* Loads a GGUF model and places its weights as the params ask. */
slm_status slm_model_load(const char *path, const slm_params *params, slm_model **out, slm_error *err);
/* The same from a GGUF image in memory (data must outlive the model; it is used in place, as a mapping). */
slm_status slm_model_load_memory(const void *data, size_t size, const slm_params *params, slm_model **out,
                                 slm_error *err);
void slm_model_free(slm_model *m);

typedef struct slm_model_info {
    const char *arch; /* "llama", "qwen2" */
    const char *name;
    int n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, n_ctx_train;
    uint64_t n_params;
    uint64_t weight_bytes; /* bytes of all tensors */
} slm_model_info;
slm_model_info slm_model_get_info(const slm_model *m);

/* Where a loaded model's weights went and what a token costs on each device. */
#define SLM_MAX_DEVICES 4
typedef struct slm_plan_device_info {
    char name[160];                /* "cpu (AVX-512, 2 threads)", "vulkan:0 llvmpipe (...)" */
    bool gpu;                      /* not the host CPU */
    int n_layers;                  /* layers placed on the device */
    bool output;                   /* the output head (final norm and projection) runs here */
    uint64_t weight_bytes;         /* weights held by the device (the CPU's are read from the mapped file) */
    uint64_t read_bytes_per_token; /* weights read per generated token here (layers, head, one embedding row) */
    uint64_t kv_bytes;             /* one context's KV cache for n_ctx positions */
    uint64_t scratch_bytes;        /* one context's activations for n_batch tokens */
    uint64_t work_bytes;           /* the backend's own working memory (its scratch, cuBLAS's workspace), held
                                      once per device from load on and shared by the model's contexts */
} slm_plan_device_info;

typedef struct slm_plan_info {
    int n_devices; /* device[0] is always the CPU */
    slm_plan_device_info device[SLM_MAX_DEVICES];
    int n_ctx, n_batch;   /* as resolved from the params and the model */
    double predicted_tps; /* the planner's decode tokens/s (0 when everything is on one device) */
    char text[512];       /* one line: "cpu: layers 0-17 (1.2 GiB) | vulkan:0: layers 18-29 + output" */
    char note[512];       /* why the placement (or the thread count) differs from the request; "" when it
                             does not */
} slm_plan_info;
slm_plan_info slm_model_plan_info(const slm_model *m);

/* Devices of every compiled-in backend, for listings (`slm devices`): returns how many there are, filling
 * at most max entries, in backend order. Opening a GPU to ask costs a driver start-up (~0.1-1 s). */
typedef struct slm_device_info {
    char spec[32]; /* "cpu:0", "vulkan:0", "cuda:0": what params.device takes */
    char name[160];
    bool gpu;
    bool software; /* a CPU implementation of a GPU API (lavapipe): used only when named */
    size_t free_bytes, total_bytes;
    char error[256]; /* why the device could not be opened ("" when it opened; then name and
                                      memory are unknown) */
} slm_device_info;
int slm_devices_list(slm_device_info *out, int max);
/* Backends compiled into this build ("cpu" first, then "vulkan", "cuda") and how many devices each sees
 * (counting a GPU backend's devices starts its driver): returns how many backends there are, filling at most
 * max entries. Cheaper than slm_devices_list, which opens every device. */
typedef struct slm_backend_info {
    const char *name;
    int n_devices;
} slm_backend_info;
int slm_backends_list(slm_backend_info *out, int max);

/* A context holds the KV cache and scratch memory for one sequence (or several: slm_context_create_seqs
 * below), and its own CPU workers (started at its first slm_eval). See "Threads" above. */
slm_status slm_context_create(slm_model *m, slm_context **out, slm_error *err);
void slm_context_free(slm_context *c);
int slm_context_n_ctx(const slm_context *c);
int slm_context_pos(const slm_context *c);        /* tokens already in the KV cache */
void slm_context_rewind(slm_context *c, int pos); /* forget tokens at positions >= pos */

/* Appends n tokens at the current position and computes logits: for every token when all_logits,
 * else for the last one only. Fails with SLM_ERR_CONTEXT when they do not fit, and with SLM_ERR_NUMERIC when
 * a logit comes out NaN or infinite (the batch that produced it is not appended; earlier batches of the same
 * call are). */
slm_status slm_eval(slm_context *c, const int32_t *tokens, int n, bool all_logits, slm_error *err);
/* Logits [n_vocab] of token i of the last eval (i = -1: the last token). */
const float *slm_logits(const slm_context *c, int i);

/* Sequences: a context of several. A server serves several clients from one context: each client's
 * conversation is a sequence with its own KV cache of n_ctx positions (the memory is n_seq times a
 * one-sequence context's), and slm_eval_batch appends tokens to several sequences in one forward pass, which
 * reads each weight once for all of them: n sequences generating a token each cost little more than one.
 * slm_context_create is the one-sequence case; slm_eval, slm_context_pos and slm_context_rewind act on
 * sequence 0. Tokens of one sequence see only that sequence's cache. */
#define SLM_MAX_SEQS 256
slm_status slm_context_create_seqs(slm_model *m, int n_seq, slm_context **out, slm_error *err);
int slm_context_n_seq(const slm_context *c);
int slm_seq_pos(const slm_context *c, int seq);        /* tokens in the sequence's cache; -1: no such one */
void slm_seq_rewind(slm_context *c, int seq, int pos); /* forget its tokens at positions >= pos */

/* n tokens appended to sequence seq. */
typedef struct slm_batch_part {
    int seq;
    const int32_t *tokens;
    int n;
} slm_batch_part;
/* Appends each part's tokens to its sequence, all in one forward pass, and computes the logits of each part's
 * last token (slm_batch_logits). A prompt chunk of one sequence and single generated tokens of others may go
 * together. Each sequence appears at most once and the tokens of all parts are at most n_batch
 * (SLM_ERR_INVALID_ARG); a part that does not fit its sequence's context fails the call with SLM_ERR_CONTEXT.
 * On any failure no sequence has grown. */
slm_status slm_eval_batch(slm_context *c, const slm_batch_part *parts, int n_parts, slm_error *err);
/* Logits [n_vocab] of the last token of part i of the last slm_eval_batch. */
const float *slm_batch_logits(const slm_context *c, int part);

/* Bytes of weights read per generated token and a per-eval timing, for the summary line and slm-bench. */
typedef struct slm_perf {
    double prompt_s, gen_s;
    int n_prompt, n_gen;
    uint64_t bytes_per_token;
} slm_perf;
slm_perf slm_context_perf(const slm_context *c);

/* Observing evaluation op by op (profiles). With an observer set, slm_eval runs every op of the forward pass
 * on its own and waits for it, so the times are per op but the whole is slower than a normal eval; device
 * boundary copies are reported as ops of kind "copy". NULL turns it off. */
typedef struct slm_op_event {
    const char *name; /* "attn_q", "ffn_down", "attention", "boundary_copy" */
    const char *kind; /* "matmul", "attention", ..., "copy" */
    int layer;        /* -1: embedding, 0..n_layer-1, n_layer: output head */
    int device;       /* index of the device in the model's placement (0: the CPU) */
    const char *device_name;
    int pos;        /* position of the batch's first token */
    int n_tokens;   /* tokens in the batch */
    uint64_t bytes; /* bytes read from memory other than activations: weights, KV cache rows */
    double seconds;
} slm_op_event;
/* Called on the thread running slm_eval, with the model's GPUs held: it must not evaluate a context of the
 * same model. */
typedef void (*slm_op_observer)(const slm_op_event *ev, void *user);
void slm_context_set_observer(slm_context *c, slm_op_observer fn, void *user);

/* Tokenizer. parse_special: treat special-token text (e.g. "<|im_start|>") as the special token. */
slm_status slm_tokenize(const slm_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                        int32_t *out, int max_out, int *n_out, slm_error *err);
/* Appends the bytes of a token to buf; returns the number of bytes (may be a partial UTF-8 sequence). */
int slm_token_to_piece(const slm_model *m, int32_t token, char *buf, int buf_len);
int32_t slm_token_bos(const slm_model *m);
int32_t slm_token_eos(const slm_model *m);
bool slm_token_is_eog(const slm_model *m, int32_t token); /* end of generation: EOS, EOT, ... */

/* Streaming detokenizer: turns tokens into text one at a time and returns only complete UTF-8 sequences (a
 * character spread over several tokens comes out with the token that completes it). Bytes that can never
 * form valid UTF-8 come out as U+FFFD, so the text is always valid UTF-8. Control tokens give their text. */
typedef struct slm_detokenizer slm_detokenizer;
/* starts_text: the stream begins a text of its own (a reply), so the space a SentencePiece model puts
 * before the first word is dropped; false when it continues text already shown (after a prompt). */
slm_status slm_detokenizer_create(const slm_model *m, bool starts_text, slm_detokenizer **out, slm_error *err);
/* The text token completes (may be ""), valid until the next call on d; its length in *len. NULL only when
 * out of memory. */
const char *slm_detokenizer_push(slm_detokenizer *d, int32_t token, size_t *len);
/* The end of the stream: a held incomplete sequence comes out as U+FFFD. Tokens pushed afterwards continue
 * the text (as after starts_text false). */
const char *slm_detokenizer_flush(slm_detokenizer *d, size_t *len);
void slm_detokenizer_free(slm_detokenizer *d);

/* Chat templates. The model's tokenizer.chat_template is recognised by its family (ChatML, Llama 3, Phi-3,
 * Phi-4, Gemma), whose layout is rendered as the template would; a file without a template gets the family
 * its vocabulary's turn tokens imply. */
typedef struct slm_chat_message {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} slm_chat_message;
/* The family slm_chat_apply renders for m in *family ("chatml", "llama3", "phi3", "phi4", "gemma"; static
 * text); *from_vocab (may be NULL): the file has no template, the family came from the vocabulary. Fails
 * with SLM_ERR_UNSUPPORTED, saying why, when the model has no tokenizer or no usable template. */
slm_status slm_chat_template_info(const slm_model *m, const char **family, bool *from_vocab, slm_error *err);
/* Renders messages[0..n) in m's chat template into buf, NUL-terminated; add_assistant_turn appends the
 * header that opens the assistant's reply. *len gets the text's length without the NUL. buf NULL (with
 * buf_len 0) only measures; a buf shorter than *len + 1 fails with SLM_ERR_INVALID_ARG. Roles other than
 * system/user/assistant fail with SLM_ERR_INVALID_ARG. The text holds no BOS: tokenize it with add_special
 * (BOS where the model wants one) and parse_special (turn markers become their control tokens). */
slm_status slm_chat_apply(const slm_model *m, const slm_chat_message *messages, int n, bool add_assistant_turn,
                          char *buf, size_t buf_len, size_t *len, slm_error *err);
/* slm_chat_apply and slm_tokenize in one, with the messages' contents kept apart from the template: the
 * template's turn markers always become their control tokens, BOS is added where the model wants one, and
 * the contents are searched for special-token text ("<|im_end|>" typed by a user) only when
 * parse_special_content. Without it such text is tokenized as ordinary characters, so that a message cannot
 * end its turn or open another one (what a server must do with its clients' messages); the ids are
 * otherwise those of slm_tokenize on slm_chat_apply's text. The ids go to out[0..max_out); *n_out gets their
 * count, also when it exceeds max_out, which fails with SLM_ERR_CONTEXT. */
slm_status slm_chat_tokenize(const slm_model *m, const slm_chat_message *messages, int n, bool add_assistant_turn,
                             bool parse_special_content, int32_t *out, int max_out, int *n_out, slm_error *err);

/* Sampler. */
typedef struct slm_sampler_params {
    float temp;           /* <= 0: greedy */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off; > 0 */
    int repeat_last_n;    /* tokens of history the penalty looks at */
    uint64_t seed;
    /* OpenAI's additive penalties over every token accepted since the sampler was created (not only the
     * last repeat_last_n): a token's logit loses presence_penalty once it has occurred and
     * frequency_penalty per occurrence. 0: off (the default); negative values favour repeats. */
    float presence_penalty;
    float frequency_penalty;
} slm_sampler_params;
slm_sampler_params slm_sampler_params_default(void);

typedef struct slm_sampler slm_sampler;
/* Fails with SLM_ERR_INVALID_ARG on a NaN or infinite setting or a repeat_penalty <= 0. */
slm_status slm_sampler_create(const slm_sampler_params *p, int n_vocab, slm_sampler **out, slm_error *err);
void slm_sampler_free(slm_sampler *s);
int32_t slm_sampler_sample(slm_sampler *s, const float *logits);
void slm_sampler_accept(slm_sampler *s, int32_t token); /* history for the repetition, presence and frequency
                                                          penalties */

/* ---- measurement (slm-bench) ---- */
/* What a benchmark reports beside speed: the file's quantization, the backends of this build, and a device's
 * peak read bandwidth (the denominator of "% of peak"). */

/* The file's quantization as its general.file_type names it ("Q4_0", "Q4_K - Medium"); NULL when the file
 * does not say or names a type this build has no name for. */
const char *slm_model_file_type(const slm_model *m);

/* KV cache bytes a generated token reads per position of its context: the K and V rows of every layer, as
 * stored (f16, or the quantized blocks of -ctk / -ctv) but without the rows' alignment padding, which attention does not read. The plan's kv_bytes
 * are the memory held, padding included. */
uint64_t slm_model_kv_read_bytes(const slm_model *m);

/* Peak read bandwidth of a device, measured now: the fastest of several read kernels, each timed several
 * times. "cpu": n_threads threads (<= 0: every core) read a host buffer of `bytes` (0: 1 GiB; make it several
 * times the last-level cache) with the widest vector loads, one and four address streams per thread, with
 * and without software prefetch, and also with one thread per physical core when that is fewer. A GPU
 * ("vulkan:0", "cuda:0"): its backend's own read kernel in several launch shapes (n_threads and bytes
 * unused). The spread is how far the winning kernel's own runs lay apart: on a shared machine the figure
 * varies by that much from run to run. */
typedef struct slm_peak_read {
    double bytes_per_s; /* the fastest timed read */
    double spread;      /* bytes/s between the fastest and the slowest run of the kernel that gave it */
    int n_kernels;      /* read kernels or launch shapes tried */
    char kernel[96];    /* the one that read fastest, e.g. "avx512, 4 streams, prefetch, 2 threads" */
    char name[160];     /* the device's description */
} slm_peak_read;
/* Fills out (zeroed first); an error when the device cannot be opened or has no measurement. */
slm_status slm_device_peak_read(const char *spec, int n_threads, size_t bytes, slm_peak_read *out, slm_error *err);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif
