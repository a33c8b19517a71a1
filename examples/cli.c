/* SPDX-License-Identifier: Apache-2.0 */
/* The examples' shared command-line rules (see cli.h). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "examples/cli.h"

int cli_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_read_record(int fd, void *buf, size_t n, int timeout_ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pf = {fd, POLLIN, 0};
        int k = poll(&pf, 1, timeout_ms);
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0)
            errno = ETIMEDOUT;
        if (k <= 0)
            return -1;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -1 : 0;
        got += (size_t)r;
    }
    return 1;
}

int cli_kill_at(const char *arg, int64_t steps, int64_t every, int64_t *out)
{
    if (strcmp(arg, "auto") != 0)
        return cli_i64(arg, 1, steps - 1, out);
    int64_t k = steps / 2 + every / 2;
    if (k % every == 0)
        k++;
    *out = k < steps ? k : steps - 1;
    return 0;
}
