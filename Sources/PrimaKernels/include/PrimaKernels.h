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

// MARK: int8 linear layers (int8_gemm.c)
//
// y[M, N] = x[M, K] · Wᵀ + bias, with W stored as symmetric int8 values q_w[N, K] (in [-127, 127], never -128)
// and f32 scales s_w[N, nb]: one scale per block of `block_size` consecutive inputs of a row, block b covering
// k in [b·block_size, min((b+1)·block_size, K)). Formats/prima-checkpoint.md §7: "int8-per-channel" is
// block_size = K (nb = 1), "int8-block32" is block_size = 32 (nb = ceil(K/32), the last block may be short).
//
// The result is a bit-exact contract. Every kernel (scalar, AVX2, AVX-VNNI, AVX512-VNNI) returns exactly the
// floats of prima_int8_linear_reference for any input, under the default rounding mode:
//   1. Each row m of x is quantised by prima_quantize_rows (contract below): q_a[m, K] in [-127, 127], s_a[m].
//   2. For each (m, n) and block b: isum_b = Σ_{k in b} q_a[m,k]·q_w[n,k], exact in int32 (K ≤ 65536).
//   3. acc = 0.0f; for b = 0, 1, …, nb-1 in order: acc = acc + (float)isum_b * s_w[n, b], the product and the
//      sum each rounded to f32 (never a fused multiply-add; int8_gemm.c is compiled with FP_CONTRACT OFF and its
//      SIMD code uses separate multiply and add instructions).
//   4. y[m, n] = acc * s_a[m], rounded; then y[m, n] = y[m, n] + bias[n], rounded, when there is a bias.
// (float)isum_b rounds to nearest even (it is exact while |isum_b| ≤ 2^24). A row of x holding an infinity or a
// NaN quantises to all zeros with s_a = NaN, so its outputs are all NaN.

/// Kernels of the int8 GEMM. PRIMA_INT8_KERNEL=scalar|avx2|avxvnni|avx512vnni in the environment forces one.
enum {
    PRIMA_INT8_KERNEL_SCALAR = 0,      ///< plain C loops over the packed layout; runs everywhere
    PRIMA_INT8_KERNEL_AVX2 = 1,        ///< vpmaddubsw(|a|, w ^ mask(a)) + vpmaddwd, plus Σ|a| over the negative a: exact
    PRIMA_INT8_KERNEL_AVXVNNI = 2,     ///< vpdpbusd on ymm (VEX), (q_a + 128)·w minus 128·Σw
    PRIMA_INT8_KERNEL_AVX512VNNI = 3,  ///< vpdpbusd on zmm (EVEX), same offset trick
    PRIMA_INT8_KERNEL_COUNT = 4,
};

/// Result codes of the int8 functions (0 is success).
enum {
    PRIMA_INT8_OK = 0,
    PRIMA_INT8_ERROR_ARGUMENT = -1,          ///< a size, stride, range or pointer is invalid (see each function)
    PRIMA_INT8_ERROR_VALUE = -2,             ///< a weight value is -128 (outside the format's [-127, 127])
    PRIMA_INT8_ERROR_UNSUPPORTED = -3,       ///< the kernel needs instructions this CPU (or build) lacks
    PRIMA_INT8_ERROR_UNKNOWN_KERNEL = -4,    ///< PRIMA_INT8_KERNEL names no kernel
    PRIMA_INT8_ERROR_MEMORY = -5,            ///< an allocation failed
};

/// The largest K the kernels accept: |isum| ≤ 127·127·K and the offset kernels' 255·127·K both fit in int32.
#define PRIMA_INT8_MAX_K 65536
/// Output columns per packed panel; prima_int8_gemm's column ranges start on a multiple of this.
#define PRIMA_INT8_PANEL 16

/// Bit (1 << kernel) set for each kernel this CPU and build can run (the scalar kernel always).
uint32_t prima_int8_kernels_available(void);

/// The fastest available kernel.
int prima_int8_kernel_best(void);

/// The kernel PRIMA_INT8_KERNEL names (the best one if unset or empty), or PRIMA_INT8_ERROR_UNKNOWN_KERNEL for a
/// name that is no kernel, or PRIMA_INT8_ERROR_UNSUPPORTED for a kernel this CPU cannot run.
int prima_int8_kernel_from_environment(void);

