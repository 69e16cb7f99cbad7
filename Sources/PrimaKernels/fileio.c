#define _GNU_SOURCE
#include "PrimaKernels.h"
#include <errno.h>
#include <unistd.h>

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
