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

#endif