/// As prima_int8_kernel_from_environment for the value `name` (NULL or "" for unset).
int prima_int8_kernel_named(const char *name);

/// "scalar", "avx2", "avxvnni", "avx512vnni" (the PRIMA_INT8_KERNEL spellings); NULL for another number.
const char *prima_int8_kernel_name(int kernel);

/// Quantises each row of x[m, k] (row stride ldx ≥ k) to q[m, ldq] (ldq ≥ k) and scales[m], exactly as:
///   a = max_k |x[r,k]| over the row (f32); s = a / 127.0f (f32 division);
///   if the row holds an infinity or NaN: s = NaN and every q is 0;
///   else if s == 0: every q is 0;
///   else q[r,k] = clamp(rintf(x[r,k] / s), -127, 127) (f32 division, rint in the current mode: half to even).
/// scales[r] = s; q[r, k..<ldq] is set to 0. The same rule as the weight quantiser (prima-checkpoint.md §7).
/// This one is plain loops; prima_quantize_rows is its vectorised (AVX2) twin with identical output.
void prima_quantize_rows_reference(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q, int64_t ldq,
                                   float *scales);
/// prima_quantize_rows_reference, vectorised with AVX2 when the CPU has it; bit-identical output.
void prima_quantize_rows(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q, int64_t ldq, float *scales);

/// Packed int8 weights (opaque). Layout, for the record: columns are grouped in panels of PRIMA_INT8_PANEL; for
/// panel p and k-group g (4 consecutive k, K padded with zero weights to a multiple of 4) the 64 bytes
/// values[p][g][j][i] = q_w[16p + j, 4g + i] (zero past N or K), so one group is one zmm or two ymm. Per panel
/// and block: offsets[p][b][j] = -128·Σ_{k in b} q_w[16p + j, k] (int32, for the kernels that compute
/// (q_a + 128)·w) and scales[p][b][j] = s_w[16p + j, b] (0 past N). Every kernel reads this one layout.
typedef struct prima_int8_weight prima_int8_weight;

/// Packs q_w[n, k] (row-major) and s_w[n, nb] into a new prima_int8_weight (*out; free with
/// prima_int8_weight_free). block_size ≥ k means one block per row (per-channel, nb = 1); otherwise block_size
/// must be a multiple of 4 (the format uses 32) and nb = ceil(k / block_size). Requires 1 ≤ n, 1 ≤ k ≤
/// PRIMA_INT8_MAX_K. Returns PRIMA_INT8_OK, PRIMA_INT8_ERROR_ARGUMENT, PRIMA_INT8_ERROR_VALUE (a -128; *out is
/// then set to NULL and *bad_index, if not NULL, to the flat index of the first one) or PRIMA_INT8_ERROR_MEMORY.
int prima_int8_pack(const int8_t *q_w, const float *s_w, int64_t n, int64_t k, int64_t block_size,
                    prima_int8_weight **out, int64_t *bad_index);

/// Frees packed weights (NULL is allowed).
void prima_int8_weight_free(prima_int8_weight *weight);

/// Bytes held by packed weights.
size_t prima_int8_weight_bytes(const prima_int8_weight *weight);

/// The int8 GEMM on pre-quantised activations: for rows 0..<m and columns [n_begin, n_end), writes
/// y[r·ldy + n] per the contract above from q_a[m, lda] (lda ≥ K) and s_a[m] (as prima_quantize_rows makes
/// them), the packed weights and bias[N] (NULL for none). Requires n_begin a multiple of PRIMA_INT8_PANEL,
/// 0 ≤ n_begin ≤ n_end ≤ N, ldy ≥ n_end, q_a in [-127, 127]. Calls on disjoint column ranges may run
/// concurrently (this is how the Swift wrapper uses two threads); each call is single-threaded. Returns
/// PRIMA_INT8_OK, PRIMA_INT8_ERROR_ARGUMENT, PRIMA_INT8_ERROR_UNSUPPORTED or PRIMA_INT8_ERROR_MEMORY
/// (a kernel allocates a workspace of about m·K bytes, the AVX2 kernel 2·m·K).
int prima_int8_gemm(int kernel, const int8_t *q_a, int64_t lda, const float *s_a, int64_t m,
                    const prima_int8_weight *weight, const float *bias, float *y, int64_t ldy,
                    int64_t n_begin, int64_t n_end);

