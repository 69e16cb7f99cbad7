// int8 linear layers: activation quantisation, weight packing, and the GEMM kernels (scalar, AVX2, AVX-VNNI,
// AVX512-VNNI). The numeric contract is in PrimaKernels.h; every kernel must equal prima_int8_linear_reference
// bit for bit, which is why nothing here may fuse a multiply and an add.
//
// Shapes: x [M, K] activations, q_w [N, K] int8 weights (row n = output n), s_w [N, nb] scales, y [M, N].
// Each kernel computes a register tile of MR rows × NR columns over one or two packed panels of 16 columns.
// Instruction sets are chosen per function with target attributes, so the file builds without -m flags and the
// dispatcher picks a kernel from prima_cpu_features() at run time.
#pragma STDC FP_CONTRACT OFF

#include "PrimaKernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"
#define UNROLL _Pragma("clang loop unroll(full)")

struct prima_int8_weight {
    int64_t n, k, block_size, blocks;  // block_size ≤ k; blocks = ceil(k / block_size)
    int64_t groups;                    // ceil(k / 4): k-groups of 4 per panel
    int64_t panels;                    // ceil(n / 16)
    int8_t *values;                    // [panels][groups][16][4]
    int32_t *offsets;                  // [panels][blocks][16]: -128 · Σ_{k in block} q_w
    float *scales;                     // [panels][blocks][16]
    size_t bytes;
};

// MARK: - Kernel choice

static uint32_t available_kernels(void) {
    uint32_t kernels = 1u << PRIMA_INT8_KERNEL_SCALAR;
#if PRIMA_X86
    const uint32_t f = prima_cpu_features();
    const uint32_t avx512 = PRIMA_CPU_AVX512F | PRIMA_CPU_AVX512BW | PRIMA_CPU_AVX512VL | PRIMA_CPU_AVX512VNNI;
    if (f & PRIMA_CPU_AVX2) kernels |= 1u << PRIMA_INT8_KERNEL_AVX2;
    if ((f & PRIMA_CPU_AVX2) && (f & PRIMA_CPU_AVXVNNI)) kernels |= 1u << PRIMA_INT8_KERNEL_AVXVNNI;
    if ((f & avx512) == avx512) kernels |= 1u << PRIMA_INT8_KERNEL_AVX512VNNI;
#endif
    return kernels;
}

uint32_t prima_int8_kernels_available(void) {
    static uint32_t cached;  // 0 = not yet computed (the scalar bit is always set once it is)
    uint32_t value = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (value == 0) {
        value = available_kernels();
        __atomic_store_n(&cached, value, __ATOMIC_RELAXED);
    }
    return value;
}

static int kernel_available(int kernel) {
    return kernel >= 0 && kernel < PRIMA_INT8_KERNEL_COUNT && ((prima_int8_kernels_available() >> kernel) & 1);
}

int prima_int8_kernel_best(void) {
    for (int kernel = PRIMA_INT8_KERNEL_COUNT - 1; kernel > 0; kernel--)
        if (kernel_available(kernel)) return kernel;
    return PRIMA_INT8_KERNEL_SCALAR;
}

static const char *const kernel_names[PRIMA_INT8_KERNEL_COUNT] = {"scalar", "avx2", "avxvnni", "avx512vnni"};

const char *prima_int8_kernel_name(int kernel) {
    return kernel >= 0 && kernel < PRIMA_INT8_KERNEL_COUNT ? kernel_names[kernel] : NULL;
}

int prima_int8_kernel_from_environment(void) { return prima_int8_kernel_named(getenv("PRIMA_INT8_KERNEL")); }

int prima_int8_kernel_named(const char *name) {
    if (name == NULL || name[0] == 0) return prima_int8_kernel_best();
    for (int kernel = 0; kernel < PRIMA_INT8_KERNEL_COUNT; kernel++)
        if (strcmp(name, kernel_names[kernel]) == 0)
            return kernel_available(kernel) ? kernel : PRIMA_INT8_ERROR_UNSUPPORTED;
    return PRIMA_INT8_ERROR_UNKNOWN_KERNEL;
}

// MARK: - Activation quantisation

/// One value of a row whose scale s is finite and non-zero: clamp(rintf(x / s), -127, 127).
static ALWAYS_INLINE int8_t quantize_one(float x, float s) {
    float v = rintf(x / s);
    if (v > 127.0f) v = 127.0f;
    if (v < -127.0f) v = -127.0f;
    return (int8_t)v;
}

/// The row's scale from max |x| over its finite values and whether all were finite (the contract's NaN rule).
static ALWAYS_INLINE float row_scale(float amax, int finite) { return finite ? amax / 127.0f : NAN; }

