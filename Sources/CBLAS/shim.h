// CBLAS: the C side of MergeKit.
//
// BLAS (OpenBLAS) and LAPACKE, plus the few small helpers that need CPU intrinsics:
// half <-> float conversion with F16C when the CPU has it (chosen at run time) and a portable,
// bit-exact fallback otherwise. Everything here is `static inline` so this stays a plain system
// library module (no C target to compile).
#ifndef MERGEKIT_CBLAS_SHIM_H
#define MERGEKIT_CBLAS_SHIM_H

#include <cblas.h>
#include <lapacke.h>
#include <stdint.h>
#include <string.h>
#include <stddef.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MK_X86 1
#else
#define MK_X86 0
#endif

// ---- portable IEEE binary16 <-> binary32, bit exact, round-to-nearest-even -------------------

static inline float mk_half_to_float_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { // subnormal: normalise
            int e = -1;
            do { e++; man <<= 1; } while ((man & 0x400u) == 0);
            man &= 0x3FFu;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13); // Inf or NaN (payload kept)
        if (man != 0) bits |= 0x00400000u;         // NaNs come out quiet, as vcvtph2ps makes them
    } else {
        bits = sign | ((exp + (127 - 15)) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t mk_float_to_half_scalar(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u) { // Inf or NaN
        if (absx > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((absx >> 13) & 0x3FFu));
        return (uint16_t)(sign | 0x7C00u);
    }
    if (absx >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); // rounds to >= 65520 -> Inf
    if (absx < 0x38800000u) { // result is subnormal or zero
        if (absx < 0x33000000u) return (uint16_t)sign; // < 2^-25: rounds to 0 (2^-25 ties to even 0)
        uint32_t e = absx >> 23;
        uint32_t man = (absx & 0x7FFFFFu) | 0x800000u;
        uint32_t shift = 126 - e; // 14..24 : value = man * 2^(e-150), half subnormal unit 2^-24
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1u))) q += 1;
        return (uint16_t)(sign | q);
    }
    // normal
    uint32_t r = absx + 0x0FFFu + ((absx >> 13) & 1u); // round to nearest even at bit 13
    r -= 0x38000000u;                                 // rebias exponent 127 -> 15
    return (uint16_t)(sign | (r >> 13));
}

static inline void mk_half_to_float_portable(const void *src, float *dst, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = mk_half_to_float_scalar(h);
    }
}

static inline void mk_float_to_half_portable(const float *src, void *dst, size_t n) {
    unsigned char *d = (unsigned char *)dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = mk_float_to_half_scalar(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

// ---- F16C paths (x86-64), selected at run time ------------------------------------------------

#if MK_X86
__attribute__((target("f16c,avx")))
static inline void mk_half_to_float_f16c(const void *src, float *dst, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(s + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = mk_half_to_float_scalar(h);
    }
}

__attribute__((target("f16c,avx")))
static inline void mk_float_to_half_f16c(const float *src, void *dst, size_t n) {
    unsigned char *d = (unsigned char *)dst;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 f = _mm256_loadu_ps(src + i);
        __m128i h = _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(d + 2 * i), h);
    }
    for (; i < n; i++) {
        uint16_t h = mk_float_to_half_scalar(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}
#endif

// ---- Counter-based random bits for DARE (lowbias32 hash, twice), AVX2 when available ----------

static inline uint32_t mk_lowbias32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/// out[k] = lowbias32(lowbias32((start + k) ^ a) + b), k < n: 32 uniform bits per element.
static inline void mk_random_bits_portable(uint32_t *out, size_t n, uint32_t a, uint32_t b, uint32_t start) {
    for (size_t k = 0; k < n; k++) out[k] = mk_lowbias32(mk_lowbias32((start + (uint32_t)k) ^ a) + b);
}

#if MK_X86
__attribute__((target("avx2")))
static inline __m256i mk_lowbias32_avx2(__m256i x) {
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x7feb352du));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x846ca68bu));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    return x;
}

__attribute__((target("avx2")))
static inline void mk_random_bits_avx2(uint32_t *out, size_t n, uint32_t a, uint32_t b, uint32_t start) {
    const __m256i va = _mm256_set1_epi32((int)a), vb = _mm256_set1_epi32((int)b);
    __m256i counter = _mm256_add_epi32(_mm256_set1_epi32((int)start), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i eight = _mm256_set1_epi32(8);
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256i x = mk_lowbias32_avx2(_mm256_xor_si256(counter, va));
        x = mk_lowbias32_avx2(_mm256_add_epi32(x, vb));
        _mm256_storeu_si256((__m256i *)(out + k), x);
        counter = _mm256_add_epi32(counter, eight);
    }
    for (; k < n; k++) out[k] = mk_lowbias32(mk_lowbias32((start + (uint32_t)k) ^ a) + b);
}
#endif

/// 1 when AVX2 is usable on this CPU.
static inline int mk_cpu_has_avx2(void) {
#if MK_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

/// Random bits (see mk_random_bits_portable); `use_avx2` only when mk_cpu_has_avx2() said so.
static inline void mk_random_bits(uint32_t *out, size_t n, uint32_t a, uint32_t b, uint32_t start, int use_avx2) {
#if MK_X86
    if (use_avx2) { mk_random_bits_avx2(out, n, a, b, start); return; }
#endif
    (void)use_avx2;
    mk_random_bits_portable(out, n, a, b, start);
}

/// 1 when the CPU (and the OS) can run OpenBLAS's SkylakeX kernels (AVX-512 F, CD, BW, DQ, VL),
/// 2 when only its Haswell kernels (AVX2 and FMA), else 0.
static inline int mk_cpu_blas_level(void) {
#if MK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) return 1;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
#endif
    return 0;
}

/// 1 when the F16C instructions (and the AVX state they need) are usable on this CPU.
static inline int mk_cpu_has_f16c(void) {
#if MK_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
#else
    return 0;
#endif
}

/// Converts `n` little-endian IEEE half values at `src` (any alignment) to float.
/// `use_f16c` must only be non-zero when `mk_cpu_has_f16c()` said so.
static inline void mk_half_to_float(const void *src, float *dst, size_t n, int use_f16c) {
#if MK_X86
    if (use_f16c) { mk_half_to_float_f16c(src, dst, n); return; }
#endif
    (void)use_f16c;
    mk_half_to_float_portable(src, dst, n);
}

/// Converts `n` floats to IEEE half (round to nearest even, overflow to Inf, NaN kept quiet)
/// at `dst` (any alignment).
static inline void mk_float_to_half(const float *src, void *dst, size_t n, int use_f16c) {
#if MK_X86
    if (use_f16c) { mk_float_to_half_f16c(src, dst, n); return; }
#endif
    (void)use_f16c;
    mk_float_to_half_portable(src, dst, n);
}

// ---- float -> bfloat16, round to nearest even (PyTorch's rule: every NaN -> 0x7FC0) ---------

static inline uint16_t mk_float_to_bf16_scalar(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0u;
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static inline void mk_float_to_bf16_portable(const float *src, void *dst, size_t n) {
    uint8_t *out = (uint8_t *)dst;
    for (size_t k = 0; k < n; k++) {
        uint16_t h = mk_float_to_bf16_scalar(src[k]);
        memcpy(out + 2 * k, &h, 2);
    }
}

#if MK_X86
/// Eight lanes of mk_float_to_bf16_scalar, each result in the low 16 bits of its 32-bit lane.
__attribute__((target("avx2")))
static inline __m256i mk_float_to_bf16_lanes_avx2(__m256i u) {
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7FFF);
    const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF), infinity = _mm256_set1_epi32(0x7F800000);
    const __m256i quietNaN = _mm256_set1_epi32(0x7FC0);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
    // |u| and Inf are non-negative as int32, so the signed compare finds exactly the NaNs.
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, magnitude), infinity);
    return _mm256_blendv_epi8(rounded, quietNaN, nan);
}

