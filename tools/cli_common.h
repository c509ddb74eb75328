/* What the slm subcommands share: option parsing, their usage texts, and checked output to stdout. */
#ifndef SLM_CLI_COMMON_H
#define SLM_CLI_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "slm.h"
#include "slm_debug.h"

typedef struct slm_cli_opts {
    const char *model;
    const char *prompt;
    const char *system;
    const char *tokens; /* "1,2,3" for `slm logits` */
    const char *out;    /* logits output file */
    const char *file;   /* -f: the text of perplexity and tokenize */
    /* perplexity */
    const char *kl_base; /* --kl-divergence-base FILE */
    bool kl;             /* --kl-divergence: compare against kl_base instead of writing it */
    int chunks;          /* --chunks N: at most N chunks (0: all) */
    /* tokenize */
    bool ids;           /* --ids: a [1, 2, 3] list */
    bool pieces;        /* --pieces: the pieces alone, one a line */
    bool parse_special; /* --parse-special: special-token text becomes the token */
    int n_predict;
    bool n_predict_set; /* -n was given (chat has its own default) */
    bool chat;
    bool no_bos;
    bool no_parse_special; /* chat: the user's text is never read as special tokens */
    bool help;             /* -h/--help: print the usage and exit 0 */
    /* serve */
    const char *host;    /* address to bind (default 127.0.0.1: nothing beyond this machine) */
    int port;            /* 0: any free port */
    int parallel;        /* slots: requests generated at once */
    int queue_limit;     /* requests waiting for a slot before 503 */
    const char *api_key; /* NULL: none asked */
    slm_params params;
    slm_debug_params debug; /* --f32-act */
    slm_sampler_params sampling;
} slm_cli_opts;

/* Parses argv[first..] for subcommand cmd ("run", "chat", "logits", "serve", "perplexity", "tokenize"); on a bad option prints one line to
 * stderr and returns false. Every number is checked strictly (tools/cli_number.h) and against its range. */
bool slm_cli_parse(const char *cmd, int argc, char **argv, int first, slm_cli_opts *o);
/* The usage of subcommand cmd (NULL: every subcommand) on f. */
void slm_cli_usage(FILE *f, const char *cmd);

/* Writes n bytes of generated text to stdout at once (the user watches it stream). False, with the reason
 * printed ("slm: writing to stdout: No space left on device"), when the write fails: the caller stops. */
bool slm_cli_write(const char *text, size_t n);
/* Flushes and closes stdout at exit; false, with the reason printed (unless slm_cli_write printed it already),
 * when anything written to it was lost (a full disk, a closed descriptor). The exit code must come from this:
 * a write error is a failure. Call cli_guard_std_fds (cli_io.h) first thing. */
bool slm_cli_close_stdout(void);

/* Prints "slm: WHAT: MESSAGE (STATUS)" to stderr and returns 1 (the exit status). */
int slm_cli_fail(const char *what, slm_status s, const slm_error *err);
/* Loads o->model with o's params (printing the plan when verbose or noteworthy) and creates a context (c
 * NULL: none); returns 0, or 1 with the reason printed and nothing left allocated. */
int slm_cli_load(const slm_cli_opts *o, slm_model **m, slm_context **c);

/* The whole of file path, malloc'd and NUL-terminated (for text), its length in *len; NULL with the reason
 * printed ("slm: cannot read X: No such file or directory"). */
char *slm_cli_read_file(const char *path, size_t *len);
/* slm_tokenize into a malloc'd array of the size it needs; NULL with the reason printed. */
int32_t *slm_cli_tokenize(const slm_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                          int *n);

int slm_cmd_chat(int argc, char **argv);
int slm_cmd_perplexity(int argc, char **argv); /* tools/cmd_perplexity.c */
int slm_cmd_tokenize(int argc, char **argv);   /* tools/cmd_tokenize.c */
int slm_cmd_serve(int argc, char **argv);      /* tools/cmd_serve.c; only in a build with the server */

#endif
