// f32 kernels for the work around the matrix products: exp, activations, normalisations and attention.
//
// Each kernel is written once on 16-lane vectors (Clang vector extensions) and compiled three times: for AVX-512,
// for AVX2 + FMA, and for the plain target (where the compiler splits the 16 lanes into what the machine has). Every
// lane does the same IEEE operations in the same order on every target: contraction is off, fused multiply-adds are
// explicit (__builtin_elementwise_fma, correctly rounded everywhere), and horizontal sums and maxima run in one fixed
// tree. So the three builds give the same bits, which the tests check; they differ only in speed.
//
// Shapes: x [N, C] row-major; attention q [B·T, H·D], k and v [B·T, KV·D], out [B·T, H·D].
#pragma STDC FP_CONTRACT OFF
// Every function taking or returning a vector is always inlined into one build, so no vector crosses a call and the
// ABI warning (vectors passed differently with and without AVX-512) does not apply.
#pragma clang diagnostic ignored "-Wpsabi"

#include "PrimaKernels.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"

typedef float v16f __attribute__((vector_size(64), aligned(4)));
typedef int32_t v16i __attribute__((vector_size(64), aligned(4)));

// MARK: - ISA choice

uint32_t prima_float_isas_available(void) {
    uint32_t isas = 1u << PRIMA_FLOAT_ISA_GENERIC;
#if PRIMA_X86
    const uint32_t f = prima_cpu_features();
    if ((f & PRIMA_CPU_AVX2) && (f & PRIMA_CPU_FMA)) isas |= 1u << PRIMA_FLOAT_ISA_AVX2;
    if ((f & PRIMA_CPU_AVX512F) && (f & PRIMA_CPU_FMA)) isas |= 1u << PRIMA_FLOAT_ISA_AVX512;
#endif
    return isas;
}

int prima_float_isa_best(void) {
    static int cached = -1;
    int value = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (value < 0) {
        const uint32_t isas = prima_float_isas_available();
        value = (isas >> PRIMA_FLOAT_ISA_AVX512) & 1 ? PRIMA_FLOAT_ISA_AVX512
                : (isas >> PRIMA_FLOAT_ISA_AVX2) & 1 ? PRIMA_FLOAT_ISA_AVX2 : PRIMA_FLOAT_ISA_GENERIC;
        __atomic_store_n(&cached, value, __ATOMIC_RELAXED);
    }
    return value;
}

// MARK: - Vector helpers

