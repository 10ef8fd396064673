/* key.c - placeholder until implemented. */
typedef int tally__placeholder_key;
