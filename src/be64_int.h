/*
 * be64_int.h - 64-bit big-endian loads and stores, shared by the key
 * encoding (key.c) and the node layout (node.c). Written out byte by byte:
 * compilers turn each into a byte-swapped load or store, and no alignment
 * or byte order of the machine is assumed.
 */
#ifndef TALLY_BE64_INT_H
#define TALLY_BE64_INT_H

#include <stdint.h>

static inline void tally__put_be64(unsigned char *p, uint64_t v) {
  p[0] = (unsigned char)(v >> 56);
  p[1] = (unsigned char)(v >> 48);
  p[2] = (unsigned char)(v >> 40);
  p[3] = (unsigned char)(v >> 32);
  p[4] = (unsigned char)(v >> 24);
  p[5] = (unsigned char)(v >> 16);
  p[6] = (unsigned char)(v >> 8);
  p[7] = (unsigned char)v;
}

static inline uint64_t tally__get_be64(const unsigned char *p) {
  return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) |
         ((uint64_t)p[2] << 40) | ((uint64_t)p[3] << 32) |
         ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
         ((uint64_t)p[6] << 8) | (uint64_t)p[7];
}

#endif /* TALLY_BE64_INT_H */