__attribute__((target("avx2")))
static inline void mk_float_to_bf16_avx2(const float *src, void *dst, size_t n) {
    uint8_t *out = (uint8_t *)dst;
    size_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m256i a = mk_float_to_bf16_lanes_avx2(_mm256_loadu_si256((const __m256i *)(src + k)));
        __m256i b = mk_float_to_bf16_lanes_avx2(_mm256_loadu_si256((const __m256i *)(src + k + 8)));
        // packus works per 128-bit lane (a0-3 b0-3 a4-7 b4-7); the permute restores the order.
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
        _mm256_storeu_si256((__m256i *)(out + 2 * k), packed);
    }
    mk_float_to_bf16_portable(src + k, out + 2 * k, n - k);
}
#endif

/// Converts `n` floats to little-endian bfloat16 at `dst` (any alignment), rounding to nearest
/// even; `use_avx2` only when mk_cpu_has_avx2() said so.
static inline void mk_float_to_bf16(const float *src, void *dst, size_t n, int use_avx2) {
#if MK_X86
    if (use_avx2) { mk_float_to_bf16_avx2(src, dst, n); return; }
#endif
    (void)use_avx2;
    mk_float_to_bf16_portable(src, dst, n);
}


// ---- Fused finiteness checks (MergeKit's NaN/Inf policy), AVX2 when available -----------------
//
// key ≥ limit for a magnitude key (bits & 0x7FFFFFFF) exactly when key + (2^31 − limit) sets the
// sign bit; OR-ing those sums over a chunk answers "does any element reach limit" with three
// integer operations per vector. The arithmetic is the same IEEE single operations as the
// portable Swift loops (no FMA), so results are bit-identical on either path.

#if MK_X86
/// The OR of the eight 32-bit lanes.
__attribute__((target("avx2")))
static inline uint32_t mk_or_lanes_avx2(__m256i acc) {
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, acc);
    uint32_t any = 0;
    for (int j = 0; j < 8; j++) any |= lanes[j];
    return any;
}

/// (bits & 0x7F800000) + 0x00800000 of `d`: its sign bit is set exactly when d is NaN or ±Inf.
static inline uint32_t mk_nonfinite_probe(float d) {
    uint32_t u;
    memcpy(&u, &d, 4);
    return (u & 0x7F800000u) + 0x00800000u;
}

/// dst = bf16(src) − base for n elements; returns nonzero when some difference is NaN or ±Inf.
__attribute__((target("avx2")))
static inline int mk_bf16_difference_avx2(const void *src, const float *base, float *dst, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    const __m256i exponent = _mm256_set1_epi32(0x7F800000), unit = _mm256_set1_epi32(0x00800000);
    __m256i acc = _mm256_setzero_si256();
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256i wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + 2 * k))), 16);
        __m256 d = _mm256_sub_ps(_mm256_castsi256_ps(wide), _mm256_loadu_ps(base + k));
        _mm256_storeu_ps(dst + k, d);
        acc = _mm256_or_si256(acc, _mm256_add_epi32(_mm256_and_si256(_mm256_castps_si256(d), exponent), unit));
    }
    uint32_t any = mk_or_lanes_avx2(acc);
    for (; k < n; k++) {
        uint16_t h;
        memcpy(&h, s + 2 * k, 2);
        uint32_t bits = (uint32_t)h << 16;
        float v;
        memcpy(&v, &bits, 4);
        float d = v - base[k];
        dst[k] = d;
        any |= mk_nonfinite_probe(d);
    }
    return (any & 0x80000000u) != 0;
}

/// dst = f32(src) − base for n elements; returns nonzero when some difference is NaN or ±Inf.
__attribute__((target("avx2")))
static inline int mk_f32_difference_avx2(const void *src, const float *base, float *dst, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    const __m256i exponent = _mm256_set1_epi32(0x7F800000), unit = _mm256_set1_epi32(0x00800000);
    __m256i acc = _mm256_setzero_si256();
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps((const float *)(s + 4 * k)), _mm256_loadu_ps(base + k));
        _mm256_storeu_ps(dst + k, d);
        acc = _mm256_or_si256(acc, _mm256_add_epi32(_mm256_and_si256(_mm256_castps_si256(d), exponent), unit));
    }
    uint32_t any = mk_or_lanes_avx2(acc);
    for (; k < n; k++) {
        float v;
        memcpy(&v, s + 4 * k, 4);
        float d = v - base[k];
        dst[k] = d;
        any |= mk_nonfinite_probe(d);
    }
    return (any & 0x80000000u) != 0;
}

/// out += base for n elements; returns nonzero when some sum's magnitude bits reach 2^31 − bias.
__attribute__((target("avx2")))
static inline int mk_add_reaches_avx2(float *out, const float *base, size_t n, uint32_t bias) {
    const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF), vbias = _mm256_set1_epi32((int)bias);
    __m256i acc = _mm256_setzero_si256();
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 sum = _mm256_add_ps(_mm256_loadu_ps(out + k), _mm256_loadu_ps(base + k));
        _mm256_storeu_ps(out + k, sum);
        acc = _mm256_or_si256(acc, _mm256_add_epi32(_mm256_and_si256(_mm256_castps_si256(sum), magnitude), vbias));
    }
    uint32_t any = mk_or_lanes_avx2(acc);
    for (; k < n; k++) {
        float sum = out[k] + base[k];
        out[k] = sum;
        uint32_t u;
        memcpy(&u, &sum, 4);
        any |= (u & 0x7FFFFFFFu) + bias;
    }
    return (any & 0x80000000u) != 0;
}

/// Whether some element's magnitude bits reach 2^31 − bias.
__attribute__((target("avx2")))
static inline int mk_reaches_avx2(const float *x, size_t n, uint32_t bias) {
    const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF), vbias = _mm256_set1_epi32((int)bias);
    __m256i acc = _mm256_setzero_si256();
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        acc = _mm256_or_si256(acc, _mm256_add_epi32(_mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + k)), magnitude), vbias));
    }
    uint32_t any = mk_or_lanes_avx2(acc);
    for (; k < n; k++) {
        uint32_t u;
        memcpy(&u, x + k, 4);
        any |= (u & 0x7FFFFFFFu) + bias;
    }
    return (any & 0x80000000u) != 0;
}
#endif

// Dispatchers: -1 when the AVX2 path is not taken (the caller runs its portable loop), else the
// kernel's answer.
static inline int mk_bf16_difference(const void *src, const float *base, float *dst, size_t n, int use_avx2) {
#if MK_X86
    if (use_avx2) return mk_bf16_difference_avx2(src, base, dst, n);
#endif
    (void)src; (void)base; (void)dst; (void)n; (void)use_avx2;
    return -1;
}
static inline int mk_f32_difference(const void *src, const float *base, float *dst, size_t n, int use_avx2) {
#if MK_X86
    if (use_avx2) return mk_f32_difference_avx2(src, base, dst, n);
#endif
    (void)src; (void)base; (void)dst; (void)n; (void)use_avx2;
    return -1;
}
static inline int mk_add_reaches(float *out, const float *base, size_t n, uint32_t bias, int use_avx2) {
#if MK_X86
    if (use_avx2) return mk_add_reaches_avx2(out, base, n, bias);
#endif
    (void)out; (void)base; (void)n; (void)bias; (void)use_avx2;
    return -1;
}
static inline int mk_reaches(const float *x, size_t n, uint32_t bias, int use_avx2) {
#if MK_X86
    if (use_avx2) return mk_reaches_avx2(x, n, bias);
#endif
    (void)x; (void)n; (void)bias; (void)use_avx2;
    return -1;
}

