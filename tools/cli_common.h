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
    const char *tokens; /* "1,2,3" for `slm logits` */
    const char *out;    /* logits output file */
    int n_predict;
    bool chat;
    bool no_bos;
    slm_params params;
    slm_debug_params debug; /* --f32-act */
    slm_sampler_params sampling;
} slm_cli_opts;

/* Parses argv[first..]; on a bad option prints one line to stderr and returns false. */
bool slm_cli_parse(int argc, char **argv, int first, slm_cli_opts *o);
/* Parses a size like "4G", "512M", "1000000" into bytes; false when malformed. */
bool slm_cli_parse_size(const char *s, size_t *out);
/* Writes n bytes of generated text to stdout at once (the user watches it stream). */
void slm_cli_write(const char *text, size_t n);
/* The messages in m's chat template with the assistant's turn opened, as a malloc'd string. */
slm_status slm_cli_chat_text(const slm_model *m, const slm_chat_message *msgs, int n, char **out, slm_error *err);

int slm_cmd_chat(int argc, char **argv);

#endif
