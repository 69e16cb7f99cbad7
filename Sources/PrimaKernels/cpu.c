#include "PrimaKernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

uint32_t prima_cpu_features(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int has_osxsave = (ecx >> 27) & 1, has_avx = (ecx >> 28) & 1, has_fma = (ecx >> 12) & 1;
    if (!has_osxsave || !has_avx) return 0;
    const uint64_t xcr0 = read_xcr0();
    const int ymm_state = (xcr0 & 0x6) == 0x6;           /* SSE and AVX state saved by the OS */
    const int zmm_state = (xcr0 & 0xE6) == 0xE6;         /* plus opmask and ZMM state */
    if (!ymm_state) return 0;
    uint32_t features = has_fma ? PRIMA_CPU_FMA : 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return features;
    if ((ebx >> 5) & 1) features |= PRIMA_CPU_AVX2;
    if (zmm_state) {
        if ((ebx >> 16) & 1) features |= PRIMA_CPU_AVX512F;
        if ((ebx >> 17) & 1) features |= PRIMA_CPU_AVX512DQ;
        if ((ebx >> 28) & 1) features |= PRIMA_CPU_AVX512CD;
        if ((ebx >> 30) & 1) features |= PRIMA_CPU_AVX512BW;
        if ((ebx >> 31) & 1) features |= PRIMA_CPU_AVX512VL;
        if ((ecx >> 11) & 1) features |= PRIMA_CPU_AVX512VNNI;
    }
    if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && ((eax >> 4) & 1)) features |= PRIMA_CPU_AVXVNNI;
    return features;
}
#else
uint32_t prima_cpu_features(void) { return 0; }
#endif