// ---- Arcee Fusion: the KL divergence of two softmax rows, in double -------------------------
//
// KL = Σ p·log(p/q) over a row of n values, p = softmax(x1) + 1e-8, q = softmax(x0) + 1e-8, with
// p = e1·(1/Σe1) + 1e-8, e1 = exp(x1 − max x1) (q alike). As Σp = Σq, KL = Σ q·g(p/q) with
// g(r) = r·log r − r + 1 ≥ 0: a sum of non-negative terms, where Σ p·log(p/q) cancels to ~1/1000
// of its terms for rows that differ by a fine-tune, which amplifies the rounding of the two sums.
// With s = (p − q)/(p + q), r = (1 + s)/(1 − s) and q·g(r) = (p + q)/2 · h(s),
//     h(s) = (1 + s)·log((1 + s)/(1 − s)) − 2s = 2s² + s·(1 + s)·R(s²),  R(z) = Σₖ≥₁ 2zᵏ/(2k + 1),
// R summed to k = 4 for |s| ≤ 1/64 and to k = 10 for |s| ≤ 0.17 (r within [0.71, 1.41]; the first
// term left out is below 1e-17 of h); otherwise the term is p·log(p/q) − p + q with log below.
// exp and log are this file's own:
//   exp(x), x ≤ 0: x = (32k + j)·ln2/32 + r, |r| ≤ ln2/64 (32k + j rounded to nearest by the
//     1.5·2⁵² trick, ln2/32 split in a 32-bit head and a tail so its product with an integer is
//     exact), e^x = 2ᵏ·2^(j/32)·e^r from a table of 2^(j/32) correctly rounded, 2ᵏ added to its
//     exponent, and the Taylor polynomial of e^r of degree 6 (truncation < 4e-18 relative);
//     x < −708 gives 0 (e^x < 2⁻¹⁰²¹ changes neither a sum ≥ 1 nor e/Σ + 1e-8). Within 2 ulp.
//     e1 is e0·e^u, u = (x1 − max x1) − (x0 − max x0), by the Taylor polynomial of degree 8 where
//     |u| ≤ 1/32 (truncation < 1e-19), as for rows a fine-tune changes it always is; exp otherwise.
//   log(y), y > 0 normal: y = 2ᵏ·(1 + f), 1 + f ∈ [√½, √2), found from the bits;
//     log(1 + f) = 2·atanh(s), s = f/(2 + f), evaluated as f − (f²/2 − s·(f²/2 + R(s²))), R to
//     k = 10, plus k·ln2 in two parts. Within 1 ulp.
//
// The kernel is written once, on vectors of 8 doubles (clang's vector extensions): element j of
// the row is in lane j mod 8 of every maximum and sum (a short last block is padded with values
// that add nothing), and the lanes are combined as ((0+1)+(2+3))+((4+5)+(6+7)) at the end. It is
// compiled three times, for the baseline instruction set, AVX2 and AVX-512F (chosen at run time);
// every lane is the same IEEE double operations in the same order, with no contraction into FMA,
// so all three give the same bits.

#pragma STDC FP_CONTRACT OFF
// The 8-double vectors never cross a call boundary (every helper is always inlined), so the ABI
// that -Wpsabi warns of does not arise.
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpsabi"

typedef double mk_v8d __attribute__((vector_size(64)));
typedef float mk_v8f __attribute__((vector_size(32)));
typedef long long mk_v8l __attribute__((vector_size(64)));
typedef unsigned long long mk_v8u __attribute__((vector_size(64)));

#define MK_KL_INLINE static inline __attribute__((always_inline))
#define MK_KL_LANES 8
#define MK_KL_MAGIC 0x1.8p52
#define MK_KL_LOG2E 0x1.71547652b82fep+0
#define MK_KL_LN2HI 0x1.62e42fee00000p-1
#define MK_KL_LN2LO 0x1.a39ef35793c76p-33
#define MK_KL_EXP_FLOOR (-708.0)
#define MK_KL_EPSILON 1e-8
#define MK_KL_SHORT_SERIES 0x1p-6
#define MK_KL_LONG_SERIES 0.17
// bits(1.0) − bits(√½): added to the bits of y, the exponent field becomes k + 1023.
#define MK_KL_LOG_OFFSET 0x00095f619980c433ull

MK_KL_INLINE mk_v8d mk_kl_splat(double x) { return (mk_v8d){x, x, x, x, x, x, x, x}; }
/// Lanes of `a` where `mask` is set (all ones), else of `b`.
MK_KL_INLINE mk_v8d mk_kl_select(mk_v8l mask, mk_v8d a, mk_v8d b) {
    return (mk_v8d)(((mk_v8l)a & mask) | ((mk_v8l)b & ~mask));
}
MK_KL_INLINE int mk_kl_all(mk_v8l mask) { return __builtin_reduce_and(mask) != 0; }

// 2^(j/32) for j = 0 … 31, correctly rounded.
static const double mk_kl_exp_table[32] = {
    0x1.0000000000000p+0, 0x1.059b0d3158574p+0, 0x1.0b5586cf9890fp+0, 0x1.11301d0125b51p+0,
    0x1.172b83c7d517bp+0, 0x1.1d4873168b9aap+0, 0x1.2387a6e756238p+0, 0x1.29e9df51fdee1p+0,
    0x1.306fe0a31b715p+0, 0x1.371a7373aa9cbp+0, 0x1.3dea64c123422p+0, 0x1.44e086061892dp+0,
    0x1.4bfdad5362a27p+0, 0x1.5342b569d4f82p+0, 0x1.5ab07dd485429p+0, 0x1.6247eb03a5585p+0,
    0x1.6a09e667f3bcdp+0, 0x1.71f75e8ec5f74p+0, 0x1.7a11473eb0187p+0, 0x1.82589994cce13p+0,
    0x1.8ace5422aa0dbp+0, 0x1.93737b0cdc5e5p+0, 0x1.9c49182a3f090p+0, 0x1.a5503b23e255dp+0,
    0x1.ae89f995ad3adp+0, 0x1.b7f76f2fb5e47p+0, 0x1.c199bdd85529cp+0, 0x1.cb720dcef9069p+0,
    0x1.d5818dcfba487p+0, 0x1.dfc97337b9b5fp+0, 0x1.ea4afa2a490dap+0, 0x1.f50765b6e4540p+0,
};

/// e^x for x ≤ 0 (see above); NaN stays NaN.
MK_KL_INLINE mk_v8d mk_kl_exp(mk_v8d x) {
    const mk_v8l under = x < MK_KL_EXP_FLOOR;
    mk_v8d t = x * 0x1.71547652b82fep+5 + MK_KL_MAGIC;
    mk_v8d n = t - MK_KL_MAGIC;
    mk_v8d r = (x - n * 0x1.62e42fee00000p-6) - n * 0x1.a39ef35793c76p-38;
    // 1/k! for k = 6 … 2, then 1, 1.
    mk_v8d p = mk_kl_splat(0x1.6c16c16c16c17p-10);
    p = p * r + 0x1.1111111111111p-7;
    p = p * r + 0x1.5555555555555p-5;
    p = p * r + 0x1.5555555555555p-3;
    p = p * r + 0x1.0000000000000p-1;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const mk_v8u bits = (mk_v8u)t, j = bits & 31;
    // Written out lane by lane: a loop over the lanes is not always unrolled.
    mk_v8d scaled = {mk_kl_exp_table[j[0]], mk_kl_exp_table[j[1]], mk_kl_exp_table[j[2]], mk_kl_exp_table[j[3]],
                     mk_kl_exp_table[j[4]], mk_kl_exp_table[j[5]], mk_kl_exp_table[j[6]], mk_kl_exp_table[j[7]]};
    // 2^(j/32)·2^k, k = ⌊n/32⌋, by adding k to the exponent field.
    scaled = (mk_v8d)((mk_v8u)scaled + (((bits >> 5) - (0x4338000000000000ull >> 5)) << 52));
    return (mk_v8d)((mk_v8l)(scaled * p) & ~under);
}

/// e^u for |u| ≤ 1/32: its Taylor polynomial of degree 8 (truncation < 1e-19 relative).
MK_KL_INLINE mk_v8d mk_kl_exp_near_zero(mk_v8d u) {
    mk_v8d p = mk_kl_splat(0x1.a01a01a01a01ap-16);
    p = p * u + 0x1.a01a01a01a01ap-13;
    p = p * u + 0x1.6c16c16c16c17p-10;
    p = p * u + 0x1.1111111111111p-7;
    p = p * u + 0x1.5555555555555p-5;
    p = p * u + 0x1.5555555555555p-3;
    p = p * u + 0x1.0000000000000p-1;
    p = p * u + 1.0;
    return p * u + 1.0;
}

/// R(z) = Σₖ₌₁..₄ 2zᵏ/(2k + 1).
MK_KL_INLINE mk_v8d mk_kl_short_series(mk_v8d z) {
    mk_v8d r = mk_kl_splat(0x1.c71c71c71c71cp-3);
    r = r * z + 0x1.2492492492492p-2;
    r = r * z + 0x1.999999999999ap-2;
    r = r * z + 0x1.5555555555555p-1;
    return r * z;
}