void prima_quantize_rows_reference(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q, int64_t ldq,
                                   float *scales) {
    for (int64_t r = 0; r < m; r++) {
        const float *xr = x + r * ldx;
        int8_t *qr = q + r * ldq;
        float amax = 0.0f;
        int finite = 1;
        for (int64_t i = 0; i < k; i++) {
            const float v = fabsf(xr[i]);
            if (!(v <= 3.40282347e+38f)) finite = 0;  // an infinity or a NaN
            else if (v > amax) amax = v;
        }
        const float s = row_scale(amax, finite);
        scales[r] = s;
        for (int64_t i = 0; i < k; i++) qr[i] = (!finite || s == 0.0f) ? 0 : quantize_one(xr[i], s);
        for (int64_t i = k; i < ldq; i++) qr[i] = 0;
    }
}

#if PRIMA_X86
// max |x| as the maximum of the sign-cleared bit patterns: for non-negative floats the integer order is the float
// order, and every infinity or NaN pattern is ≥ 0x7F800000, above every finite one. So one integer max gives both
// the reference's amax (when all are finite) and its finite flag.
__attribute__((target("avx2"))) static void quantize_rows_avx2(const float *x, int64_t m, int64_t k, int64_t ldx,
                                                               int8_t *q, int64_t ldq, float *scales) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t r = 0; r < m; r++) {
        const float *xr = x + r * ldx;
        int8_t *qr = q + r * ldq;
        __m256i vmax = _mm256_setzero_si256();
        int64_t i = 0;
        for (; i + 8 <= k; i += 8)
            vmax = _mm256_max_epi32(vmax, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(xr + i)), abs_mask));
        __m128i half = _mm_max_epi32(_mm256_castsi256_si128(vmax), _mm256_extracti128_si256(vmax, 1));
        half = _mm_max_epi32(half, _mm_shuffle_epi32(half, 0x4E));
        half = _mm_max_epi32(half, _mm_shuffle_epi32(half, 0xB1));
        uint32_t bits = (uint32_t)_mm_cvtsi128_si32(half);
        for (; i < k; i++) {
            uint32_t b;
            memcpy(&b, xr + i, 4);
            b &= 0x7FFFFFFFu;
            if (b > bits) bits = b;
        }
        const int finite = bits < 0x7F800000u;
        float amax;
        memcpy(&amax, &bits, 4);
        const float s = row_scale(amax, finite);
        scales[r] = s;
        if (!finite || s == 0.0f) {
            memset(qr, 0, (size_t)ldq);
            continue;
        }
        // Clamping before rounding equals rounding before clamping (±127 are integers); cvtps2dq rounds in the
        // current mode like rintf, and the clamped value is exact in int32.
        const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
        i = 0;
        for (; i + 32 <= k; i += 32) {
            __m256i c[4];
            for (int j = 0; j < 4; j++) {
                const __m256 v = _mm256_div_ps(_mm256_loadu_ps(xr + i + 8 * j), vs);
                c[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
            }
            const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
            _mm256_storeu_si256((__m256i *)(qr + i), _mm256_permutevar8x32_epi32(packed, order));
        }
        for (; i < k; i++) qr[i] = quantize_one(xr[i], s);
        for (i = k; i < ldq; i++) qr[i] = 0;
    }
}
#endif

void prima_quantize_rows(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q, int64_t ldq, float *scales) {
#if PRIMA_X86
    if (kernel_available(PRIMA_INT8_KERNEL_AVX2)) {
        quantize_rows_avx2(x, m, k, ldx, q, ldq, scales);
        return;
    }
#endif
    prima_quantize_rows_reference(x, m, k, ldx, q, ldq, scales);
}

// MARK: - Reference

static int valid_shape(int64_t n, int64_t k, int64_t block_size) {
    return n >= 1 && k >= 1 && k <= PRIMA_INT8_MAX_K && block_size >= 1 && (block_size >= k || block_size % 4 == 0);
}

int prima_int8_linear_reference(const float *x, int64_t m, int64_t k, const int8_t *q_w, const float *s_w,
                                int64_t n, int64_t block_size, const float *bias, float *y) {
    if (m < 0 || !valid_shape(n, k, block_size) || (m > 0 && (!x || !q_w || !s_w || !y))) return PRIMA_INT8_ERROR_ARGUMENT;
    if (block_size > k) block_size = k;
    const int64_t blocks = (k + block_size - 1) / block_size;
    int8_t *q_a = malloc((size_t)(m * k) + 1);
    float *s_a = malloc((size_t)m * sizeof(float) + 1);
    if (!q_a || !s_a) {
        free(q_a);
        free(s_a);
        return PRIMA_INT8_ERROR_MEMORY;
    }
    prima_quantize_rows_reference(x, m, k, k, q_a, k, s_a);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = 0; c < n; c++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < blocks; b++) {
                const int64_t end = (b + 1) * block_size < k ? (b + 1) * block_size : k;
                int32_t isum = 0;
                for (int64_t i = b * block_size; i < end; i++) isum += (int32_t)q_a[r * k + i] * (int32_t)q_w[c * k + i];
                const float term = (float)isum * s_w[c * blocks + b];
                acc = acc + term;
            }
            float out = acc * s_a[r];
            if (bias) out = out + bias[c];
            y[r * n + c] = out;
        }
    }
    free(q_a);
    free(s_a);
    return PRIMA_INT8_OK;
}

