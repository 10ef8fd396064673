/* table_aggregate.c - placeholder until implemented. */
typedef int tally__placeholder_table_aggregate;