/// R(z) = Σₖ₌₁..₁₀ 2zᵏ/(2k + 1).
MK_KL_INLINE mk_v8d mk_kl_long_series(mk_v8d z) {
    mk_v8d r = mk_kl_splat(0x1.8618618618618p-4);
    r = r * z + 0x1.af286bca1af28p-4;
    r = r * z + 0x1.e1e1e1e1e1e1ep-4;
    r = r * z + 0x1.1111111111111p-3;
    r = r * z + 0x1.3b13b13b13b14p-3;
    r = r * z + 0x1.745d1745d1746p-3;
    r = r * z + 0x1.c71c71c71c71cp-3;
    r = r * z + 0x1.2492492492492p-2;
    r = r * z + 0x1.999999999999ap-2;
    r = r * z + 0x1.5555555555555p-1;
    return r * z;
}

/// log(y) for a positive normal y (see above).
MK_KL_INLINE mk_v8d mk_kl_log(mk_v8d y) {
    const mk_v8u u = (mk_v8u)y;
    const mk_v8u t = u + MK_KL_LOG_OFFSET;
    mk_v8d k = (mk_v8d)((t >> 52) | 0x4330000000000000ull) - (0x1p52 + 1023.0);
    mk_v8d f = (mk_v8d)(u - (t & 0xFFF0000000000000ull) + 0x3FF0000000000000ull) - 1.0;
    mk_v8d hfsq = 0.5 * f * f;
    mk_v8d s = f / (2.0 + f);
    mk_v8d r = mk_kl_long_series(s * s);
    return k * MK_KL_LN2HI + (f - (hfsq - (s * (hfsq + r) + k * MK_KL_LN2LO)));
}

/// q·g(p/q), each element's KL term (see above); the longer forms only when a lane needs them.
MK_KL_INLINE mk_v8d mk_kl_term(mk_v8d p, mk_v8d q) {
    mk_v8d d = p + q;
    mk_v8d s = (p - q) / d;
    mk_v8d z = s * s;
    mk_v8d a = (mk_v8d)((mk_v8l)s & 0x7FFFFFFFFFFFFFFFll);
    mk_v8d half = 0.5 * d;
    mk_v8d slope = s * (1.0 + s);
    const mk_v8l short_series = a <= MK_KL_SHORT_SERIES;
    mk_v8d term = half * ((z + z) + slope * mk_kl_short_series(z));
    if (mk_kl_all(short_series)) return term;
    term = mk_kl_select(short_series, term, half * ((z + z) + slope * mk_kl_long_series(z)));
    const mk_v8l long_series = a <= MK_KL_LONG_SERIES;
    if (mk_kl_all(long_series)) return term;
    return mk_kl_select(long_series, term, (p * mk_kl_log(p / q) - p) + q);
}

// Unaligned views of 8 values, for loads and stores of whole blocks.
typedef double mk_v8d_u __attribute__((vector_size(64), aligned(8), may_alias));
typedef float mk_v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
typedef unsigned long long mk_v8u_u __attribute__((vector_size(64), aligned(8), may_alias));

/// A block of `count` ≤ 8 values; lanes k ≥ count hold `pad`. The loops below call these with
/// count 8 for every whole block and once with the rest, so the whole blocks are plain loads.
MK_KL_INLINE mk_v8d mk_kl_load(const double *x, size_t count, double pad) {
    if (count == MK_KL_LANES) return *(const mk_v8d_u *)x;
    mk_v8d v = mk_kl_splat(pad);
    for (size_t k = 0; k < count; k++) v[k] = x[k];
    return v;
}
MK_KL_INLINE mk_v8f mk_kl_load_f32(const float *x, size_t count, float pad) {
    if (count == MK_KL_LANES) return *(const mk_v8f_u *)x;
    mk_v8f v = {pad, pad, pad, pad, pad, pad, pad, pad};
    for (size_t k = 0; k < count; k++) v[k] = x[k];
    return v;
}
MK_KL_INLINE void mk_kl_store(double *x, size_t count, mk_v8d v) {
    if (count == MK_KL_LANES) { *(mk_v8d_u *)x = v; return; }
    for (size_t k = 0; k < count; k++) x[k] = v[k];
}

MK_KL_INLINE double mk_kl_lane_sum(mk_v8d v) {
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}
/// a > b ? a : b, lane by lane.
MK_KL_INLINE mk_v8d mk_kl_max(mk_v8d a, mk_v8d b) { return mk_kl_select(a > b, a, b); }
MK_KL_INLINE double mk_kl_scalar_max(double a, double b) { return a > b ? a : b; }
MK_KL_INLINE double mk_kl_lane_max(mk_v8d v) {
    return mk_kl_scalar_max(mk_kl_scalar_max(mk_kl_scalar_max(v[0], v[1]), mk_kl_scalar_max(v[2], v[3])),
                            mk_kl_scalar_max(mk_kl_scalar_max(v[4], v[5]), mk_kl_scalar_max(v[6], v[7])));
}

/// The three steps of the kernel on the block of `count` values at j (8 for whole blocks).
MK_KL_INLINE void mk_kl_maxima_step(const float *base32, const float *delta32, const double *base64, const double *delta64,
                                    double *x0, double *x1, size_t j, size_t count, mk_v8d *m0, mk_v8d *m1) {
    const double inf = __builtin_inf();
    mk_v8d b, d;
    if (base32) {
        b = __builtin_convertvector(mk_kl_load_f32(base32 + j, count, -inf), mk_v8d);
        d = __builtin_convertvector(mk_kl_load_f32(delta32 + j, count, 0), mk_v8d);
    } else {
        b = mk_kl_load(base64 + j, count, -inf);
        d = mk_kl_load(delta64 + j, count, 0);
    }
    mk_v8d c = b + d;
    mk_kl_store(x0 + j, count, b);
    mk_kl_store(x1 + j, count, c);
    *m0 = mk_kl_max(*m0, b);
    *m1 = mk_kl_max(*m1, c);
}
MK_KL_INLINE void mk_kl_exp_step(double *x0, double *x1, size_t j, size_t count, double max0, double max1, mk_v8d *s0, mk_v8d *s1) {
    const double inf = __builtin_inf();
    mk_v8d a0 = mk_kl_load(x0 + j, count, -inf) - max0, a1 = mk_kl_load(x1 + j, count, -inf) - max1;
    mk_v8d e0 = mk_kl_exp(a0), e1;
    // e^a1 = e^a0·e^(a1 − a0), where a1 − a0 = τ − (max x1 − max x0) is small.
    mk_v8d u = a1 - a0;
    const mk_v8l near = (mk_v8d)((mk_v8l)u & 0x7FFFFFFFFFFFFFFFll) <= 0x1p-5;
    e1 = e0 * mk_kl_exp_near_zero(u);
    if (!mk_kl_all(near)) e1 = mk_kl_select(near, e1, mk_kl_exp(a1));
    mk_kl_store(x0 + j, count, e0);
    mk_kl_store(x1 + j, count, e1);
    *s0 += e0;
    *s1 += e1;
}
MK_KL_INLINE void mk_kl_term_step(const double *e0, const double *e1, size_t j, size_t count, double inv0, double inv1, mk_v8d *kl) {
    mk_v8d p = mk_kl_load(e1 + j, count, 0) * inv1 + MK_KL_EPSILON;
    mk_v8d q = mk_kl_load(e0 + j, count, 0) * inv0 + MK_KL_EPSILON;
    mk_v8d term = mk_kl_term(p, q);
    if (count < MK_KL_LANES) {
        const mk_v8l lane = {0, 1, 2, 3, 4, 5, 6, 7};
        term = (mk_v8d)((mk_v8l)term & (lane < (long long)count));
    }
    *kl += term;
}