/// The whole layer, single-threaded: quantises x[m, K] with prima_quantize_rows, then prima_int8_gemm over all
/// columns into y[m, N]. Same result codes as prima_int8_gemm.
int prima_int8_linear(int kernel, const float *x, int64_t m, const prima_int8_weight *weight, const float *bias,
                      float *y);

/// The scalar reference of the contract, on the unpacked layout: x[m, k], q_w[n, k], s_w[n, nb], bias[n] or
/// NULL → y[m, n]. Plain loops; the kernels are tested against it. Returns PRIMA_INT8_OK or
/// PRIMA_INT8_ERROR_ARGUMENT / PRIMA_INT8_ERROR_MEMORY (same size rules as prima_int8_pack).
int prima_int8_linear_reference(const float *x, int64_t m, int64_t k, const int8_t *q_w, const float *s_w,
                                int64_t n, int64_t block_size, const float *bias, float *y);

// MARK: f32 kernels (float_ops.c)
//
// The work around the matrix products, vectorised: exp, GELU and SiLU, LayerNorm and RMSNorm, attention and RoPE. Each
// kernel is compiled for AVX-512, for AVX2 + FMA and for the plain target, and all three give the same bits (every
// lane does the same IEEE operations in the same order); `isa` picks one (PRIMA_FLOAT_ISA_*; tests compare them).
// Unlike the int8 contract these are not bit-equal to a scalar definition: their plain references are the Swift
// ops in PrimaTensor (Elementwise, Normalization, Attention), and the tests bound the difference.

/// Builds of the f32 kernels.
enum {
    PRIMA_FLOAT_ISA_GENERIC = 0,   ///< plain C on 16-lane vectors; runs everywhere
    PRIMA_FLOAT_ISA_AVX2 = 1,      ///< AVX2 + FMA
    PRIMA_FLOAT_ISA_AVX512 = 2,    ///< AVX-512F
    PRIMA_FLOAT_ISA_COUNT = 3,
};

/// Bit (1 << isa) set for each build this CPU can run (the generic one always).
uint32_t prima_float_isas_available(void);

/// The fastest build this CPU can run.
int prima_float_isa_best(void);

/// A bound on the error of prima_exp and prima_exp_reference, in units in the last place of the exact exp(x), for x
/// in [ln FLT_MIN, ln FLT_MAX]: every float of that range was measured once (worst 1.26 ulp, at x ≈ −71.03); the
/// tests check a sample of it.
#define PRIMA_EXP_MAX_ULP 1.5

/// exp(x) by range reduction and a degree-6 polynomial (float_ops.c), within PRIMA_EXP_MAX_ULP; 0 for
/// x < ln FLT_MIN (results that would be subnormal are flushed), +inf above ln FLT_MAX, NaN for NaN. The scalar
/// twin of the vector exp that prima_exp, the activations and attention use: the same operations, the same bits.
float prima_exp_reference(float x);

/// y[i] = prima_exp_reference(x[i]) for i < n, vectorised (y may equal x).
void prima_exp(int isa, const float *x, float *y, int64_t n);

/// Activations for prima_activation.
enum {
    PRIMA_ACTIVATION_GELU = 0,   ///< 0.5·x·(1 + erf(x/√2)), erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), as ATen's Vectorized<float>::erf
    PRIMA_ACTIVATION_SILU = 1,   ///< x / (1 + exp(−x))
};

/// y[i] = act(x[i]) for i < n (y may equal x). Returns 0, or -1 for an unknown activation.
int prima_activation(int isa, int activation, const float *x, float *y, int64_t n);

/// y = act(x) ⊙ g elementwise for i < n (the gated MLPs; y may equal x or g). Returns 0, or -1 for an unknown
/// activation.
int prima_activation_gated(int isa, int activation, const float *x, const float *g, float *y, int64_t n);

