// CRC-32 (IEEE 802.3, reflected) folded with carry-less multiplication, for LNRecording's CRC32.
#ifndef LNRR_CCRC32_H
#define LNRR_CCRC32_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has PCLMULQDQ and SSE4.1 (x86-64), so `lnrr_crc32_fold` may be called; else 0.
int lnrr_crc32_fold_available(void);

/// Advances the raw CRC register `crc` (not inverted: start from 0xFFFFFFFF, invert at the end)
/// over `len` bytes at `p`. `len` must be at least 64 and a multiple of 16. Only call it when
/// `lnrr_crc32_fold_available()` is 1.
uint32_t lnrr_crc32_fold(uint32_t crc, const uint8_t *p, size_t len);

#endif
