/* Filling slm_error: every library failure goes through slm_fail so the message is never lost. */
#ifndef SLM_ERROR_H
#define SLM_ERROR_H

#include "slm.h"

#if defined(__GNUC__)
#define SLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SLM_PRINTF(a, b)
#endif

/* Formats the message into err (when not NULL) and returns s. */
slm_status slm_fail(slm_error *err, slm_status s, const char *fmt, ...) SLM_PRINTF(3, 4);

#endif
