#include "cli_io.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

void cli_guard_std_fds(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        /* open returns the lowest free descriptor, which is fd itself */
        int got = open("/dev/null", fd == 2 ? O_WRONLY : O_RDONLY);
        if (got >= 0 && got != fd) close(got);
    }
}

int cli_close_stream(FILE *f) {
    /* errno of the first failing step: a later one may succeed, or fail otherwise, and hide the reason */
    errno = 0;
    int e = fflush(f) != 0 || ferror(f) ? (errno ? errno : EIO) : 0;
    errno = 0;
    if (fclose(f) != 0 && !e) e = errno ? errno : EIO;
    return e;
}
