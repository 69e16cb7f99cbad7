// C helpers for what Swift cannot reach or express well. Each function documents its contract.
#ifndef PRIMA_KERNELS_H
#define PRIMA_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// copy_file_range(2) (a GNU extension the Swift Glibc module does not export): copies up to `count` bytes
/// from `in` at `*in_offset` to `out` at `*out_offset`, advancing both offsets. Returns bytes copied, 0 at the
/// end of the input, or -1 with errno set (ENOSYS where the system has no such call).
ssize_t prima_copy_file_range(int in, int64_t *in_offset, int out, int64_t *out_offset, size_t count);

/// Starts writeback of `fd`'s dirty pages without waiting (sync_file_range with SYNC_FILE_RANGE_WRITE), so a
/// later fsync has less left to flush. Returns 0, or -1 with errno set (ENOSYS where unsupported).
int prima_start_writeback(int fd);

/// CPU feature bits reported by prima_cpu_features (set only when the OS also saves the register state).
enum {
    PRIMA_CPU_AVX2 = 1 << 0,
    PRIMA_CPU_FMA = 1 << 1,
    PRIMA_CPU_AVX512F = 1 << 2,
    PRIMA_CPU_AVX512BW = 1 << 3,
    PRIMA_CPU_AVX512VL = 1 << 4,
    PRIMA_CPU_AVX512DQ = 1 << 5,
    PRIMA_CPU_AVX512CD = 1 << 6,
    PRIMA_CPU_AVX512VNNI = 1 << 7,
    PRIMA_CPU_AVXVNNI = 1 << 8,
};

/// The CPU's vector features (CPUID, checked against XGETBV), as PRIMA_CPU_* bits; 0 on non-x86 machines.
uint32_t prima_cpu_features(void);

#endif
