/* `slm serve -m MODEL [--host 127.0.0.1] [--port 8080] [--parallel N] [--api-key KEY] [--queue-limit N]`: the
 * OpenAI-compatible server (tools/serve.h describes its parts and threads).
 *
 * It listens on 127.0.0.1 unless --host says otherwise: slm touches no network unless this command is
 * started, and sends nothing anywhere. SIGINT and SIGTERM are blocked in every thread and taken here with
 * sigwait, so that no handler runs in the middle of a lock: then the listening socket closes, the engine
 * ends every job (open streams get their end), the connections close, and everything is freed; exit 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_common.h"
#include "serve.h"

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int slm_cmd_serve(int argc, char **argv) {
    slm_cli_opts o;
    if (!slm_cli_parse("serve", argc, argv, 2, &o)) return 1;
    if (o.help) {
        slm_cli_usage(stdout, "serve");
        return 0;
    }
    if (!o.model) {
        fprintf(stderr, "slm: no model given (-m FILE)\n");
        return 1;
    }
    if (o.n_predict_set && o.n_predict < 1) {
        fprintf(stderr, "slm: -n: a reply needs at least 1 token ('%d')\n", o.n_predict);
        return 1;
    }
    /* a key in the environment stays out of `ps` */
    const char *key = o.api_key ? o.api_key : getenv("SLM_API_KEY");
    if (key && !*key) key = NULL;

    /* before any thread starts, so that every thread inherits the mask and only sigwait sees them */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    /* a client gone mid-write is an error of that connection, not the end of the server */
    signal(SIGPIPE, SIG_IGN);

    slm_error err = {{0}};
    slm_model *m = NULL;
    slm_status s = slm_model_load_debug(o.model, &o.params, &o.debug, &m, &err);
    if (s) {
        fprintf(stderr, "slm: cannot load model: %s (%s)\n", err.msg[0] ? err.msg : "failed", slm_status_name(s));
        return 1;
    }
    slm_plan_info plan = slm_model_plan_info(m);
    if (plan.note[0]) fprintf(stderr, "slm: %s\n", plan.note);
    if (o.params.verbose) fprintf(stderr, "slm: plan: %s\n", plan.text);

    int rc = 1;
    serve_engine *eng = NULL;
    serve_http *http = NULL;
    serve_metrics *metrics = serve_metrics_create();
    if (!metrics) {
        fprintf(stderr, "slm: out of memory\n");
        goto done;
    }
    serve_engine_config ec = {.n_parallel = o.parallel,
                              .queue_limit = o.queue_limit,
                              .prompt_chunk = plan.n_batch < 128 ? plan.n_batch : 128};
    s = serve_engine_create(m, &ec, &eng, &err);
    if (s) {
        fprintf(stderr, "slm: cannot create %d slot(s) of %d tokens: %s (%s)\n", o.parallel, plan.n_ctx,
                err.msg[0] ? err.msg : "failed", slm_status_name(s));
        goto done;
    }
    serve_http_config hc = {.host = o.host,
                            .port = o.port,
                            .api_key = key,
                            .engine = eng,
                            .metrics = metrics,
                            .model = m,
                            .model_name = base_name(o.model),
                            .created = (long long)time(NULL),
                            .sampling = o.sampling,
                            .default_max_tokens = o.n_predict_set ? o.n_predict : -1};
    char why[256];
    http = serve_http_start(&hc, why, sizeof why);
    if (!http) {
        fprintf(stderr, "slm: %s\n", why);
        goto done;
    }
    bool v6 = strchr(o.host, ':') != NULL;
    printf("slm: serving %s on http://%s%s%s:%d/v1 (%d slot%s of %d tokens%s)\n", base_name(o.model), v6 ? "[" : "",
           o.host, v6 ? "]" : "", serve_http_port(http), o.parallel, o.parallel == 1 ? "" : "s",
           serve_engine_n_ctx(eng), key ? ", API key required" : "");
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "slm: %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
done:
    if (http) serve_http_quiesce(http);
    serve_engine_shutdown(eng);
    serve_http_stop(http);
    serve_engine_free(eng);
    serve_metrics_free(metrics);
    slm_model_free(m);
    return rc;
}
