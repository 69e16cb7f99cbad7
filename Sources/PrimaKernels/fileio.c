#define _GNU_SOURCE
#include "PrimaKernels.h"
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int prima_start_writeback(int fd) {
#if defined(__linux__)
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
    errno = ENOSYS;
    return -1;
#endif
}

ssize_t prima_copy_file_range(int in, int64_t *in_offset, int out, int64_t *out_offset, size_t count) {
#if defined(__linux__)
    loff_t input = (loff_t)*in_offset, output = (loff_t)*out_offset;
    ssize_t copied = copy_file_range(in, &input, out, &output, count, 0);
    *in_offset = (int64_t)input;
    *out_offset = (int64_t)output;
    return copied;
#else
    (void)in; (void)in_offset; (void)out; (void)out_offset; (void)count;
    errno = ENOSYS;
    return -1;
#endif
}