/// KL(softmax(x1) + 1e-8 ‖ softmax(x0) + 1e-8) of a row of n ≥ 1 values, x0 = base and
/// x1 = base + delta in double (from `base32`/`delta32` when given, else `base64`/`delta64`);
/// `x0` and `x1` are scratch for n doubles.
MK_KL_INLINE double mk_softmax_kl_body(const float *base32, const float *delta32, const double *base64, const double *delta64,
                                       double *x0, double *x1, size_t n) {
    const size_t whole = n / MK_KL_LANES * MK_KL_LANES;
    mk_v8d m0 = mk_kl_splat(-__builtin_inf()), m1 = m0;
    for (size_t j = 0; j < whole; j += MK_KL_LANES) mk_kl_maxima_step(base32, delta32, base64, delta64, x0, x1, j, MK_KL_LANES, &m0, &m1);
    if (whole < n) mk_kl_maxima_step(base32, delta32, base64, delta64, x0, x1, whole, n - whole, &m0, &m1);
    const double max0 = mk_kl_lane_max(m0), max1 = mk_kl_lane_max(m1);
    mk_v8d s0 = mk_kl_splat(0), s1 = s0;
    for (size_t j = 0; j < whole; j += MK_KL_LANES) mk_kl_exp_step(x0, x1, j, MK_KL_LANES, max0, max1, &s0, &s1);
    if (whole < n) mk_kl_exp_step(x0, x1, whole, n - whole, max0, max1, &s0, &s1);
    const double inv0 = 1.0 / mk_kl_lane_sum(s0), inv1 = 1.0 / mk_kl_lane_sum(s1);
    mk_v8d kl = mk_kl_splat(0);
    for (size_t j = 0; j < whole; j += MK_KL_LANES) mk_kl_term_step(x0, x1, j, MK_KL_LANES, inv0, inv1, &kl);
    if (whole < n) mk_kl_term_step(x0, x1, whole, n - whole, inv0, inv1, &kl);
    return mk_kl_lane_sum(kl);
}

// ---- Arcee Fusion: importances, their keys, the kept entries ----------------------------------
//
// importance = (float)((double)|τ|·kl) (Float's rounding of the Double product, as Swift's
// Float(Double)); its key in signed order is 2³¹ | bits for a positive value and 2³¹ − 1 − (bits &
// 0x7FFFFFFF) for a negative one (MergeKit's SignedOrder). Written once on 8-lane vectors and
// built for the same three targets as the divergence kernel.

typedef unsigned int mk_v8u32 __attribute__((vector_size(32)));
typedef int mk_v8i32 __attribute__((vector_size(32)));

MK_KL_INLINE mk_v8f mk_fusion_importance(mk_v8f tau, double kl) {
    mk_v8f magnitude = (mk_v8f)((mk_v8u32)tau & 0x7FFFFFFFu);
    return __builtin_convertvector(__builtin_convertvector(magnitude, mk_v8d) * kl, mk_v8f);
}

MK_KL_INLINE mk_v8u32 mk_fusion_key(mk_v8f x) {
    const mk_v8u32 bits = (mk_v8u32)x, magnitude = bits & 0x7FFFFFFFu;
    const mk_v8u32 negative = (mk_v8u32)((mk_v8i32)bits < 0);
    return ((0x7FFFFFFFu - magnitude) & negative) | ((0x80000000u | magnitude) & ~negative);
}

/// The keys of the block of `count` values of τ at j (see mk_fusion_keys_body).
MK_KL_INLINE size_t mk_fusion_keys_step(const float *tau, size_t j, size_t count, double kl, uint64_t *out, size_t written,
                                        unsigned shift, const uint32_t *prefixes) {
    const mk_v8u32 key = mk_fusion_key(mk_fusion_importance(mk_kl_load_f32(tau + j, count, 0), kl));
    if (!prefixes) {
        const mk_v8u wide = __builtin_convertvector(key, mk_v8u);
        if (count == MK_KL_LANES) {
            *(mk_v8u_u *)(out + written) = wide;
        } else {
            for (size_t l = 0; l < count; l++) out[written + l] = wide[l];
        }
        return written + count;
    }
    const mk_v8u32 top = key >> shift;
    const mk_v8i32 match = (top == prefixes[0]) | (top == prefixes[1]) | (top == prefixes[2]);
    if (__builtin_reduce_or(match) == 0) return written;
    for (size_t l = 0; l < count; l++) {
        if (match[l]) out[written++] = key[l];
    }
    return written;
}

/// The keys of the importances of a row of n values of τ (divergence kl): all of them into `out`
/// (`prefixes` NULL), or only those whose top bits (key >> shift) equal prefixes[0], [1] or [2],
/// appended in order; returns how many were written.
MK_KL_INLINE size_t mk_fusion_keys_body(const float *tau, size_t n, double kl, uint64_t *out, unsigned shift, const uint32_t *prefixes) {
    const size_t whole = n / MK_KL_LANES * MK_KL_LANES;
    size_t written = 0;
    for (size_t j = 0; j < whole; j += MK_KL_LANES) written = mk_fusion_keys_step(tau, j, MK_KL_LANES, kl, out, written, shift, prefixes);
    if (whole < n) written = mk_fusion_keys_step(tau, whole, n - whole, kl, out, written, shift, prefixes);
    return written;
}

MK_KL_INLINE void mk_fusion_select_step(const float *tau, size_t j, size_t count, double kl, float threshold, float *out) {
    const mk_v8f t = mk_kl_load_f32(tau + j, count, 0);
    const mk_v8i32 keep = mk_fusion_importance(t, kl) >= threshold;
    const mk_v8f kept = (mk_v8f)((mk_v8i32)t & keep);
    if (count == MK_KL_LANES) {
        *(mk_v8f_u *)(out + j) = kept;
    } else {
        for (size_t l = 0; l < count; l++) out[j + l] = kept[l];
    }
}

/// out_j = importance_j ≥ threshold ? τ_j : 0 over a row of n values.
MK_KL_INLINE void mk_fusion_select_body(const float *tau, size_t n, double kl, float threshold, float *out) {
    const size_t whole = n / MK_KL_LANES * MK_KL_LANES;
    for (size_t j = 0; j < whole; j += MK_KL_LANES) mk_fusion_select_step(tau, j, MK_KL_LANES, kl, threshold, out);
    if (whole < n) mk_fusion_select_step(tau, whole, n - whole, kl, threshold, out);
}

// Every kernel of Arcee Fusion built for one target, as NAME_SUFFIX.
#define MK_FUSION_KERNELS(SUFFIX, TARGET)                                                                                  \
    TARGET static inline double mk_softmax_kl_f32_##SUFFIX(const float *base, const float *delta, double *x0, double *x1,  \
                                                           size_t n) {                                                  \
        return mk_softmax_kl_body(base, delta, NULL, NULL, x0, x1, n);                                                  \
    }                                                                                                                   \
    TARGET static inline double mk_softmax_kl_f64_##SUFFIX(const double *base, const double *delta, double *x0, double *x1, \
                                                           size_t n) {                                                  \
        return mk_softmax_kl_body(NULL, NULL, base, delta, x0, x1, n);                                                  \
    }                                                                                                                   \
    TARGET static inline size_t mk_fusion_keys_##SUFFIX(const float *tau, size_t n, double kl, uint64_t *out, unsigned shift, \
                                                        const uint32_t *prefixes) {                                     \
        return mk_fusion_keys_body(tau, n, kl, out, shift, prefixes);                                                   \
    }                                                                                                                   \
    TARGET static inline void mk_fusion_select_##SUFFIX(const float *tau, size_t n, double kl, float threshold, float *out) { \
        mk_fusion_select_body(tau, n, kl, threshold, out);                                                              \
    }

MK_FUSION_KERNELS(portable, )
#if MK_X86
MK_FUSION_KERNELS(avx2, __attribute__((target("avx2"))))
MK_FUSION_KERNELS(avx512, __attribute__((target("avx512f"))))
#endif