static ALWAYS_INLINE v16f splat(float x) { return (v16f){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
static ALWAYS_INLINE v16i splat_i(int32_t x) { return (v16i){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
static ALWAYS_INLINE v16f load(const float *p) { return *(const v16f *)p; }
static ALWAYS_INLINE void store(float *p, v16f x) { *(v16f *)p = x; }
static ALWAYS_INLINE v16f fma16(v16f a, v16f b, v16f c) { return __builtin_elementwise_fma(a, b, c); }
static ALWAYS_INLINE v16i bits_of(v16f x) { return (v16i)x; }
static ALWAYS_INLINE v16f float_of(v16i x) { return (v16f)x; }
/// mask ? a : b, with mask lanes all ones or all zeros (the result of a vector comparison).
static ALWAYS_INLINE v16f select16(v16i mask, v16f a, v16f b) { return float_of((mask & bits_of(a)) | (~mask & bits_of(b))); }

/// Σ of the 16 lanes as ((l0+l8) + (l4+l12)) + … : halves added pairwise, always in this order.
static ALWAYS_INLINE float sum16(v16f x) {
    typedef float v8f __attribute__((vector_size(32), aligned(4)));
    typedef float v4f __attribute__((vector_size(16), aligned(4)));
    v8f h = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
    v4f q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
    return (q[0] + q[2]) + (q[1] + q[3]);
}

/// max of the 16 lanes (NaN lanes are ignored unless all are NaN, as fmaxf does).
static ALWAYS_INLINE float max16(v16f x) {
    float m = x[0];
    for (int i = 1; i < 16; i++) m = fmaxf(m, x[i]);
    return m;
}

// MARK: - exp

// exp(x) = 2^n · p(r) with n = rint(x · log2 e) and r = x − n·ln 2 (ln 2 split in two so r is exact to a few ulps),
// p the degree-6 Taylor-like minimax polynomial of Cephes' expf on [-ln2/2, ln2/2]. 2^n is applied in two factors
// 2^(n/2)·2^(n − n/2) so that n = 128 (x just below ln FLT_MAX) and n = −126 stay representable. Results below
// FLT_MIN are flushed to 0 (x < EXP_LOWEST), above FLT_MAX they are +inf; NaN stays NaN. The error bound, measured
// over every float in [EXP_LOWEST, EXP_HIGHEST], is PRIMA_EXP_MAX_ULP (checked by the tests).
#define EXP_LOWEST (-87.33654475f)    // ln FLT_MIN
#define EXP_HIGHEST 88.72283172f      // ln FLT_MAX rounded down to a float (0x1.62e42ep+6)

static ALWAYS_INLINE v16f exp16(v16f x) {
    const v16f clamped = __builtin_elementwise_min(__builtin_elementwise_max(x, splat(EXP_LOWEST)), splat(EXP_HIGHEST));
    const v16f n = __builtin_elementwise_roundeven(clamped * splat(1.44269504088896341f));
    v16f r = fma16(n, splat(-0.693359375f), clamped);
    r = fma16(n, splat(2.12194440e-4f), r);
    v16f p = splat(1.9875691500e-4f);
    p = fma16(p, r, splat(1.3981999507e-3f));
    p = fma16(p, r, splat(8.3334519073e-3f));
    p = fma16(p, r, splat(4.1665795894e-2f));
    p = fma16(p, r, splat(1.6666665459e-1f));
    p = fma16(p, r, splat(5.0000001201e-1f));
    p = fma16(p, r * r, r + splat(1.0f));
    const v16i ni = __builtin_convertvector(n, v16i);
    const v16i half = ni >> 1;
    const v16f scale1 = float_of((half + 127) << 23), scale2 = float_of((ni - half + 127) << 23);
    v16f y = (p * scale1) * scale2;
    y = select16(x < splat(EXP_LOWEST), splat(0.0f), y);
    y = select16(x > splat(EXP_HIGHEST), splat(INFINITY), y);
    return select16(x != x, x, y);
}

float prima_exp_reference(float x) {
    if (x != x) return x;
    if (x < EXP_LOWEST) return 0.0f;
    if (x > EXP_HIGHEST) return INFINITY;
    const float n = __builtin_roundevenf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r + 1.0f);
    const int32_t ni = (int32_t)n, half = ni >> 1;
    float scale1, scale2;
    const int32_t b1 = (half + 127) << 23, b2 = (ni - half + 127) << 23;
    memcpy(&scale1, &b1, 4);
    memcpy(&scale2, &b2, 4);
    return (p * scale1) * scale2;
}

/// Each kernel below is an always-inline body instantiated for the three builds, with a dispatcher on `isa`.
#if PRIMA_X86
#define TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define DISPATCH(isa, body, ...)                                                                          \
    do {                                                                                                  \
        if ((isa) == PRIMA_FLOAT_ISA_AVX512) body##_avx512(__VA_ARGS__);                                  \
        else if ((isa) == PRIMA_FLOAT_ISA_AVX2) body##_avx2(__VA_ARGS__);                                 \
        else body##_generic(__VA_ARGS__);                                                                 \
    } while (0)
#define INSTANTIATE(body, params, args)                                                                   \
    TARGET_AVX512 static void body##_avx512 params { body args; }                                         \
    TARGET_AVX2 static void body##_avx2 params { body args; }                                             \
    static void body##_generic params { body args; }
#else
#define DISPATCH(isa, body, ...) body##_generic(__VA_ARGS__)
#define INSTANTIATE(body, params, args) static void body##_generic params { body args; }
#endif

/// Applies `f` (a v16f → v16f expression of `X`) to x[0..<n] into y: whole vectors, then the tail through a
/// zero-padded vector, so every element goes through the same lane operations.
#define MAP16(n, x, y, X, f)                                                                              \
    do {                                                                                                  \
        int64_t i_ = 0;                                                                                   \
        for (; i_ + 16 <= (n); i_ += 16) {                                                                \
            const v16f X = load((x) + i_);                                                                \
            store((y) + i_, (f));                                                                         \
        }                                                                                                 \
        if (i_ < (n)) {                                                                                   \
            float in_[16] = {0}, out_[16];                                                                \
            memcpy(in_, (x) + i_, (size_t)((n) - i_) * 4);                                                \
            const v16f X = load(in_);                                                                     \
            store(out_, (f));                                                                             \
            memcpy((y) + i_, out_, (size_t)((n) - i_) * 4);                                               \
        }                                                                                                 \
    } while (0)

static ALWAYS_INLINE void exp_body(const float *x, float *y, int64_t n) { MAP16(n, x, y, X, exp16(X)); }
INSTANTIATE(exp_body, (const float *x, float *y, int64_t n), (x, y, n))

void prima_exp(int isa, const float *x, float *y, int64_t n) { DISPATCH(isa, exp_body, x, y, n); }

// MARK: - Activations

/// erf(z) by Abramowitz & Stegun 7.1.26: sign(z)·(1 − t·r(t)·exp(−z²)), t = 1/(1 + p|z|), |error| ≤ 1.5e-7; the
/// operations of PyTorch's Vectorized<float>::erf (aten/src/ATen/cpu/vec/vec512/vec512_float.h).
static ALWAYS_INLINE v16f erf16(v16f z) {
    const v16i sign = bits_of(z) & splat_i((int32_t)0x80000000);
    const v16f a = float_of(bits_of(z) & splat_i(0x7FFFFFFF));
    const v16f t = splat(1.0f) / fma16(splat(0.3275911f), a, splat(1.0f));
    v16f r = fma16(splat(1.061405429f), t, splat(-1.453152027f));
    r = fma16(r, t, splat(1.421413741f));
    r = fma16(r, t, splat(-0.284496736f));
    r = fma16(r, t, splat(0.254829592f));
    const v16f e = exp16(float_of(bits_of(z * z) ^ splat_i((int32_t)0x80000000)));
    const v16f y = fma16(float_of(bits_of(e) ^ splat_i((int32_t)0x80000000)) * t, r, splat(1.0f));
    return float_of(bits_of(y) ^ sign);
}

static ALWAYS_INLINE v16f gelu16(v16f x) { return (x * splat(0.5f)) * (splat(1.0f) + erf16(x * splat(0.70710678118654752f))); }
static ALWAYS_INLINE v16f silu16(v16f x) { return x / (splat(1.0f) + exp16(float_of(bits_of(x) ^ splat_i((int32_t)0x80000000)))); }

static ALWAYS_INLINE void gelu_body(const float *x, float *y, int64_t n) { MAP16(n, x, y, X, gelu16(X)); }
static ALWAYS_INLINE void silu_body(const float *x, float *y, int64_t n) { MAP16(n, x, y, X, silu16(X)); }
INSTANTIATE(gelu_body, (const float *x, float *y, int64_t n), (x, y, n))
INSTANTIATE(silu_body, (const float *x, float *y, int64_t n), (x, y, n))

int prima_activation(int isa, int activation, const float *x, float *y, int64_t n) {
    switch (activation) {
    case PRIMA_ACTIVATION_GELU: DISPATCH(isa, gelu_body, x, y, n); return 0;
    case PRIMA_ACTIVATION_SILU: DISPATCH(isa, silu_body, x, y, n); return 0;
    default: return -1;
    }
}

/// y = act(x)·g in blocks of 16 (tail through padded vectors, as MAP16).
#define GATED16(act)                                                                                      \
    static ALWAYS_INLINE void act##_gated_body(const float *x, const float *g, float *y, int64_t n) {     \
        int64_t i = 0;                                                                                    \
        for (; i + 16 <= n; i += 16) store(y + i, act##16(load(x + i)) * load(g + i));                    \
        if (i < n) {                                                                                      \
            float xs[16] = {0}, gs[16] = {0}, ys[16];                                                     \
            memcpy(xs, x + i, (size_t)(n - i) * 4);                                                       \
            memcpy(gs, g + i, (size_t)(n - i) * 4);                                                       \
            store(ys, act##16(load(xs)) * load(gs));                                                      \
            memcpy(y + i, ys, (size_t)(n - i) * 4);                                                       \
        }                                                                                                 \
    }                                                                                                     \
    INSTANTIATE(act##_gated_body, (const float *x, const float *g, float *y, int64_t n), (x, g, y, n))
GATED16(gelu)
GATED16(silu)

int prima_activation_gated(int isa, int activation, const float *x, const float *g, float *y, int64_t n) {
    switch (activation) {
    case PRIMA_ACTIVATION_GELU: DISPATCH(isa, gelu_gated_body, x, g, y, n); return 0;
    case PRIMA_ACTIVATION_SILU: DISPATCH(isa, silu_gated_body, x, g, y, n); return 0;
    default: return -1;
    }
}

// MARK: - Normalisations

/// Σ x[0..<c]: 16 lane sums over whole vectors, the fixed lane tree, then the tail in order.
static ALWAYS_INLINE float row_sum(const float *x, int64_t c) {
    v16f acc = splat(0.0f);
    int64_t i = 0;
    for (; i + 16 <= c; i += 16) acc += load(x + i);
    float s = sum16(acc);
    for (; i < c; i++) s += x[i];
    return s;
}

/// Σ (x[i] − m)² (m = 0 for the plain sum of squares), as row_sum.
static ALWAYS_INLINE float row_squares(const float *x, int64_t c, float m) {
    v16f acc = splat(0.0f);
    int64_t i = 0;
    for (; i + 16 <= c; i += 16) {
        const v16f dv = load(x + i) - splat(m);
        acc = fma16(dv, dv, acc);
    }
    float s = sum16(acc);
    for (; i < c; i++) s = fmaf(x[i] - m, x[i] - m, s);
    return s;
}

static ALWAYS_INLINE void layer_norm_body(const float *x, int64_t rows, int64_t c, const float *gamma,
                                          const float *beta, float eps, float *y) {
    for (int64_t row = 0; row < rows; row++) {
        const float *xr = x + row * c;
        float *yr = y + row * c;
        const float mean = row_sum(xr, c) / (float)c;
        const float rstd = 1.0f / sqrtf(row_squares(xr, c, mean) / (float)c + eps);
        const float shift = -mean * rstd;
        int64_t i = 0;
        for (; i + 16 <= c; i += 16) {
            v16f v = load(xr + i) * splat(rstd) + splat(shift);
            if (gamma) v *= load(gamma + i);
            if (beta) v += load(beta + i);
            store(yr + i, v);
        }
        for (; i < c; i++) {
            float v = xr[i] * rstd + shift;
            if (gamma) v *= gamma[i];
            if (beta) v += beta[i];
            yr[i] = v;
        }
    }
}
INSTANTIATE(layer_norm_body,
            (const float *x, int64_t rows, int64_t c, const float *gamma, const float *beta, float eps, float *y),
            (x, rows, c, gamma, beta, eps, y))

void prima_layer_norm(int isa, const float *x, int64_t rows, int64_t c, const float *gamma, const float *beta,
                      float eps, float *y) {
    DISPATCH(isa, layer_norm_body, x, rows, c, gamma, beta, eps, y);
}

static ALWAYS_INLINE void rms_norm_body(const float *x, int64_t rows, int64_t c, const float *w, float eps, float *y) {
    for (int64_t row = 0; row < rows; row++) {
        const float *xr = x + row * c;
        float *yr = y + row * c;
        const float scale = 1.0f / sqrtf(row_squares(xr, c, 0.0f) / (float)c + eps);
        int64_t i = 0;
        for (; i + 16 <= c; i += 16) store(yr + i, load(w + i) * (load(xr + i) * splat(scale)));
        for (; i < c; i++) yr[i] = w[i] * (xr[i] * scale);
    }
}
INSTANTIATE(rms_norm_body, (const float *x, int64_t rows, int64_t c, const float *w, float eps, float *y),
            (x, rows, c, w, eps, y))

void prima_rms_norm(int isa, const float *x, int64_t rows, int64_t c, const float *w, float eps, float *y) {
    DISPATCH(isa, rms_norm_body, x, rows, c, w, eps, y);
}

// MARK: - Attention

#define ROWS 4   // query rows per block: 4 rows × 32 key columns (or 32 value dims) = 8 vector accumulators

/// scores[r·tp + j] = (Σ_e q_r[e]·kt[e·tp + j])·scale for the 4 rows and j in [c0, c1) (multiples of 16).
static ALWAYS_INLINE void block_scores(const float *const *qr, const float *kt, int64_t tp, int64_t d, int64_t c0,
                                       int64_t c1, float scale, float *scores) {
    int64_t j = c0;
    for (; j + 32 <= c1; j += 32) {
        v16f a[ROWS][2];
        for (int r = 0; r < ROWS; r++) a[r][0] = a[r][1] = splat(0.0f);
        for (int64_t e = 0; e < d; e++) {
            const v16f k0 = load(kt + e * tp + j), k1 = load(kt + e * tp + j + 16);
            for (int r = 0; r < ROWS; r++) {
                const v16f qe = splat(qr[r][e]);
                a[r][0] = fma16(qe, k0, a[r][0]);
                a[r][1] = fma16(qe, k1, a[r][1]);
            }
        }
        for (int r = 0; r < ROWS; r++) {
            store(scores + r * tp + j, a[r][0] * splat(scale));
            store(scores + r * tp + j + 16, a[r][1] * splat(scale));
        }
    }
    for (; j < c1; j += 16) {
        v16f a[ROWS];
        for (int r = 0; r < ROWS; r++) a[r] = splat(0.0f);
        for (int64_t e = 0; e < d; e++) {
            const v16f k0 = load(kt + e * tp + j);
            for (int r = 0; r < ROWS; r++) a[r] = fma16(splat(qr[r][e]), k0, a[r]);
        }
        for (int r = 0; r < ROWS; r++) store(scores + r * tp + j, a[r] * splat(scale));
    }
}

/// Masks and softmaxes s[c0..<c1) of query i in place (columns ≥ t become 0); returns 0 when the query sees no key.
/// bias[j] is 0 or −FLT_MAX for j < t (the padding) and −inf from t on (no key there). When lse is not NULL, *lse
/// gets the row's log-sum-exp m + logf(Σ exp(s − m)) (what the backward pass recomputes the probabilities from); it
/// is only written, so the probabilities do not depend on it.
static ALWAYS_INLINE int masked_softmax(float *s, int64_t c0, int64_t c1, int64_t t, int32_t lo, int32_t hi,
                                        const float *bias, float *lse) {
    const v16i lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    v16f vmax = splat(-INFINITY);
    for (int64_t j = c0; j < c1; j += 16) {
        const v16i index = splat_i((int32_t)j) + lanes;
        const v16i outside = (index < splat_i(lo)) | (index >= splat_i(hi));
        v16f v = load(s + j) + select16(outside, splat(-FLT_MAX), load(bias + j));
        v = select16(index >= splat_i((int32_t)t), splat(-INFINITY), v);
        store(s + j, v);
        vmax = __builtin_elementwise_max(vmax, v);
    }
    const float m = max16(vmax);
    if (!(m > -FLT_MAX / 2)) return 0;
    v16f vsum = splat(0.0f);
    for (int64_t j = c0; j < c1; j += 16) {
        const v16f e = exp16(load(s + j) - splat(m));
        store(s + j, e);
        vsum += e;
    }
    const float sum = sum16(vsum), inverse = 1.0f / sum;
    for (int64_t j = c0; j < c1; j += 16) store(s + j, load(s + j) * splat(inverse));
    if (lse) *lse = m + logf(sum);
    return 1;
}

/// out_r[0..<d] = Σ_{j in [c0, c1)} p_r[j]·v[j·ldv + ·] for the 4 rows (rows ≥ `rows` are computed and dropped).
static ALWAYS_INLINE void block_values(const float *scores, int64_t tp, const float *v, int64_t ldv, int64_t d,
                                       int64_t c0, int64_t c1, float *const *outr, int rows) {
    int64_t e = 0;
    for (; e + 32 <= d; e += 32) {
        v16f a[ROWS][2];
        for (int r = 0; r < ROWS; r++) a[r][0] = a[r][1] = splat(0.0f);
        for (int64_t j = c0; j < c1; j++) {
            const v16f v0 = load(v + j * ldv + e), v1 = load(v + j * ldv + e + 16);
            for (int r = 0; r < ROWS; r++) {
                const v16f p = splat(scores[r * tp + j]);
                a[r][0] = fma16(p, v0, a[r][0]);
                a[r][1] = fma16(p, v1, a[r][1]);
            }
        }
        for (int r = 0; r < rows; r++) {
            store(outr[r] + e, a[r][0]);
            store(outr[r] + e + 16, a[r][1]);
        }
    }
    for (; e + 16 <= d; e += 16) {
        v16f a[ROWS];
        for (int r = 0; r < ROWS; r++) a[r] = splat(0.0f);
        for (int64_t j = c0; j < c1; j++) {
            const v16f v0 = load(v + j * ldv + e);
            for (int r = 0; r < ROWS; r++) a[r] = fma16(splat(scores[r * tp + j]), v0, a[r]);
        }
        for (int r = 0; r < rows; r++) store(outr[r] + e, a[r]);
    }
    for (; e < d; e++) {
        for (int r = 0; r < rows; r++) {
            float acc = 0.0f;
            for (int64_t j = c0; j < c1; j++) acc = fmaf(scores[r * tp + j], v[j * ldv + e], acc);
            outr[r][e] = acc;
        }
    }
}

/// Workspace: kt [D, Tp] (the keys of one KV head, transposed, zero past T), scores [ROWS, Tp], bias [Tp].
static ALWAYS_INLINE void attention_body(const float *q, const float *k, const float *v, float *out, int64_t t,
                                         int64_t heads, int64_t kv_heads, int64_t d, float scale,
                                         const int32_t *key_lo, const int32_t *key_hi, const float *key_bias,
                                         int64_t pair_begin, int64_t pair_end, float *lse, float *workspace) {
    const int64_t tp = (t + 15) & ~(int64_t)15, ldq = heads * d, ldkv = kv_heads * d, group = heads / kv_heads;
    float *kt = workspace, *scores = kt + d * tp, *bias = scores + ROWS * tp;
    int64_t packed = -1, biased = -1;   // the (b, KV head) whose keys kt holds; the b whose padding bias holds
    for (int64_t pair = pair_begin; pair < pair_end; pair++) {
        const int64_t b = pair / heads, h = pair % heads, kvh = h / group;
        const float *qb = q + b * t * ldq + h * d, *kb = k + b * t * ldkv + kvh * d, *vb = v + b * t * ldkv + kvh * d;
        float *ob = out + b * t * ldq + h * d;
        if (packed != b * kv_heads + kvh) {
            for (int64_t j = 0; j < t; j++)
                for (int64_t e = 0; e < d; e++) kt[e * tp + j] = kb[j * ldkv + e];
            for (int64_t e = 0; e < d; e++)
                for (int64_t j = t; j < tp; j++) kt[e * tp + j] = 0.0f;
            packed = b * kv_heads + kvh;
        }
        if (biased != b) {
            for (int64_t j = 0; j < t; j++) bias[j] = key_bias ? key_bias[b * t + j] : 0.0f;
            for (int64_t j = t; j < tp; j++) bias[j] = -INFINITY;
            biased = b;
        }
        for (int64_t i0 = 0; i0 < t; i0 += ROWS) {
            const int rows = t - i0 < ROWS ? (int)(t - i0) : ROWS;
            const float *qr[ROWS];
            float *outr[ROWS];
            int64_t lo = t, hi = 0;
            for (int r = 0; r < ROWS; r++) {
                const int64_t i = i0 + (r < rows ? r : 0);
                qr[r] = qb + i * ldq;
                outr[r] = ob + i * ldq;
                if (key_lo[i] < lo) lo = key_lo[i];
                if (key_hi[i] > hi) hi = key_hi[i];
            }
            // Only the key columns some row of the block may see: outside them every score is masked, so its
            // probability is exactly 0 (unless the row sees nothing, handled below).
            const int64_t c0 = hi > lo ? lo & ~(int64_t)15 : 0, c1 = hi > lo ? (hi + 15) & ~(int64_t)15 : 0;
            block_scores(qr, kt, tp, d, c0, c1, scale, scores);
            int blind[ROWS] = {0};
            for (int r = 0; r < rows; r++) {
                const int64_t i = i0 + r;
                float *row_lse = lse ? lse + pair * t + i : NULL;
                blind[r] = !masked_softmax(scores + r * tp, c0, c1, t, key_lo[i], key_hi[i], bias, row_lse);
                if (blind[r] && row_lse) *row_lse = INFINITY;
                if (blind[r])
                    for (int64_t j = c0; j < c1; j++) scores[r * tp + j] = 0.0f;
            }
            for (int r = rows; r < ROWS; r++)
                for (int64_t j = c0; j < c1; j++) scores[r * tp + j] = 0.0f;
            block_values(scores, tp, vb, ldkv, d, c0, c1 < t ? c1 : t, outr, rows);
            // A query that sees no key: every score is −FLT_MAX, the softmax is uniform, the output the mean value.
            for (int r = 0; r < rows; r++) {
                if (!blind[r]) continue;
                const float p = 1.0f / (float)t;
                for (int64_t e = 0; e < d; e++) {
                    float acc = 0.0f;
                    for (int64_t j = 0; j < t; j++) acc = fmaf(p, vb[j * ldkv + e], acc);
                    outr[r][e] = acc;
                }
            }
        }
    }
}
INSTANTIATE(attention_body,
            (const float *q, const float *k, const float *v, float *out, int64_t t, int64_t heads, int64_t kv_heads,
             int64_t d, float scale, const int32_t *key_lo, const int32_t *key_hi, const float *key_bias,
             int64_t pair_begin, int64_t pair_end, float *lse, float *workspace),
            (q, k, v, out, t, heads, kv_heads, d, scale, key_lo, key_hi, key_bias, pair_begin, pair_end, lse, workspace))

int prima_attention(int isa, const float *q, const float *k, const float *v, float *out, int64_t batch, int64_t t,
                    int64_t heads, int64_t kv_heads, int64_t d, float scale, const int32_t *key_lo,
                    const int32_t *key_hi, const float *key_bias, int64_t pair_begin, int64_t pair_end, float *lse) {
    if (pair_begin < 0 || pair_end > batch * heads || heads % kv_heads != 0) return -1;
    if (pair_begin >= pair_end || t <= 0) return 0;
    const int64_t tp = (t + 15) & ~(int64_t)15;
    const size_t bytes = ((size_t)((d + ROWS + 1) * tp) * 4 + 63) & ~(size_t)63;
    float *workspace = aligned_alloc(64, bytes);
    if (workspace == NULL) return -1;
    DISPATCH(isa, attention_body, q, k, v, out, t, heads, kv_heads, d, scale, key_lo, key_hi, key_bias, pair_begin,
             pair_end, lse, workspace);
    free(workspace);
    return 0;
}

// MARK: - RoPE

static ALWAYS_INLINE void rope_body(const float *x, int64_t ldx, float *y, int64_t n, int64_t heads, int64_t d,
                                    const float *cos, const float *sin, const int64_t *rows) {
    const int64_t half = d / 2, width = heads * d;
    for (int64_t r = 0; r < n; r++) {
        const float *source = x + r * ldx;
        float *target = y + r * width;
        if (rows[r] < 0) {
            memcpy(target, source, (size_t)width * 4);
            continue;
        }
        const float *c = cos + rows[r] * d, *s = sin + rows[r] * d;
        for (int64_t h = 0; h < heads; h++) {
            const float *a = source + h * d, *b = a + half;
            float *ya = target + h * d, *yb = ya + half;
            int64_t i = 0;
            for (; i + 16 <= half; i += 16) {
                const v16f av = load(a + i), bv = load(b + i);
                store(ya + i, av * load(c + i) - bv * load(s + i));
                store(yb + i, bv * load(c + half + i) + av * load(s + half + i));
            }
            for (; i < half; i++) {
                ya[i] = a[i] * c[i] - b[i] * s[i];
                yb[i] = b[i] * c[half + i] + a[i] * s[half + i];
            }
        }
    }
}
INSTANTIATE(rope_body,
            (const float *x, int64_t ldx, float *y, int64_t n, int64_t heads, int64_t d, const float *cos,
             const float *sin, const int64_t *rows),
            (x, ldx, y, n, heads, d, cos, sin, rows))

void prima_rope(int isa, const float *x, int64_t ldx, float *y, int64_t n, int64_t heads, int64_t d, const float *cos,
                const float *sin, const int64_t *rows) {
    DISPATCH(isa, rope_body, x, ldx, y, n, heads, d, cos, sin, rows);
}