// MARK: - Packing

static size_t round_up_64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

int prima_int8_pack(const int8_t *q_w, const float *s_w, int64_t n, int64_t k, int64_t block_size,
                    prima_int8_weight **out, int64_t *bad_index) {
    if (!out) return PRIMA_INT8_ERROR_ARGUMENT;
    *out = NULL;
    if (!q_w || !s_w || !valid_shape(n, k, block_size)) return PRIMA_INT8_ERROR_ARGUMENT;
    for (int64_t i = 0; i < n * k; i++) {
        if (q_w[i] == -128) {
            if (bad_index) *bad_index = i;
            return PRIMA_INT8_ERROR_VALUE;
        }
    }
    if (block_size > k) block_size = k;
    const int64_t blocks = (k + block_size - 1) / block_size;
    const int64_t groups = (k + 3) / 4, panels = (n + PRIMA_INT8_PANEL - 1) / PRIMA_INT8_PANEL;
    const size_t header = round_up_64(sizeof(prima_int8_weight));
    const size_t values = round_up_64((size_t)(panels * groups * 64));
    const size_t per_block = round_up_64((size_t)(panels * blocks * PRIMA_INT8_PANEL * 4));
    const size_t bytes = header + values + 2 * per_block;
    unsigned char *memory = aligned_alloc(64, bytes);
    if (!memory) return PRIMA_INT8_ERROR_MEMORY;
    memset(memory, 0, bytes);
    prima_int8_weight *w = (prima_int8_weight *)memory;
    *w = (prima_int8_weight){.n = n, .k = k, .block_size = block_size, .blocks = blocks, .groups = groups,
                             .panels = panels, .values = (int8_t *)(memory + header),
                             .offsets = (int32_t *)(memory + header + values),
                             .scales = (float *)(memory + header + values + per_block), .bytes = bytes};
    for (int64_t c = 0; c < n; c++) {
        const int64_t p = c / PRIMA_INT8_PANEL, j = c % PRIMA_INT8_PANEL;
        int8_t *panel = w->values + p * groups * 64;
        for (int64_t i = 0; i < k; i++) panel[(i / 4) * 64 + j * 4 + i % 4] = q_w[c * k + i];
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t end = (b + 1) * block_size < k ? (b + 1) * block_size : k;
            int32_t sum = 0;
            for (int64_t i = b * block_size; i < end; i++) sum += q_w[c * k + i];
            w->offsets[(p * blocks + b) * PRIMA_INT8_PANEL + j] = -128 * sum;
            w->scales[(p * blocks + b) * PRIMA_INT8_PANEL + j] = s_w[c * blocks + b];
        }
    }
    *out = w;
    return PRIMA_INT8_OK;
}

void prima_int8_weight_free(prima_int8_weight *weight) { free(weight); }

size_t prima_int8_weight_bytes(const prima_int8_weight *weight) { return weight ? weight->bytes : 0; }

/// k-groups [*g0, *g1) of block b.
static ALWAYS_INLINE void block_groups(const prima_int8_weight *w, int64_t b, int64_t *g0, int64_t *g1) {
    const int64_t start = b * w->block_size, end = start + w->block_size < w->k ? start + w->block_size : w->k;
    *g0 = start / 4;  // block_size is a multiple of 4 whenever there is more than one block
    *g1 = (end + 3) / 4;
}

// MARK: - Scalar kernel (plain loops over the packed layout)

static void gemm_scalar(const int8_t *q_a, int64_t lda, const float *s_a, int64_t m, const prima_int8_weight *w,
                        const float *bias, float *y, int64_t ldy, int64_t n_begin, int64_t n_end) {
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = n_begin; c < n_end; c++) {
            const int64_t p = c / PRIMA_INT8_PANEL, j = c % PRIMA_INT8_PANEL;
            const int8_t *panel = w->values + p * w->groups * 64;
            float acc = 0.0f;
            for (int64_t b = 0; b < w->blocks; b++) {
                int64_t g0, g1;
                block_groups(w, b, &g0, &g1);
                int32_t isum = 0;
                for (int64_t g = g0; g < g1; g++)
                    for (int64_t i = 0; i < 4 && 4 * g + i < w->k; i++)
                        isum += (int32_t)q_a[r * lda + 4 * g + i] * (int32_t)panel[g * 64 + j * 4 + i];
                const float term = (float)isum * w->scales[(p * w->blocks + b) * PRIMA_INT8_PANEL + j];
                acc = acc + term;
            }
            float out = acc * s_a[r];
            if (bias) out = out + bias[c];
            y[r * ldy + c] = out;
        }
    }
}

#if PRIMA_X86

// MARK: - Shared SIMD pieces