/// 1 when AVX-512F is usable on this CPU (and by the OS).
static inline int mk_cpu_has_avx512f(void) {
#if MK_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/// The row's KL divergence (see mk_softmax_kl_body) with θ₀ = base and θ₁ = base + delta; `level`
/// 2 for AVX-512F, 1 for AVX2 (only when the CPU has it), else the portable build.
static inline double mk_softmax_kl_f32(const float *base, const float *delta, double *x0, double *x1, size_t n, int level) {
#if MK_X86
    if (level >= 2) return mk_softmax_kl_f32_avx512(base, delta, x0, x1, n);
    if (level == 1) return mk_softmax_kl_f32_avx2(base, delta, x0, x1, n);
#endif
    (void)level;
    return mk_softmax_kl_f32_portable(base, delta, x0, x1, n);
}
static inline double mk_softmax_kl_f64(const double *base, const double *delta, double *x0, double *x1, size_t n, int level) {
#if MK_X86
    if (level >= 2) return mk_softmax_kl_f64_avx512(base, delta, x0, x1, n);
    if (level == 1) return mk_softmax_kl_f64_avx2(base, delta, x0, x1, n);
#endif
    (void)level;
    return mk_softmax_kl_f64_portable(base, delta, x0, x1, n);
}

/// The importance keys of a row (see mk_fusion_keys_body); `level` as for mk_softmax_kl_f32.
static inline size_t mk_fusion_keys(const float *tau, size_t n, double kl, uint64_t *out, unsigned shift, const uint32_t *prefixes, int level) {
#if MK_X86
    if (level >= 2) return mk_fusion_keys_avx512(tau, n, kl, out, shift, prefixes);
    if (level == 1) return mk_fusion_keys_avx2(tau, n, kl, out, shift, prefixes);
#endif
    (void)level;
    return mk_fusion_keys_portable(tau, n, kl, out, shift, prefixes);
}

/// The kept entries of a row (see mk_fusion_select_body); `level` as for mk_softmax_kl_f32.
static inline void mk_fusion_select(const float *tau, size_t n, double kl, float threshold, float *out, int level) {
#if MK_X86
    if (level >= 2) { mk_fusion_select_avx512(tau, n, kl, threshold, out); return; }
    if (level == 1) { mk_fusion_select_avx2(tau, n, kl, threshold, out); return; }
#endif
    (void)level;
    mk_fusion_select_portable(tau, n, kl, threshold, out);
}

/// The kernel's e^x (x ≤ 0) and log y (y > 0 normal) of one value, for tests.
static inline double mk_kl_exp_scalar(double x) { return mk_kl_exp(mk_kl_splat(x))[0]; }
static inline double mk_kl_log_scalar(double y) { return mk_kl_log(mk_kl_splat(y))[0]; }

// MARK: - Dot products and axpy with one fixed evaluation order

// OpenBLAS picks its level-1 kernels by CPU model (falling back to old SSE kernels on a CPU it does
// not recognise, as virtual machines often present), and its dot products sum in a kernel-specific
// order, so the same merge could round differently on another machine. These kernels fix the order:
// a dot product keeps 32 float (16 double) partial sums, lane l taking the elements i ≡ l (mod 32)
// in turn, each step a product then a sum (FP_CONTRACT is off above: never fused; asum adds |xᵢ|
// the same way), the block
// after the last whole one read as if zero-padded (adding 0·0 changes no sum), and the partial sums
// folded in one fixed pairwise tree; axpy computes y + (α·x) element by element (two roundings, as
// every non-FMA BLAS does). The portable, AVX2 and AVX-512F builds of the same body give the same
// bits.
typedef float mk_v16f __attribute__((vector_size(64)));
typedef float mk_v16f_u __attribute__((vector_size(64), aligned(4), may_alias));
typedef double mk_v8d __attribute__((vector_size(64)));

MK_KL_INLINE float mk_fold16f(mk_v16f a) {
    const mk_v8f h8 = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
    const float h4[4] = { h8[0] + h8[4], h8[1] + h8[5], h8[2] + h8[6], h8[3] + h8[7] };
    return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

MK_KL_INLINE mk_v16f mk_load16f(const float *x, size_t count) {
    if (count == 16) return *(const mk_v16f_u *)x;
    mk_v16f v = {0};
    for (size_t l = 0; l < count; l++) v[l] = x[l];
    return v;
}

MK_KL_INLINE float mk_sdot_body(const float *x, const float *y, size_t n) {
    mk_v16f a0 = {0}, a1 = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = a0 + *(const mk_v16f_u *)(x + i) * *(const mk_v16f_u *)(y + i);
        a1 = a1 + *(const mk_v16f_u *)(x + i + 16) * *(const mk_v16f_u *)(y + i + 16);
    }
    if (i < n) {
        const size_t c0 = n - i < 16 ? n - i : 16, c1 = n - i - c0;
        a0 = a0 + mk_load16f(x + i, c0) * mk_load16f(y + i, c0);
        if (c1) a1 = a1 + mk_load16f(x + i + 16, c1) * mk_load16f(y + i + 16, c1);
    }
    return mk_fold16f(a0 + a1);
}

/// Σ|xᵢ| in the dot product's order (the absolute values in place of the products).
MK_KL_INLINE float mk_sasum_body(const float *x, size_t n) {
    mk_v16f a0 = {0}, a1 = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = a0 + __builtin_elementwise_abs(*(const mk_v16f_u *)(x + i));
        a1 = a1 + __builtin_elementwise_abs(*(const mk_v16f_u *)(x + i + 16));
    }
    if (i < n) {
        const size_t c0 = n - i < 16 ? n - i : 16, c1 = n - i - c0;
        a0 = a0 + __builtin_elementwise_abs(mk_load16f(x + i, c0));
        if (c1) a1 = a1 + __builtin_elementwise_abs(mk_load16f(x + i + 16, c1));
    }
    return mk_fold16f(a0 + a1);
}

/// The double partial sums folded as the float ones are (lanes l and l + 4, then (0 + 2) + (1 + 3)).
MK_KL_INLINE double mk_fold8d(mk_v8d a) {
    const double h4[4] = { a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7] };
    return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

MK_KL_INLINE mk_v8d mk_load8d(const double *x, size_t count) {
    if (count == 8) return *(const mk_v8d_u *)x;
    mk_v8d v = {0};
    for (size_t l = 0; l < count; l++) v[l] = x[l];
    return v;
}

MK_KL_INLINE double mk_ddot_body(const double *x, const double *y, size_t n) {
    mk_v8d a0 = {0}, a1 = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = a0 + *(const mk_v8d_u *)(x + i) * *(const mk_v8d_u *)(y + i);
        a1 = a1 + *(const mk_v8d_u *)(x + i + 8) * *(const mk_v8d_u *)(y + i + 8);
    }
    if (i < n) {
        const size_t c0 = n - i < 8 ? n - i : 8, c1 = n - i - c0;
        a0 = a0 + mk_load8d(x + i, c0) * mk_load8d(y + i, c0);
        if (c1) a1 = a1 + mk_load8d(x + i + 8, c1) * mk_load8d(y + i + 8, c1);
    }
    return mk_fold8d(a0 + a1);
}

MK_KL_INLINE double mk_dasum_body(const double *x, size_t n) {
    mk_v8d a0 = {0}, a1 = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = a0 + __builtin_elementwise_abs(*(const mk_v8d_u *)(x + i));
        a1 = a1 + __builtin_elementwise_abs(*(const mk_v8d_u *)(x + i + 8));
    }
    if (i < n) {
        const size_t c0 = n - i < 8 ? n - i : 8, c1 = n - i - c0;
        a0 = a0 + __builtin_elementwise_abs(mk_load8d(x + i, c0));
        if (c1) a1 = a1 + __builtin_elementwise_abs(mk_load8d(x + i + 8, c1));
    }
    return mk_fold8d(a0 + a1);
}

MK_KL_INLINE void mk_saxpy_body(float alpha, const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const mk_v16f p = *(const mk_v16f_u *)(x + i) * alpha;
        *(mk_v16f_u *)(y + i) = *(const mk_v16f_u *)(y + i) + p;
    }
    for (; i < n; i++) {
        const float p = alpha * x[i];
        y[i] = y[i] + p;
    }
}

MK_KL_INLINE void mk_daxpy_body(double alpha, const double *x, double *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const mk_v8d p = *(const mk_v8d_u *)(x + i) * alpha;
        *(mk_v8d_u *)(y + i) = *(const mk_v8d_u *)(y + i) + p;
    }
    for (; i < n; i++) {
        const double p = alpha * x[i];
        y[i] = y[i] + p;
    }
}

#define MK_LEVEL1_KERNELS(SUFFIX, TARGET)                                                                               \
    TARGET static inline float mk_sdot_##SUFFIX(const float *x, const float *y, size_t n) { return mk_sdot_body(x, y, n); } \
    TARGET static inline double mk_ddot_##SUFFIX(const double *x, const double *y, size_t n) { return mk_ddot_body(x, y, n); } \
    TARGET static inline float mk_sasum_##SUFFIX(const float *x, size_t n) { return mk_sasum_body(x, n); }                  \
    TARGET static inline double mk_dasum_##SUFFIX(const double *x, size_t n) { return mk_dasum_body(x, n); }               \
    TARGET static inline void mk_saxpy_##SUFFIX(float a, const float *x, float *y, size_t n) { mk_saxpy_body(a, x, y, n); } \
    TARGET static inline void mk_daxpy_##SUFFIX(double a, const double *x, double *y, size_t n) { mk_daxpy_body(a, x, y, n); }

