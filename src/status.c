/*
 * status.c - result codes (their names and messages) and the version.
 *
 * Both tables are generated from TALLY_ERRNO_MAP in tally.h, so a code, its
 * name and its text cannot drift apart. Codes are 0 and small negatives;
 * anything else gets a fallback text.
 */
#include "tally.h"

const char *tally_strerror(int code) {
  switch (code) {
#define TALLY__XX(name, value, msg)                                            \
  case (value):                                                                \
    return msg;
    TALLY_ERRNO_MAP(TALLY__XX)
#undef TALLY__XX
  default:
    return "unknown tally result code";
  }
}

const char *tally_errname(int code) {
  switch (code) {
#define TALLY__XX(name, value, msg)                                            \
  case (value):                                                                \
    return #name;
    TALLY_ERRNO_MAP(TALLY__XX)
#undef TALLY__XX
  default:
    return "UNKNOWN";
  }
}

const char *tally_version(void) { return TALLY_VERSION_STRING; }

int tally_version_number(void) { return TALLY_VERSION_NUMBER; }