/// The 4 activation bytes a[4g..4g+3] of one row, as one int32 to broadcast.
static ALWAYS_INLINE int32_t load4(const uint8_t *a) {
    int32_t v;
    memcpy(&v, a, 4);
    return v;
}

/// A kernel call's activation workspace: the rows of q_a[m, lda] transformed for the kernel and padded to
/// kp = 4·groups bytes. One allocation (`values` is its start).
struct activations {
    int64_t kp;
    uint8_t *values;        // [m][kp]: q + 128 for the vpdpbusd kernels (padding 128: the packed weights there
                            // are 0); |q| for the AVX2 kernel (padding 0)
    uint8_t *masks;         // AVX2 only, [m][kp]: 0xFF where q < 0, else 0 (padding 0)
    int32_t *corrections;   // AVX2 only, [m][blocks]: Σ |q| over the block's negative q
};

/// q + 128 as unsigned bytes (SSE2, which every x86-64 CPU has), padded with 128 to kp.
static void offset_rows(const int8_t *q_a, int64_t lda, int64_t m, int64_t k, int64_t kp, uint8_t *out) {
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (int64_t r = 0; r < m; r++) {
        const int8_t *src = q_a + r * lda;
        uint8_t *dst = out + r * kp;
        int64_t i = 0;
        for (; i + 16 <= k; i += 16)
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i)), flip));
        for (; i < k; i++) dst[i] = (uint8_t)(src[i] ^ 0x80);
        for (; i < kp; i++) dst[i] = 0x80;
    }
}

/// The AVX2 kernel's workspace (see its comment): |q|, the sign masks, and per row and block the sum of |q| over
/// the negative q.
__attribute__((target("avx2"))) static void magnitude_rows(const int8_t *q_a, int64_t lda, int64_t m,
                                                           const prima_int8_weight *w, struct activations *act) {
    const int64_t k = w->k, kp = act->kp;
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t r = 0; r < m; r++) {
        const int8_t *src = q_a + r * lda;
        uint8_t *magnitude = act->values + r * kp, *mask = act->masks + r * kp;
        int64_t i = 0;
        for (; i + 32 <= k; i += 32) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(src + i));
            _mm256_storeu_si256((__m256i *)(magnitude + i), _mm256_abs_epi8(q));
            _mm256_storeu_si256((__m256i *)(mask + i), _mm256_cmpgt_epi8(zero, q));
        }
        for (; i < k; i++) {
            magnitude[i] = (uint8_t)(src[i] < 0 ? -src[i] : src[i]);
            mask[i] = src[i] < 0 ? 0xFF : 0;
        }
        for (; i < kp; i++) magnitude[i] = mask[i] = 0;
        for (int64_t b = 0; b < w->blocks; b++) {
            // Σ max(-q, 0) over the block: psadbw sums 8 bytes at a time; at most 127·65536, so int32 holds it.
            const int64_t start = b * w->block_size, end = start + w->block_size < k ? start + w->block_size : k;
            __m256i sums = zero;
            int64_t j = start;
            for (; j + 32 <= end; j += 32) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(src + j));
                sums = _mm256_add_epi64(sums, _mm256_sad_epu8(_mm256_max_epi8(_mm256_sub_epi8(zero, q), zero), zero));
            }
            const __m128i half = _mm_add_epi64(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
            int64_t total = _mm_cvtsi128_si64(_mm_add_epi64(half, _mm_unpackhi_epi64(half, half)));
            for (; j < end; j++) total += src[j] < 0 ? -src[j] : 0;
            act->corrections[r * w->blocks + b] = (int32_t)total;
        }
    }
}

/// Allocates and fills the workspace for m rows: `magnitudes` 0 gives the vpdpbusd kernels' q + 128, 1 the AVX2
/// kernel's |q|, masks and corrections. NULL when out of memory (free with free(act->values)).
static int activation_workspace(const int8_t *q_a, int64_t lda, int64_t m, const prima_int8_weight *w,
                                int magnitudes, struct activations *act) {
    const int64_t kp = w->groups * 4;
    const size_t bytes = (size_t)(m * kp), corrections = magnitudes ? (size_t)(m * w->blocks) * sizeof(int32_t) : 0;
    uint8_t *memory = malloc(round_up_64(bytes) * (magnitudes ? 2 : 1) + corrections + 64);
    if (!memory) return 0;
    *act = (struct activations){.kp = kp, .values = memory};
    if (magnitudes) {
        act->masks = memory + round_up_64(bytes);
        act->corrections = (int32_t *)(memory + 2 * round_up_64(bytes));
        magnitude_rows(q_a, lda, m, w, act);
    } else {
        offset_rows(q_a, lda, m, w->k, kp, memory);
    }
    return 1;
}

// MARK: - AVX512-VNNI kernel: zmm, 16 columns per vector, one or two panels per tile

#define T512 "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"