MK_LEVEL1_KERNELS(portable, )
#if MK_X86
MK_LEVEL1_KERNELS(avx2, __attribute__((target("avx2"))))
MK_LEVEL1_KERNELS(avx512, __attribute__((target("avx512f"))))
#endif

/// xᵀy in the fixed order above; `level` 2 AVX-512F, 1 AVX2 (only when the CPU has it), else portable.
static inline float mk_sdot(const float *x, const float *y, size_t n, int level) {
#if MK_X86
    if (level >= 2) return mk_sdot_avx512(x, y, n);
    if (level == 1) return mk_sdot_avx2(x, y, n);
#endif
    (void)level;
    return mk_sdot_portable(x, y, n);
}
static inline double mk_ddot(const double *x, const double *y, size_t n, int level) {
#if MK_X86
    if (level >= 2) return mk_ddot_avx512(x, y, n);
    if (level == 1) return mk_ddot_avx2(x, y, n);
#endif
    (void)level;
    return mk_ddot_portable(x, y, n);
}
/// Σ|xᵢ| in the same order as mk_sdot; `level` as for mk_sdot.
static inline float mk_sasum(const float *x, size_t n, int level) {
#if MK_X86
    if (level >= 2) return mk_sasum_avx512(x, n);
    if (level == 1) return mk_sasum_avx2(x, n);
#endif
    (void)level;
    return mk_sasum_portable(x, n);
}
static inline double mk_dasum(const double *x, size_t n, int level) {
#if MK_X86
    if (level >= 2) return mk_dasum_avx512(x, n);
    if (level == 1) return mk_dasum_avx2(x, n);
#endif
    (void)level;
    return mk_dasum_portable(x, n);
}
/// y ← y + α·x (see above); `level` as for mk_sdot.
static inline void mk_saxpy(float a, const float *x, float *y, size_t n, int level) {
#if MK_X86
    if (level >= 2) { mk_saxpy_avx512(a, x, y, n); return; }
    if (level == 1) { mk_saxpy_avx2(a, x, y, n); return; }
#endif
    (void)level;
    mk_saxpy_portable(a, x, y, n);
}
static inline void mk_daxpy(double a, const double *x, double *y, size_t n, int level) {
#if MK_X86
    if (level >= 2) { mk_daxpy_avx512(a, x, y, n); return; }
    if (level == 1) { mk_daxpy_avx2(a, x, y, n); return; }
#endif
    (void)level;
    mk_daxpy_portable(a, x, y, n);
}

// ---- TIES's magnitude trims and threshold histograms on Float keys ---------------------------
//
// A Float's magnitude key is its bits & 0x7FFFFFFF (ordered as |x|, NaN above ∞). Integer
// compares and selects only, so every build gives the same result as the portable Swift loops.

typedef unsigned int mk_v16u32 __attribute__((vector_size(64)));
typedef unsigned int mk_v16u32_u __attribute__((vector_size(64), aligned(4), may_alias));

/// x[k] = +0 where key(x[k]) < threshold.
MK_KL_INLINE void mk_zero_below_body(float *x, size_t n, uint32_t threshold) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const mk_v16u32 v = *(const mk_v16u32_u *)(x + i);
        const mk_v16u32 below = (mk_v16u32)((v & 0x7FFFFFFFu) < threshold);
        *(mk_v16u32_u *)(x + i) = v & ~below;
    }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        if ((u & 0x7FFFFFFFu) < threshold) x[i] = 0.0f;
    }
}

/// Counts the keys below `low` (returned) and adds one to counts[key − low] for each key in
/// low…low + span.
MK_KL_INLINE size_t mk_bracket_count_body(const float *x, size_t n, uint32_t low, uint32_t span, int64_t *counts) {
    size_t below = 0, i = 0;
    const mk_v16u32 lane_bits = {1u << 0, 1u << 1, 1u << 2, 1u << 3, 1u << 4, 1u << 5, 1u << 6, 1u << 7,
                                 1u << 8, 1u << 9, 1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15};
    while (i + 16 <= n) {
        // Lane counters stay far from overflow: at most 2^16 blocks per round.
        mk_v16u32 lanes = {0};
        const size_t end = i + ((n - i) / 16 < 65536 ? (n - i) / 16 : 65536) * 16;
        for (; i < end; i += 16) {
            const mk_v16u32 key = *(const mk_v16u32_u *)(x + i) & 0x7FFFFFFFu;
            lanes -= (mk_v16u32)(key < low);
            const mk_v16u32 inside = (mk_v16u32)((key - low) <= span);
            // Few keys fall in the bracket: a 16-bit mask of them, then only its set lanes.
            unsigned mask = __builtin_reduce_or(inside & lane_bits);
            if (mask) {
                uint32_t keys[16];
                memcpy(keys, &key, sizeof keys);
                do {
                    counts[keys[__builtin_ctz(mask)] - low] += 1;
                    mask &= mask - 1;
                } while (mask);
            }
        }
        for (int l = 0; l < 16; l++) below += lanes[l];
    }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        const uint32_t key = u & 0x7FFFFFFFu;
        below += key < low;
        if (key - low <= span) counts[key - low] += 1;
    }
    return below;
}

#define MK_ZERO_BELOW_KERNEL(SUFFIX, TARGET)                                                                              \
    TARGET static inline void mk_zero_below_##SUFFIX(float *x, size_t n, uint32_t t) { mk_zero_below_body(x, n, t); }
#define MK_BRACKET_COUNT_KERNEL(SUFFIX, TARGET)                                                                           \
    TARGET static inline size_t mk_bracket_count_##SUFFIX(const float *x, size_t n, uint32_t low, uint32_t span, int64_t *c) { \
        return mk_bracket_count_body(x, n, low, span, c); }

MK_ZERO_BELOW_KERNEL(portable, )
MK_BRACKET_COUNT_KERNEL(portable, )
#if MK_X86
MK_ZERO_BELOW_KERNEL(avx2, __attribute__((target("avx2"))))
MK_BRACKET_COUNT_KERNEL(avx2, __attribute__((target("avx2"))))
MK_ZERO_BELOW_KERNEL(avx512, __attribute__((target("avx512f"))))

/// mk_bracket_count_body for AVX-512F, with its compare masks (the same counts): the mask of keys in
/// the bracket comes out of the compare, with no lane reduction.
__attribute__((target("avx512f,popcnt")))
static inline size_t mk_bracket_count_avx512(const float *x, size_t n, uint32_t low, uint32_t span, int64_t *counts) {
    const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF), vlow = _mm512_set1_epi32((int)low), vspan = _mm512_set1_epi32((int)span);
    size_t below = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i key = _mm512_and_si512(_mm512_loadu_si512((const void *)(x + i)), magnitude);
        below += (size_t)__builtin_popcount((unsigned)_mm512_cmplt_epu32_mask(key, vlow));
        unsigned mask = (unsigned)_mm512_cmple_epu32_mask(_mm512_sub_epi32(key, vlow), vspan);
        if (mask) {
            uint32_t keys[16];
            _mm512_storeu_si512((void *)keys, key);
            do {
                counts[keys[__builtin_ctz(mask)] - low] += 1;
                mask &= mask - 1;
            } while (mask);
        }
    }
    return below + mk_bracket_count_portable(x + i, n - i, low, span, counts);
}
#endif

/// `level` as for mk_sdot.
static inline void mk_zero_below(float *x, size_t n, uint32_t threshold, int level) {
#if MK_X86
    if (level >= 2) { mk_zero_below_avx512(x, n, threshold); return; }
    if (level == 1) { mk_zero_below_avx2(x, n, threshold); return; }
#endif
    (void)level;
    mk_zero_below_portable(x, n, threshold);
}
static inline size_t mk_bracket_count(const float *x, size_t n, uint32_t low, uint32_t span, int64_t *counts, int level) {
#if MK_X86
    if (level >= 2) return mk_bracket_count_avx512(x, n, low, span, counts);
    if (level == 1) return mk_bracket_count_avx2(x, n, low, span, counts);
#endif
    (void)level;
    return mk_bracket_count_portable(x, n, low, span, counts);
}

