/*
 * fuzz.h - what the fuzz targets share: the libFuzzer entry point they
 * define, and the check that stops a run on a wrong answer.
 *
 * Each target is one file defining LLVMFuzzerTestOneInput. Built with
 * -DTALLY_FUZZ=ON (clang) it links libFuzzer; otherwise it links replay.c,
 * whose main() runs the entry point over every file of the given corpus
 * directories, so the seeds run in CTest under any compiler.
 */
#ifndef TALLY_FUZZ_H
#define TALLY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A wrong answer is a crash: libFuzzer keeps the input that caused it. */
#define FZ_CHECK(cond)                                                         \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* Input bytes consumed front to back; past the end every read gives 0. */
typedef struct fz_in {
  const uint8_t *p;
  size_t n;
} fz_in;

static inline unsigned fz_byte(fz_in *in) {
  if (in->n == 0)
    return 0;
  in->n--;
  return *in->p++;
}

static inline uint64_t fz_u64(fz_in *in) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++)
    v = (v << 8) | fz_byte(in);
  return v;
}

#endif /* TALLY_FUZZ_H */
