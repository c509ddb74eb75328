#include "error.h"

#include <stdarg.h>
#include <stdio.h>

slm_status slm_fail(slm_error *err, slm_status s, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

const char *slm_status_name(slm_status s) {
    switch (s) {
    case SLM_OK: return "ok";
    case SLM_ERR_IO: return "i/o error";
    case SLM_ERR_FORMAT: return "bad format";
    case SLM_ERR_UNSUPPORTED: return "unsupported";
    case SLM_ERR_INVALID_ARG: return "invalid argument";
    case SLM_ERR_NOMEM: return "out of memory";
    case SLM_ERR_DEVICE: return "device error";
    case SLM_ERR_CONTEXT: return "context full";
    case SLM_ERR_NO_DEVICE: return "no such device";
    case SLM_ERR_NUMERIC: return "non-finite result";
    }
    return "unknown status";
}