// ---- passthrough's scale in bfloat16 (mergekit's compute dtype) ------------------------------

/// out = bf16(s·(d + b)) − b: the product rounded to bfloat16 as mk_float_to_bf16_scalar rounds
/// (to nearest even; NaN to the quiet NaN 0x7FC0), then the base taken off again. One pass for
/// what would be a scale, a rounding and a subtraction.
MK_KL_INLINE void mk_scale_round_bf16_body(const float *d, const float *b, float s, float *out, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const mk_v16f base = *(const mk_v16f_u *)(b + i);
        const mk_v16f sum = *(const mk_v16f_u *)(d + i) + base;
        const mk_v16f product = sum * s;
        const mk_v16u32 u = (mk_v16u32)product;
        const mk_v16u32 rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
        const mk_v16u32 nan = (mk_v16u32)((u & 0x7FFFFFFFu) > 0x7F800000u);
        const mk_v16u32 bits = (rounded & ~nan) | (0x7FC00000u & nan);
        *(mk_v16f_u *)(out + i) = (mk_v16f)bits - base;
    }
    for (; i < n; i++) {
        const float product = (d[i] + b[i]) * s;
        const uint32_t h = mk_float_to_bf16_scalar(product);
        const uint32_t bits = h << 16;
        float r;
        memcpy(&r, &bits, 4);
        out[i] = r - b[i];
    }
}

#define MK_SCALE_KERNELS(SUFFIX, TARGET)                                                                                  \
    TARGET static inline void mk_scale_round_bf16_##SUFFIX(const float *d, const float *b, float s, float *out, size_t n) { \
        mk_scale_round_bf16_body(d, b, s, out, n); }

MK_SCALE_KERNELS(portable, )
#if MK_X86
MK_SCALE_KERNELS(avx2, __attribute__((target("avx2"))))
MK_SCALE_KERNELS(avx512, __attribute__((target("avx512f"))))
#endif

/// `level` as for mk_sdot.
static inline void mk_scale_round_bf16(const float *d, const float *b, float s, float *out, size_t n, int level) {
#if MK_X86
    if (level >= 2) { mk_scale_round_bf16_avx512(d, b, s, out, n); return; }
    if (level == 1) { mk_scale_round_bf16_avx2(d, b, s, out, n); return; }
#endif
    (void)level;
    mk_scale_round_bf16_portable(d, b, s, out, n);
}

// ---- TIES's sign election and disjoint merge in one pass (Float, no compute-dtype rounding) ---
//
// Per element, exactly the steps (and roundings) of the separate passes it replaces:
//   S = ((0 + d₀) + d₁) + …;  s = tie where S = 0, else + where S ≥ 0, else − (NaN votes −);
//   votes += [S > 0] − [S < 0];
//   out = Σ (in input order) of the dᵢ with dᵢ·s > 0, count = Σ of their increments;
//   mean: out = out / max(count, 1); normalized: out = out / (count, or 1 where count = 0);
//   resolved += [S = 0 and out ≠ 0].
// `aggregation`: 0 sum, 1 mean, 2 normalized. Returns votes; *resolved gets the tie count.

MK_KL_INLINE int64_t mk_ties_merge_body(const float *const *d, size_t m, const float *increments, int aggregation, float tie,
                                        float *out, size_t n, int64_t *resolved) {
    int64_t votes = 0, ties = 0;
    size_t i = 0;
    const mk_v16f zero = {0}, one = zero + 1.0f;
    while (i + 16 <= n) {
        // Lane counters: at most 2^16 blocks per round.
        mk_v16u32 plus = {0}, minus = {0}, tied = {0};
        const size_t end = i + ((n - i) / 16 < 65536 ? (n - i) / 16 : 65536) * 16;
        for (; i < end; i += 16) {
            mk_v16f total = zero;
            for (size_t j = 0; j < m; j++) total = total + *(const mk_v16f_u *)(d[j] + i);
            const mk_v16u32 positive = (mk_v16u32)(total > zero), negative = (mk_v16u32)(total < zero);
            const mk_v16u32 isZero = (mk_v16u32)(total == zero);
            const mk_v16u32 ge = (mk_v16u32)(total >= zero);
            const mk_v16f strict = (mk_v16f)(((mk_v16u32)one & ge) | ((mk_v16u32)(-one) & ~ge));
            const mk_v16f sign = (mk_v16f)(((mk_v16u32)(zero + tie) & isZero) | ((mk_v16u32)strict & ~isZero));
            plus -= positive;
            minus -= negative;
            mk_v16f acc = zero, count = zero;
            for (size_t j = 0; j < m; j++) {
                const mk_v16f v = *(const mk_v16f_u *)(d[j] + i);
                const mk_v16u32 agree = (mk_v16u32)(v * sign > zero);
                acc = acc + (mk_v16f)((mk_v16u32)v & agree);
                count = count + (mk_v16f)((mk_v16u32)(zero + increments[j]) & agree);
            }
            if (aggregation == 1) {
                const mk_v16u32 big = (mk_v16u32)(count > one);
                const mk_v16f divisor = (mk_v16f)(((mk_v16u32)count & big) | ((mk_v16u32)one & ~big));
                acc = (acc / divisor) * 1.0f;
            } else if (aggregation == 2) {
                const mk_v16u32 none = (mk_v16u32)(count == zero);
                const mk_v16f divisor = (mk_v16f)(((mk_v16u32)one & none) | ((mk_v16u32)count & ~none));
                acc = (acc / divisor) * 1.0f;
            }
            *(mk_v16f_u *)(out + i) = acc;
            tied -= isZero & (mk_v16u32)(acc != zero);
        }
        for (int l = 0; l < 16; l++) { votes += (int64_t)plus[l] - (int64_t)minus[l]; ties += tied[l]; }
    }
    for (; i < n; i++) {
        float total = 0.0f;
        for (size_t j = 0; j < m; j++) total = total + d[j][i];
        const float sign = total == 0.0f ? tie : (total >= 0.0f ? 1.0f : -1.0f);
        votes += (total > 0.0f) - (total < 0.0f);
        float acc = 0.0f, count = 0.0f;
        for (size_t j = 0; j < m; j++) {
            const float v = d[j][i];
            const int agree = v * sign > 0.0f;
            acc = acc + (agree ? v : 0.0f);
            count = count + (agree ? increments[j] : 0.0f);
        }
        if (aggregation == 1) acc = 1.0f * (acc / (count > 1.0f ? count : 1.0f));
        else if (aggregation == 2) acc = 1.0f * (acc / (count == 0.0f ? 1.0f : count));
        out[i] = acc;
        ties += total == 0.0f && acc != 0.0f;
    }
    *resolved = ties;
    return votes;
}

#define MK_TIES_KERNELS(SUFFIX, TARGET)                                                                                   \
    TARGET static inline int64_t mk_ties_merge_##SUFFIX(const float *const *d, size_t m, const float *increments, int aggregation, \
                                                      float tie, float *out, size_t n, int64_t *resolved) {              \
        return mk_ties_merge_body(d, m, increments, aggregation, tie, out, n, resolved); }

MK_TIES_KERNELS(portable, )
#if MK_X86
MK_TIES_KERNELS(avx2, __attribute__((target("avx2"))))
MK_TIES_KERNELS(avx512, __attribute__((target("avx512f"))))
#endif

/// `level` as for mk_sdot.
static inline int64_t mk_ties_merge(const float *const *d, size_t m, const float *increments, int aggregation, float tie,
                                    float *out, size_t n, int64_t *resolved, int level) {
#if MK_X86
    if (level >= 2) return mk_ties_merge_avx512(d, m, increments, aggregation, tie, out, n, resolved);
    if (level == 1) return mk_ties_merge_avx2(d, m, increments, aggregation, tie, out, n, resolved);
#endif
    (void)level;
    return mk_ties_merge_portable(d, m, increments, aggregation, tie, out, n, resolved);
}

#pragma clang diagnostic pop

#endif