/// One tile: rows [0, mr) of a (workspace rows, stride kp), columns 16·p … 16·p + 16·nv - 1 (ncols of them
/// valid). `single` = 1 when there is one block: the float accumulators are then not needed during the loop.
static ALWAYS_INLINE __attribute__((target(T512))) void
tile_avx512(const int mr, const int nv, const int single, const uint8_t *a, int64_t kp, const float *s_a,
            const prima_int8_weight *w, int64_t p, const float *bias, float *y, int64_t ldy, int64_t ncols) {
    __m512 facc[12][2];
    __m512i iacc[12][2];
    const int8_t *panel[2] = {w->values + p * w->groups * 64, w->values + (p + nv - 1) * w->groups * 64};
    UNROLL for (int r = 0; r < mr; r++) UNROLL for (int v = 0; v < nv; v++) facc[r][v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < w->blocks; b++) {
        int64_t g0, g1;
        block_groups(w, b, &g0, &g1);
        UNROLL for (int v = 0; v < nv; v++) {
            const __m512i offset = _mm512_load_si512(w->offsets + ((p + v) * w->blocks + b) * PRIMA_INT8_PANEL);
            UNROLL for (int r = 0; r < mr; r++) iacc[r][v] = offset;
        }
        for (int64_t g = g0; g < g1; g++) {
            __m512i wv[2];
            UNROLL for (int v = 0; v < nv; v++) wv[v] = _mm512_load_si512(panel[v] + g * 64);
            UNROLL for (int r = 0; r < mr; r++) {
                const __m512i av = _mm512_set1_epi32(load4(a + r * kp + 4 * g));
                UNROLL for (int v = 0; v < nv; v++) iacc[r][v] = _mm512_dpbusd_epi32(iacc[r][v], av, wv[v]);
            }
        }
        UNROLL for (int v = 0; v < nv; v++) {
            const __m512 scale = _mm512_load_ps(w->scales + ((p + v) * w->blocks + b) * PRIMA_INT8_PANEL);
            UNROLL for (int r = 0; r < mr; r++)
                facc[r][v] = _mm512_add_ps(facc[r][v], _mm512_mul_ps(_mm512_cvtepi32_ps(iacc[r][v]), scale));
        }
        if (single) break;
    }
    UNROLL for (int v = 0; v < nv; v++) {
        const int64_t left = ncols - 16 * v;
        const __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + 16 * (p + v)) : _mm512_setzero_ps();
        UNROLL for (int r = 0; r < mr; r++) {
            __m512 out = _mm512_mul_ps(facc[r][v], _mm512_set1_ps(s_a[r]));
            if (bias) out = _mm512_add_ps(out, bv);
            _mm512_mask_storeu_ps(y + r * ldy + 16 * (p + v), mask, out);
        }
    }
}

