/*
 * replay.c - main() for the fuzz targets without libFuzzer: runs
 * LLVMFuzzerTestOneInput once over every regular file of each directory
 * (or file) named on the command line. Exits 1 if a path cannot be read or
 * holds no input at all; a failing check aborts, as under libFuzzer.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int rp_file(const char *path) {
  FILE *f = fopen(path, "rb");
  unsigned char *buf = NULL;
  size_t n = 0, cap = 0;
  if (f == NULL) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return -1;
  }
  for (;;) {
    size_t got;
    if (n == cap) {
      unsigned char *p = realloc(buf, cap ? 2 * cap : 4096);
      if (p == NULL) {
        free(buf);
        fclose(f);
        return -1;
      }
      buf = p;
      cap = cap ? 2 * cap : 4096;
    }
    got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, n);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  long inputs = 0;
  int i;
  for (i = 1; i < argc; i++) {
    struct stat st;
    DIR *d;
    struct dirent *e;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: no such path %s\n", argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (rp_file(argv[i]) != 0)
        return 1;
      inputs++;
      continue;
    }
    d = opendir(argv[i]);
    if (d == NULL)
      return 1;
    while ((e = readdir(d)) != NULL) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
      if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        continue;
      if (rp_file(path) != 0) {
        closedir(d);
        return 1;
      }
      inputs++;
    }
    closedir(d);
  }
  printf("replayed %ld inputs\n", inputs);
  return inputs > 0 ? 0 : 1;
}
