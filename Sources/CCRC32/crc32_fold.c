// CRC-32 by folding with carry-less multiplication (PCLMULQDQ), after Intel's white paper "Fast
// CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction" (Gopal et al., 2009), with
// the constants for the reflected polynomial 0xEDB88320 (the Linux kernel's crc32-pclmul uses the
// same): fold four 128-bit lanes over 64-byte blocks, fold them into one, then fold 128 -> 64 ->
// 32 bits and finish with a Barrett reduction. A checksum, not cryptography. Tested in
// LNRecordingTests against the bit-at-a-time definition at every length and alignment.
#include "ccrc32.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

int lnrr_crc32_fold_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
}

__attribute__((target("pclmul,sse4.1")))
uint32_t lnrr_crc32_fold(uint32_t crc, const uint8_t *p, size_t len) {
    // x^(4*128+32) and x^(4*128-32) mod P, reflected: folding distance 512 bits.
    const __m128i k1k2 = _mm_set_epi64x(0x00000001c6e41596ULL, 0x0000000154442bd4ULL);
    // x^(128+32) and x^(128-32) mod P: folding distance 128 bits.
    const __m128i k3k4 = _mm_set_epi64x(0x00000000ccaa009eULL, 0x00000001751997d0ULL);
    // x^64 mod P, for the 64 -> 32 fold.
    const __m128i k5 = _mm_set_epi64x(0, 0x0000000163cd6124ULL);
    // P' (the polynomial, bit-reflected with x^32) and u' (floor(x^64 / P), reflected).
    const __m128i poly = _mm_set_epi64x(0x00000001f7011641ULL, 0x00000001db710641ULL);
    const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);

    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 0x00));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 0x10));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 0x20));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    p += 64;
    len -= 64;

    while (len >= 64) {
        __m128i h1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
        __m128i h2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
        __m128i h3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
        __m128i h4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
        x1 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
        x2 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
        x3 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
        x4 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, h1), _mm_loadu_si128((const __m128i *)(p + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, h2), _mm_loadu_si128((const __m128i *)(p + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, h3), _mm_loadu_si128((const __m128i *)(p + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, h4), _mm_loadu_si128((const __m128i *)(p + 0x30)));
        p += 64;
        len -= 64;
    }

    // Four lanes into one.
    __m128i h;
    h = _mm_clmulepi64_si128(x1, k3k4, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), h), x2);
    h = _mm_clmulepi64_si128(x1, k3k4, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), h), x3);
    h = _mm_clmulepi64_si128(x1, k3k4, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), h), x4);

    // The remaining whole 16-byte blocks.
    while (len >= 16) {
        h = _mm_clmulepi64_si128(x1, k3k4, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), h),
                           _mm_loadu_si128((const __m128i *)p));
        p += 16;
        len -= 16;
    }

    // 128 -> 64 bits (appending 32 zero bits): low half times k4, added to the high half.
    __m128i t = _mm_clmulepi64_si128(k3k4, x1, 0x01);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), t);
    // 64 -> 32 bits.
    __m128i x2r = _mm_srli_si128(x1, 4);
    x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), k5, 0x00);
    x1 = _mm_xor_si128(x1, x2r);
    // Barrett reduction to the 32-bit remainder.
    __m128i keep = x1;
    x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x10);
    x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x00);
    x1 = _mm_xor_si128(x1, keep);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

#else

int lnrr_crc32_fold_available(void) { return 0; }

uint32_t lnrr_crc32_fold(uint32_t crc, const uint8_t *p, size_t len) {
    (void)p;
    (void)len;
    return crc;  // never called: lnrr_crc32_fold_available() is 0
}

#endif
