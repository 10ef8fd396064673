/* quickstart.c - placeholder until the aggregate lands. */
#include <stdio.h>
#include "tally.h"
int main(void) { printf("%s\n", tally_strerror(TALLY_OK)); return 0; }
