/* sign - the run's signature on the bytecode that travels in messages */
#include "sign.h"
#include "concur/arena.h"

#include <string.h>

/* SipHash-2-4 (Aumasson and Bernstein), 64-bit output. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                  \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                     \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                     \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                  \
  } while (0)

static uint64_t siphash(const uint8_t *in, size_t n, const uint8_t k[16]) {
  uint64_t k0, k1;
  memcpy(&k0, k, 8);
  memcpy(&k1, k + 8, 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  uint64_t b = (uint64_t)n << 56, m;
  const uint8_t *end = in + n - (n % 8);
  for (; in != end; in += 8) {
    memcpy(&m, in, 8);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  for (int i = (int)(n % 8) - 1; i >= 0; i--)
    b |= (uint64_t)in[i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t cc__lsign(const void *bytes, size_t n) { return siphash(bytes, n, cc_arena_secret()); }
