/*
 * fuzz_txn.c - transactions of a tally_db over the in-memory store of
 * tests/memtable.h, driven by the input: each transaction runs a few row
 * writes and reads (insert, update, delete, get; ids that may not exist),
 * may end by returning nonzero (rolled back), and may meet a store fault
 * or an extractor fault injected at a chosen call. Two table aggregates
 * follow the table "scores" (one plain, one idempotent, node size 4).
 *
 * After every transaction, whatever its outcome:
 *  - the store holds exactly the rows of a copy kept by the target (the
 *    copy takes the transaction's writes only when it committed);
 *  - tally_table_verify finds every aggregate equal to the rows (no
 *    missing, extra or wrong item), and tally_db_validate passes;
 *  - the store saw no protocol misuse and every row handed out came back.
 */
#include <string.h>

#include "fuzz.h"
#include "memtable.h"
#include "tally.h"

#define FT_TXNS 40
#define FT_OPS 12

static const char *const ft_tables[] = {"scores", NULL};

typedef struct ft_run {
  fz_in *in;
  memtable *mt;
  int abort_code; /* fn's return value: 0 commits */
} ft_run;

static tally_bytes ft_id(unsigned v, unsigned char *buf) {
  return tally_id_int((int64_t)(v % 24), buf);
}

/* Store calls a fault may hit (a failing rollback is the store's own
 * failure to restore, outside what tally can keep consistent). */
static const mt_cb ft_faults[] = {MT_BEGIN,  MT_COMMIT, MT_INSERT,
                                  MT_GET,    MT_UPDATE, MT_DELETE};

static int ft_fn(tally_txn *txn, void *udata) {
  ft_run *R = udata;
  unsigned n = fz_byte(R->in) % FT_OPS, k;
  for (k = 0; k < n; k++) {
    unsigned op = fz_byte(R->in) % 4, v = fz_byte(R->in);
    unsigned char ib[8];
    char user[2] = {(char)('a' + v % 3), 0};
    mt_row row = mt_row_make(user, (int64_t)(v % 17) - 4, (double)(v % 9));
    const void *got = NULL;
    int rc;
    switch (op) {
    case 0:
      rc = tally_txn_insert(txn, "scores", &row, NULL, NULL);
      break;
    case 1:
      rc = tally_txn_update(txn, "scores", ft_id(fz_byte(R->in), ib), &row);
      break;
    case 2:
      rc = tally_txn_delete(txn, "scores", ft_id(fz_byte(R->in), ib));
      break;
    default:
      rc = tally_txn_get(txn, "scores", ft_id(fz_byte(R->in), ib), &got);
      if (rc == TALLY_OK)
        tally_txn_release(txn, "scores", got);
    }
    /* a missing row is not an error; anything else ends the work */
    if (rc != TALLY_OK && rc != TALLY_ENOROW) {
      FZ_CHECK(tally_txn_status(txn) != TALLY_OK);
      break;
    }
  }
  return R->abort_code;
}

static void ft_check(memtable *mt, const memtable *want, tally_db *db,
                     tally_table *const *tab) {
  char msg[256] = "";
  int i;
  FZ_CHECK(mt->misuse == 0 && mt->outstanding == 0 && !mt->in_txn);
  FZ_CHECK(mt_same(mt, want));
  if (tally_db_validate(db, msg, sizeof msg) != TALLY_OK) {
    fprintf(stderr, "db validate: %s\n", msg);
    FZ_CHECK(0);
  }
  for (i = 0; i < 2; i++) {
    tally_verify_report rep;
    FZ_CHECK(tally_table_verify(tab[i], &mt->store, "scores", NULL, NULL,
                                &rep) == TALLY_OK);
    FZ_CHECK(rep.missing == 0 && rep.extra == 0 && rep.wrong == 0);
    FZ_CHECK(rep.rows == mt_count(mt, "scores"));
    FZ_CHECK(tally_agg_validate(tally_table_agg(tab[i]), msg, sizeof msg) ==
             TALLY_OK);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  memtable mt, want;
  tally_db_options o;
  tally_db *db;
  tally_table *tab[2];
  mt_xfail xf;
  int i, t;

  mt_init(&mt, ft_tables);
  mt_copy(&want, &mt);
  memset(&xf, 0, sizeof xf);
  memset(&o, 0, sizeof o);
  o.version = 1;
  o.store = &mt.store;
  FZ_CHECK(tally_db_new(&o, &db) == TALLY_OK);
  for (i = 0; i < 2; i++) {
    tally_table_options to;
    memset(&to, 0, sizeof to);
    to.version = 1;
    to.key = i == 0 ? mt_key_score : mt_key_user_score;
    to.sum = mt_sum_value;
    to.ns = i == 0 ? mt_ns_user : NULL;
    to.udata = &xf;
    to.node_size = 4;
    FZ_CHECK(tally_table_new(&to, &tab[i]) == TALLY_OK);
    FZ_CHECK(tally_db_register_table(db, "scores", tab[i], i == 1) ==
             TALLY_OK);
  }
  for (t = 0; t < FT_TXNS && in.n > 0; t++) {
    ft_run R;
    unsigned mode = fz_byte(&in);
    int rc;
    R.in = &in;
    R.mt = &mt;
    R.abort_code = mode % 5 == 0 ? 1 + (int)(mode % 3) : 0;
    if (mode % 7 == 1) /* a store call fails */
      mt_fail(&mt, ft_faults[fz_byte(&in) % 6], 1 + fz_byte(&in) % 8,
              -1 - (int)(mode % 4));
    else if (mode % 7 == 2) /* an extractor fails */
      mt_xfail_arm(&xf, 1 + fz_byte(&in) % 8, 77);
    rc = tally_db_transact(db, ft_fn, &R);
    mt_fail(&mt, MT_ANY, 0, 0);
    mt_xfail_arm(&xf, 0, 0);
    if (rc == TALLY_OK) {
      mt_free(&want);
      mt_copy(&want, &mt);
    } else if (R.abort_code != 0 && rc == TALLY_EABORT) {
      FZ_CHECK(tally_db_hook_error(db) == R.abort_code);
    }
    ft_check(&mt, &want, db, tab);
  }
  tally_db_free(db);
  for (i = 0; i < 2; i++)
    tally_table_free(tab[i]);
  mt_free(&want);
  mt_free(&mt);
  return 0;
}