/// LayerNorm of each row of x[rows, c] into y (y may equal x): mean and biased variance in f32 (two passes, 16 lane
/// sums), rstd = 1/sqrt(var + eps), y = (x·rstd − mean·rstd)·gamma + beta (gamma, beta NULL for none).
void prima_layer_norm(int isa, const float *x, int64_t rows, int64_t c, const float *gamma, const float *beta,
                      float eps, float *y);

/// RMSNorm of each row of x[rows, c] into y (y may equal x): scale = 1/sqrt(Σx²/c + eps) in f32, y = w·(x·scale).
void prima_rms_norm(int isa, const float *x, int64_t rows, int64_t c, const float *w, float eps, float *y);

/// Scaled dot-product attention for the (sequence, query head) pairs [pair_begin, pair_end) of the B·H pairs (pair
/// b·H + h), so that callers can split the pairs over threads. q [B·T, H·D], k and v [B·T, KV·D] (query head h reads
/// KV head h / (H/KV)), out [B·T, H·D] (only the pairs' columns are written). Scores are (q·k)·scale in f32; then,
/// as transformers' eager masks do, −FLT_MAX is added to the score of each key j outside [key_lo[i], key_hi[i]) of
/// query i, and to each key inside it whose key_bias[b·T + j] is −FLT_MAX (key_bias NULL: no padding); softmax with
/// the vector exp; out = P·V. A query that sees no key averages every value row (as transformers' uniform softmax over
/// equal scores does). Scores of magnitude ≥ 2^103 are outside the contract (they could survive the mask).
/// When lse is not NULL (lse [B·H, T], row b·H + h), lse[pair·T + i] gets each query's log-sum-exp of its masked
/// scores, m + logf(Σ_j exp(s_j − m)) with m the row maximum and the sum as the softmax forms it (+inf for a query
/// that sees no key): the state the backward pass recomputes the probabilities from. It does not change out.
/// Returns 0, or -1 if the pair range is not inside [0, B·H), H is not a multiple of KV, or a workspace (about
/// (D + 5)·T floats) cannot be allocated.
int prima_attention(int isa, const float *q, const float *k, const float *v, float *out, int64_t batch, int64_t t,
                    int64_t heads, int64_t kv_heads, int64_t d, float scale, const int32_t *key_lo,
                    const int32_t *key_hi, const float *key_bias, int64_t pair_begin, int64_t pair_end, float *lse);

/// Rotate-half RoPE (transformers' convention) of n rows: row r of x (stride ldx, H·D values from its start) goes
/// to row r of y [n, H·D]; for each head, with c = cos + rows[r]·D and s = sin + rows[r]·D (tables [P, D]),
/// y[i] = x[i]·c[i] − x[i+D/2]·s[i] and y[i+D/2] = x[i+D/2]·c[i+D/2] + x[i]·s[i+D/2] for i < D/2, each product and
/// sum rounded (no fused multiply-add). rows[r] < 0 copies the row unrotated.
void prima_rope(int isa, const float *x, int64_t ldx, float *y, int64_t n, int64_t heads, int64_t d, const float *cos,
                const float *sin, const int64_t *rows);

// MARK: thread pool (parallel.c)

/// A task of prima_parallel_for: called once for each index.
typedef void (*prima_task_fn)(void *context, int64_t index);

/// Calls fn(context, i) for every i in [0, count), on the calling thread and the pool's workers (one per further
/// processor, started at first use; after a loop they poll for the next one for 0.2 ms, then sleep). Returns when
/// every call has returned. Indices are taken in increasing order, each exactly once, by whichever thread is free.
/// While another loop is running (from another thread, or from inside a task) the loop runs on the calling thread
/// alone.
void prima_parallel_for(int64_t count, prima_task_fn fn, void *context);

/// The pool's worker threads (0 on a single-processor machine), starting them if needed.
int prima_pool_workers(void);

/// Asks for `threads` threads in all (the caller and threads − 1 workers) instead of one per online CPU; only before
/// the pool's first use (it starts once). Returns 0, or −1 when the pool has started or threads < 1.
int prima_pool_request_threads(int threads);

#endif
