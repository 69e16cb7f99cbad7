// Definitions the C kernels share (not part of the public PrimaKernels.h).
#ifndef PRIMA_KERNEL_COMMON_H
#define PRIMA_KERNEL_COMMON_H

#if defined(__x86_64__) || defined(__i386__)
#define PRIMA_X86 1
#include <immintrin.h>
#else
#define PRIMA_X86 0
#endif

#define ALWAYS_INLINE inline __attribute__((always_inline))

#endif
