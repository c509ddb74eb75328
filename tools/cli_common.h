/* Option parsing shared by the slm subcommands. */
#ifndef SLM_CLI_COMMON_H
#define SLM_CLI_COMMON_H

#include <stdbool.h>

#include "slm.h"
#include "slm_debug.h"

typedef struct slm_cli_opts {
    const char *model;
    const char *prompt;
    const char *system;
    const char *tokens;       /* "1,2,3" for `slm logits` */
    const char *out;          /* logits output file */
    int n_predict;
    bool chat;
    bool no_bos;
    slm_params params;
    slm_debug_params debug;   /* --f32-act */
    slm_sampler_params sampling;
} slm_cli_opts;

/* Parses argv[first..]; on a bad option prints one line to stderr and returns false. */
bool slm_cli_parse(int argc, char **argv, int first, slm_cli_opts *o);
/* Parses a size like "4G", "512M", "1000000" into bytes; false when malformed. */
bool slm_cli_parse_size(const char *s, size_t *out);
/* Writes the bytes of complete UTF-8 sequences from buf, keeping an incomplete tail for the next call. */
void slm_cli_emit_utf8(char *buf, int *len);

int slm_cmd_chat(int argc, char **argv);

#endif
