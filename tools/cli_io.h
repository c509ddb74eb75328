/* Output that cannot fail silently, shared by slm (tools/) and slm-bench (bench/): the standard descriptors
 * guarded at start-up and every output stream flushed and closed with its errors reported. Depends on the C
 * library and POSIX alone. */
#ifndef SLM_CLI_IO_H
#define SLM_CLI_IO_H

#include <stdbool.h>
#include <stdio.h>

/* Makes sure file descriptors 0, 1 and 2 are open before anything else is: a program started with stdout
 * closed (`slm run ... >&-`) would otherwise get fd 1 back from its next open (the model, --out FILE) and
 * print its text into that file. A closed stdout becomes /dev/null opened read-only, so that writes to it
 * fail (EBADF) and are reported; a closed stdin reads as empty; a closed stderr discards. Call first. */
void cli_guard_std_fds(void);

/* Flushes and closes f (stdout included); returns 0, or the errno of the failure (EIO when the C library
 * kept none) when anything written to f was lost: a full disk, a closed descriptor, a failed close. */
int cli_close_stream(FILE *f);

#endif