/// All rows for the panels [p, p + nv): full tiles of MR rows, then one tile of the remainder.
#define ROWS_AVX512(MR, NV, SINGLE)                                                                              \
    do {                                                                                                         \
        int64_t r = 0;                                                                                           \
        for (; r + MR <= m; r += MR)                                                                             \
            tile_avx512(MR, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols);          \
        switch (m - r) {                                                                                         \
        case 0: break;                                                                                           \
        case 1: tile_avx512(1, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        case 2: tile_avx512(2, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        case 3: tile_avx512(3, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        case 4: tile_avx512(4, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        case 5: tile_avx512(5, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        case 6: tile_avx512(6, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        case 7: tile_avx512(7, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        case 8: tile_avx512(8, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        case 9: tile_avx512(9, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        case 10: tile_avx512(10, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        default: tile_avx512(11, NV, SINGLE, ws + r * kp, kp, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break; \
        }                                                                                                        \
    } while (0)

// Register budget (32 zmm): one block keeps MR·NV int accumulators (12·2 = 24); several blocks add as many float
// accumulators, so MR drops to 6 (12 + 12).
#define AVX512_MR_SINGLE 12
#define AVX512_MR_BLOCKS 6

__attribute__((target(T512))) static int gemm_avx512(const int8_t *q_a, int64_t lda, const float *s_a, int64_t m,
                                                     const prima_int8_weight *w, const float *bias, float *y,
                                                     int64_t ldy, int64_t n_begin, int64_t n_end) {
    struct activations act;
    if (!activation_workspace(q_a, lda, m, w, 0, &act)) return PRIMA_INT8_ERROR_MEMORY;
    const uint8_t *ws = act.values;
    const int64_t kp = act.kp;
    const int single = w->blocks == 1;
    const int64_t p_end = (n_end + PRIMA_INT8_PANEL - 1) / PRIMA_INT8_PANEL;
    for (int64_t p = n_begin / PRIMA_INT8_PANEL; p < p_end; p += 2) {
        const int64_t ncols = n_end - 16 * p;
        if (p + 1 < p_end) {
            if (single) ROWS_AVX512(AVX512_MR_SINGLE, 2, 1);
            else ROWS_AVX512(AVX512_MR_BLOCKS, 2, 0);
        } else {
            if (single) ROWS_AVX512(AVX512_MR_SINGLE, 1, 1);
            else ROWS_AVX512(AVX512_MR_BLOCKS, 1, 0);
        }
    }
    free(act.values);
    return PRIMA_INT8_OK;
}

// MARK: - AVX-VNNI kernel: ymm, one panel (2 ymm of 8 columns) per tile

// Shared by the two ymm kernels (AVX-VNNI and AVX2), which differ only in how they form the int32 block sums.

/// Step 3 of the contract for one block of a tile: facc[r][v] += float(iacc[r][v]) * scale (mul, then add).
static ALWAYS_INLINE __attribute__((target("avx2"))) void
ymm_scale_block(__m256 facc[][2], __m256i iacc[][2], const int mr, const float *scales) {
    UNROLL for (int v = 0; v < 2; v++) {
        const __m256 scale = _mm256_load_ps(scales + 8 * v);
        UNROLL for (int r = 0; r < mr; r++)
            facc[r][v] = _mm256_add_ps(facc[r][v], _mm256_mul_ps(_mm256_cvtepi32_ps(iacc[r][v]), scale));
    }
}

/// Step 4 for a tile of mr rows and the panel's first `ncols` columns (≤ 16): y = facc * s_a (+ bias).
static ALWAYS_INLINE __attribute__((target("avx2"))) void
ymm_store_tile(__m256 facc[][2], const int mr, const float *s_a, const float *bias, float *y, int64_t ldy,
               int64_t ncols) {
    UNROLL for (int v = 0; v < 2; v++) {
        const int64_t left = ncols - 8 * v;
        if (left <= 0) break;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)),
                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 bv = bias ? _mm256_maskload_ps(bias + 8 * v, mask) : _mm256_setzero_ps();
        UNROLL for (int r = 0; r < mr; r++) {
            __m256 out = _mm256_mul_ps(facc[r][v], _mm256_set1_ps(s_a[r]));
            if (bias) out = _mm256_add_ps(out, bv);
            _mm256_maskstore_ps(y + r * ldy + 8 * v, mask, out);
        }
    }
}

#define TVNNI "avx2,avxvnni"

static ALWAYS_INLINE __attribute__((target(TVNNI))) void
tile_avxvnni(const int mr, const int single, const struct activations *act, int64_t r0, const float *s_a,
             const prima_int8_weight *w, int64_t p, const float *bias, float *y, int64_t ldy, int64_t ncols) {
    const int64_t kp = act->kp;
    const uint8_t *a = act->values + r0 * kp;
    __m256 facc[6][2];
    __m256i iacc[6][2];
    const int8_t *panel = w->values + p * w->groups * 64;
    UNROLL for (int r = 0; r < mr; r++) UNROLL for (int v = 0; v < 2; v++) facc[r][v] = _mm256_setzero_ps();
    for (int64_t b = 0; b < w->blocks; b++) {
        int64_t g0, g1;
        block_groups(w, b, &g0, &g1);
        UNROLL for (int v = 0; v < 2; v++) {
            const __m256i offset = _mm256_load_si256((const __m256i *)(w->offsets + (p * w->blocks + b) * PRIMA_INT8_PANEL + 8 * v));
            UNROLL for (int r = 0; r < mr; r++) iacc[r][v] = offset;
        }
        for (int64_t g = g0; g < g1; g++) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)(panel + g * 64));
            const __m256i w1 = _mm256_load_si256((const __m256i *)(panel + g * 64 + 32));
            UNROLL for (int r = 0; r < mr; r++) {
                const __m256i av = _mm256_set1_epi32(load4(a + r * kp + 4 * g));
                iacc[r][0] = _mm256_dpbusd_avx_epi32(iacc[r][0], av, w0);
                iacc[r][1] = _mm256_dpbusd_avx_epi32(iacc[r][1], av, w1);
            }
        }
        ymm_scale_block(facc, iacc, mr, w->scales + (p * w->blocks + b) * PRIMA_INT8_PANEL);
        if (single) break;
    }
    ymm_store_tile(facc, mr, s_a, bias ? bias + 16 * p : NULL, y + 16 * p, ldy, ncols);
}

/// All rows for panel p with a ymm tile function: full tiles of MR rows (MR ≤ 6), then one of the remainder.
#define ROWS_YMM(TILE, MR, SINGLE)                                                                                \
    do {                                                                                                          \
        int64_t r = 0;                                                                                            \
        for (; r + MR <= m; r += MR) TILE(MR, SINGLE, &act, r, s_a + r, w, p, bias, y + r * ldy, ldy, ncols);    \
        switch (m - r) {                                                                                          \
        case 0: break;                                                                                            \
        case 1: TILE(1, SINGLE, &act, r, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break;                     \
        case 2: TILE(2, SINGLE, &act, r, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break;                     \
        case 3: TILE(3, SINGLE, &act, r, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break;                     \
        case 4: TILE(4, SINGLE, &act, r, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break;                     \
        default: TILE(5, SINGLE, &act, r, s_a + r, w, p, bias, y + r * ldy, ldy, ncols); break;                    \
        }                                                                                                         \
    } while (0)

// Register budget (16 ymm): 6 rows × 2 vectors = 12 int accumulators + 2 weights + 1 broadcast. With several
// blocks the 12 float accumulators do not fit as well; the compiler keeps some on the stack, touched once per
// block, which measured faster (452 against 392 GOPS at M=128, K=1024, N=3072) than 3 rows all in registers.
#define AVXVNNI_MR_SINGLE 6
#define AVXVNNI_MR_BLOCKS 6

__attribute__((target(TVNNI))) static int gemm_avxvnni(const int8_t *q_a, int64_t lda, const float *s_a, int64_t m,
                                                       const prima_int8_weight *w, const float *bias, float *y,
                                                       int64_t ldy, int64_t n_begin, int64_t n_end) {
    struct activations act;
    if (!activation_workspace(q_a, lda, m, w, 0, &act)) return PRIMA_INT8_ERROR_MEMORY;
    const int64_t p_end = (n_end + PRIMA_INT8_PANEL - 1) / PRIMA_INT8_PANEL;
    for (int64_t p = n_begin / PRIMA_INT8_PANEL; p < p_end; p++) {
        const int64_t ncols = n_end - 16 * p;
        if (w->blocks == 1) ROWS_YMM(tile_avxvnni, AVXVNNI_MR_SINGLE, 1);
        else ROWS_YMM(tile_avxvnni, AVXVNNI_MR_BLOCKS, 0);
    }
    free(act.values);
    return PRIMA_INT8_OK;
}

// MARK: - AVX2 kernel: one's-complement sign transfer, vpmaddubsw(|a|, w ^ mask(a)) then vpmaddwd with ones
//
// vpmaddubsw multiplies unsigned by signed bytes and adds adjacent pairs into int16 with saturation, so a signed
// activation needs its sign moved onto the weight. vpsignb does it exactly, but on AMD Zen 4 (measured: each of
// the three, and any mix of them, issues twice per cycle) it shares two pipes with vpmaddubsw and vpmaddwd, so 32
// products took three of those slots, while vpxor and vpaddd issue on any of four. So the kernel flips the
// weight's bits where a < 0 instead: w ^ 0xFF = -w - 1, and
//   |a|·(w ^ mask(a)) = a·w       (a ≥ 0, mask 0)
//   |a|·(w ^ mask(a)) = a·w + a   (a < 0: (-a)·(-w - 1))
// so Σ_k |a_k|·(w_k ^ mask(a_k)) = Σ_k a_k·w_k − c with c = Σ_{a_k < 0} |a_k|, which depends on the row and the
// block only: the workspace holds it, and it starts the block's int32 accumulators. Exact: |a| ≤ 127 and
// w ^ mask in [-128, 127], so a pair is at most 2·127·128 = 32512 < 32767 and never saturates. (The offset trick
// of the VNNI kernels would: 2·255·127 > 32767.)

static ALWAYS_INLINE __attribute__((target("avx2"))) void
tile_avx2(const int mr, const int single, const struct activations *act, int64_t r0, const float *s_a,
          const prima_int8_weight *w, int64_t p, const float *bias, float *y, int64_t ldy, int64_t ncols) {
    __m256 facc[6][2];
    __m256i iacc[6][2];
    const int64_t kp = act->kp;
    const uint8_t *magnitudes = act->values + r0 * kp, *masks = act->masks + r0 * kp;
    const int32_t *corrections = act->corrections + r0 * w->blocks;
    const int8_t *panel = w->values + p * w->groups * 64;
    const __m256i ones = _mm256_set1_epi16(1);
    UNROLL for (int r = 0; r < mr; r++) UNROLL for (int v = 0; v < 2; v++) facc[r][v] = _mm256_setzero_ps();
    for (int64_t b = 0; b < w->blocks; b++) {
        int64_t g0, g1;
        block_groups(w, b, &g0, &g1);
        UNROLL for (int r = 0; r < mr; r++) iacc[r][0] = iacc[r][1] = _mm256_set1_epi32(corrections[r * w->blocks + b]);
        for (int64_t g = g0; g < g1; g++) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)(panel + g * 64));
            const __m256i w1 = _mm256_load_si256((const __m256i *)(panel + g * 64 + 32));
            UNROLL for (int r = 0; r < mr; r++) {
                const __m256i magnitude = _mm256_set1_epi32(load4(magnitudes + r * kp + 4 * g));
                const __m256i mask = _mm256_set1_epi32(load4(masks + r * kp + 4 * g));
                const __m256i p0 = _mm256_maddubs_epi16(magnitude, _mm256_xor_si256(w0, mask));
                const __m256i p1 = _mm256_maddubs_epi16(magnitude, _mm256_xor_si256(w1, mask));
                iacc[r][0] = _mm256_add_epi32(iacc[r][0], _mm256_madd_epi16(p0, ones));
                iacc[r][1] = _mm256_add_epi32(iacc[r][1], _mm256_madd_epi16(p1, ones));
            }
        }
        ymm_scale_block(facc, iacc, mr, w->scales + (p * w->blocks + b) * PRIMA_INT8_PANEL);
        if (single) break;
    }
    ymm_store_tile(facc, mr, s_a, bias ? bias + 16 * p : NULL, y + 16 * p, ldy, ncols);
}

// Register budget (16 ymm): ones, 2 weights, 2 broadcasts and 2 products leave 9: one block, 4 rows × 2 vectors
// of int accumulators. Several blocks add as many float accumulators; 3 rows (6 + 6, a few kept on the stack and
// touched once per block) measured 10-15% faster than 2 rows all in registers (M=128, K=1024, N=3072 and
// M=64, K=1152, N=768, block32), whose 2 rows share each weight load too little; 4 rows were no faster.
#define AVX2_MR_SINGLE 4
#define AVX2_MR_BLOCKS 3

__attribute__((target("avx2"))) static int gemm_avx2(const int8_t *q_a, int64_t lda, const float *s_a, int64_t m,
                                                     const prima_int8_weight *w, const float *bias, float *y,
                                                     int64_t ldy, int64_t n_begin, int64_t n_end) {
    struct activations act;
    if (!activation_workspace(q_a, lda, m, w, 1, &act)) return PRIMA_INT8_ERROR_MEMORY;
    const int64_t p_end = (n_end + PRIMA_INT8_PANEL - 1) / PRIMA_INT8_PANEL;
    for (int64_t p = n_begin / PRIMA_INT8_PANEL; p < p_end; p++) {
        const int64_t ncols = n_end - 16 * p;
        if (w->blocks == 1) ROWS_YMM(tile_avx2, AVX2_MR_SINGLE, 1);
        else ROWS_YMM(tile_avx2, AVX2_MR_BLOCKS, 0);
    }
    free(act.values);
    return PRIMA_INT8_OK;
}

#endif  // PRIMA_X86

// MARK: - Entry points

int prima_int8_gemm(int kernel, const int8_t *q_a, int64_t lda, const float *s_a, int64_t m,
                    const prima_int8_weight *weight, const float *bias, float *y, int64_t ldy,
                    int64_t n_begin, int64_t n_end) {
    if (kernel < 0 || kernel >= PRIMA_INT8_KERNEL_COUNT || !weight || m < 0) return PRIMA_INT8_ERROR_ARGUMENT;
    if (n_begin < 0 || n_begin > n_end || n_end > weight->n || n_begin % PRIMA_INT8_PANEL != 0)
        return PRIMA_INT8_ERROR_ARGUMENT;
    if (!kernel_available(kernel)) return PRIMA_INT8_ERROR_UNSUPPORTED;
    if (m == 0 || n_begin == n_end) return PRIMA_INT8_OK;
    if (!q_a || !s_a || !y || lda < weight->k || ldy < n_end) return PRIMA_INT8_ERROR_ARGUMENT;
    switch (kernel) {
#if PRIMA_X86
    case PRIMA_INT8_KERNEL_AVX2: return gemm_avx2(q_a, lda, s_a, m, weight, bias, y, ldy, n_begin, n_end);
    case PRIMA_INT8_KERNEL_AVXVNNI: return gemm_avxvnni(q_a, lda, s_a, m, weight, bias, y, ldy, n_begin, n_end);
    case PRIMA_INT8_KERNEL_AVX512VNNI: return gemm_avx512(q_a, lda, s_a, m, weight, bias, y, ldy, n_begin, n_end);
#endif
    default: gemm_scalar(q_a, lda, s_a, m, weight, bias, y, ldy, n_begin, n_end); return PRIMA_INT8_OK;
    }
}

int prima_int8_linear(int kernel, const float *x, int64_t m, const prima_int8_weight *weight, const float *bias,
                      float *y) {
    if (!weight || m < 0 || (m > 0 && !x)) return PRIMA_INT8_ERROR_ARGUMENT;
    if (kernel < 0 || kernel >= PRIMA_INT8_KERNEL_COUNT) return PRIMA_INT8_ERROR_ARGUMENT;
    if (!kernel_available(kernel)) return PRIMA_INT8_ERROR_UNSUPPORTED;
    if (m == 0) return PRIMA_INT8_OK;
    int8_t *q_a = malloc((size_t)(m * weight->k));
    float *s_a = malloc((size_t)m * sizeof(float));
    int status = PRIMA_INT8_ERROR_MEMORY;
    if (q_a && s_a) {
        prima_quantize_rows(x, m, weight->k, weight->k, q_a, weight->k, s_a);
        status = prima_int8_gemm(kernel, q_a, weight->k, s_a, m, weight, bias, y, weight->n, 0, weight->n);
    }
    free(q_a);
    free(s_a);
    return status;
}
