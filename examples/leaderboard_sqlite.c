/*
 * leaderboard_sqlite.c - tally's main demonstration: a game leaderboard
 * whose rows live in a SQLite file and whose aggregates the tally_sqlite
 * component keeps in step with the table, durably and across processes,
 * checked against SQL at every step.
 *
 *     SQLite file (WAL)                         this process (tally_sqlite)
 *     scores(id INTEGER PRIMARY KEY,            by_score       key score
 *            player, game, score CHECK >= 0)    by_game_score  key [game, score]
 *       | capture triggers (installed by        per_game       ns game, key score
 *       v  attach) -> tally_log                 (sum = score in all three)
 *     tally_checkpoint: saved items  ------>    reopen = checkpoint + log,
 *                                               no table scan
 *     a child process with plain sqlite3 API writes the same table; the
 *     parent's next refresh applies its change from the log.
 *
 * What it shows, in order:
 *  1. opening the file: a new one (attach backfills an empty table), or one
 *     from an earlier run (restored from its checkpoint and the log after
 *     it, timed, no table scan);
 *  2. loading rows (200,000 by default) through encapsulated write
 *     functions, each a tally_sqlite_begin / plain SQL INSERT /
 *     tally_sqlite_commit transaction, with a progress display;
 *  3. a checkpoint, a close and a timed reopen, against a timed backfill of
 *     the same three aggregates (fresh tally_table objects filled by
 *     tally_table_backfill through the component's tally_store);
 *  4. a report: count, total, ranks, median, 90th percentile, top-10 page,
 *     per-game counts, each with its time from tally and from the same
 *     question in SQL (same connection, same data, indexes on score and on
 *     (game, score)), and whether they agree;
 *  5. a change made by another process that knows nothing of tally (UPDATE,
 *     INSERT, INSERT OR REPLACE, DELETE), appearing after one refresh;
 *  6. a transaction failing on CHECK(score >= 0): table and aggregates roll
 *     back together;
 *  7. tally_sqlite_verify on each aggregate: 0 differences.
 * Any disagreement between tally and SQL, or any difference found by
 * verify, makes the exit status 1, so CI runs the demo as a check.
 *
 *     leaderboard_sqlite [--rows N] [--help] [database-file]
 *
 * Without a file it works in a new temporary file (removed at exit). With
 * a file it keeps the rows: a second run restores the aggregates from the
 * checkpoint and adds N more rows (ids and players continue from the
 * table's largest id).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tally.h"
#include "tally_sqlite.h"

#define LB_DEFAULT_ROWS 200000
#define LB_BATCH 10000          /* rows per load transaction */
#define LB_MAX_GAMES 16         /* per-game lines compared */
#define LB_TOP 10               /* size of the top page */
#define LB_FOLLOWED "kamiro"    /* the player whose rank the report follows */
#define LB_FOLLOWED_SCORE 8750  /* kamiro's result in each run */
#define LB_IDLE_CALLS 1000    /* refreshes timed when nothing is new */

static const char *const lb_games[] = {"chess", "go", "poker", "tetris"};
#define LB_NGAMES (sizeof lb_games / sizeof lb_games[0])

static const char lb_schema[] =
    "CREATE TABLE IF NOT EXISTS scores("
    "  id INTEGER PRIMARY KEY, player TEXT, game TEXT,"
    "  score INTEGER CHECK(score >= 0));"
    "CREATE INDEX IF NOT EXISTS scores_score ON scores(score);"
    "CREATE INDEX IF NOT EXISTS scores_game_score ON scores(game, score);";

/* ---- small helpers ------------------------------------------------------ */

/* The temporary database, removed at exit (with its -wal and -shm). */
static char lb_tmp_path[512];

static void lb_remove_tmp(void) {
  if (lb_tmp_path[0] == '\0')
    return;
  const char *suffix[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    char p[600];
    snprintf(p, sizeof p, "%s%s", lb_tmp_path, suffix[i]);
    remove(p);
  }
  lb_tmp_path[0] = '\0';
}

/* Stop on an error no demonstration step expects. */
static void lb_die(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  va_start(ap, fmt);
  fprintf(stderr, "leaderboard_sqlite: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static double lb_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* 1234567 -> "1,234,567" */
static const char *lb_int(int64_t v, char buf[32]) {
  char digits[24];
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  int n = snprintf(digits, sizeof digits, "%" PRIu64, u);
  char *p = buf;
  if (v < 0)
    *p++ = '-';
  for (int i = 0; i < n; i++) {
    if (i > 0 && (n - i) % 3 == 0)
      *p++ = ',';
    *p++ = digits[i];
  }
  *p = '\0';
  return buf;
}

/* A duration for people: "0.31 us", "14.2 ms", "1.25 s". */
static const char *lb_dur(double s, char buf[32]) {
  if (s < 1e-3)
    snprintf(buf, 32, "%.2f us", s * 1e6);
  else if (s < 1.0)
    snprintf(buf, 32, "%.1f ms", s * 1e3);
  else
    snprintf(buf, 32, "%.2f s", s);
  return buf;
}

static uint64_t lb_mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Player i of 32,768: three syllables, e.g. "kamiro". */
static void lb_player_name(unsigned i, char out[16]) {
  static const char *const syl[32] = {
      "ka", "ki", "ku", "ke", "ko", "ma", "mi", "mu", "me", "mo", "na",
      "ni", "nu", "ne", "no", "ra", "ri", "ru", "re", "ro", "sa", "si",
      "su", "se", "so", "ta", "ti", "tu", "te", "to", "va", "vo"};
  snprintf(out, 16, "%s%s%s", syl[i / 1024 % 32], syl[i / 32 % 32],
           syl[i % 32]);
}

/* One result to write. */
typedef struct lb_result {
  int64_t id;        /* rowid to write */
  char player[16];   /* player name */
  const char *game;  /* one of lb_games */
  int64_t score;     /* 0..10,000 */
} lb_result;

/* The generated result for row id: the same id always gives the same
 * result, so a run that continues after id N writes new results. */
static void lb_generate(int64_t id, lb_result *r) {
  uint64_t h = lb_mix((uint64_t)id);
  r->id = id;
  lb_player_name((unsigned)(h % 32768), r->player);
  r->game = lb_games[(h >> 16) % LB_NGAMES];
  /* two dice: most results near the middle, few near 0 or 10,000 */
  r->score = (int64_t)((h >> 24) % 5001 + (h >> 44) % 5001);
}

/* ---- the plain-SQL writer: a child process with no tally in it ----------- */

/*
 * The child is forked before the parent calls into SQLite or tally, so it
 * starts with no SQLite state of the parent's (SQLite forbids carrying a
 * connection across fork). It waits for a script on a pipe, runs it with
 * sqlite3_exec on a connection of its own, answers with the result, and
 * exits when the pipe closes. It never calls a tally function.
 */
typedef struct lb_writer {
  pid_t pid;       /* the child */
  int to_child;    /* parent writes scripts here */
  int from_child;  /* and reads the answers here */
} lb_writer;

static bool lb_write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    c += w;
    n -= (size_t)w;
  }
  return true;
}

static bool lb_read_all(int fd, void *p, size_t n) {
  char *c = p;
  while (n > 0) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return false;
    c += r;
    n -= (size_t)r;
  }
  return true;
}

/* A length-prefixed string; NULL on a closed pipe. Caller frees. */
static char *lb_read_str(int fd) {
  uint32_t n = 0;
  if (!lb_read_all(fd, &n, sizeof n) || n > (1u << 24))
    return NULL;
  char *s = malloc((size_t)n + 1);
  if (s == NULL || !lb_read_all(fd, s, n)) {
    free(s);
    return NULL;
  }
  s[n] = '\0';
  return s;
}

static bool lb_write_str(int fd, const char *s) {
  uint32_t n = (uint32_t)strlen(s);
  return lb_write_all(fd, &n, sizeof n) && lb_write_all(fd, s, n);
}

/* The child's whole life: plain sqlite3 calls only. */
static void lb_writer_child(int in, int out) {
  for (;;) {
    char *path = lb_read_str(in);
    char *script = path != NULL ? lb_read_str(in) : NULL;
    if (script == NULL)
      _exit(0);
    sqlite3 *db = NULL;
    char *err = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_busy_timeout(db, 10000);
      rc = sqlite3_exec(db, script, NULL, NULL, &err);
    }
    int32_t answer[2] = {rc, db != NULL ? sqlite3_total_changes(db) : 0};
    const char *msg = err != NULL ? err : db != NULL ? sqlite3_errmsg(db) : "";
    bool ok = lb_write_all(out, answer, sizeof answer) &&
              lb_write_str(out, rc == SQLITE_OK ? "" : msg);
    sqlite3_free(err);
    sqlite3_close(db);
    free(path);
    free(script);
    if (!ok)
      _exit(1);
  }
}

static void lb_writer_start(lb_writer *w) {
  int down[2], up[2];
  if (pipe(down) != 0 || pipe(up) != 0)
    lb_die("pipe: %s", strerror(errno));
  fflush(NULL);
  w->pid = fork();
  if (w->pid < 0)
    lb_die("fork: %s", strerror(errno));
  if (w->pid == 0) {
    close(down[1]);
    close(up[0]);
    lb_writer_child(down[0], up[1]);
  }
  close(down[0]);
  close(up[1]);
  w->to_child = down[1];
  w->from_child = up[0];
}

/* Run script in the child against path; *changes = rows it changed. */
static int lb_writer_run(lb_writer *w, const char *path, const char *script,
                         int *changes, char *msg, size_t cap) {
  int32_t answer[2];
  if (!lb_write_str(w->to_child, path) || !lb_write_str(w->to_child, script) ||
      !lb_read_all(w->from_child, answer, sizeof answer))
    lb_die("the writer process stopped answering");
  char *m = lb_read_str(w->from_child);
  snprintf(msg, cap, "%s", m != NULL ? m : "");
  free(m);
  *changes = answer[1];
  return answer[0];
}

static void lb_writer_stop(lb_writer *w) {
  close(w->to_child);
  close(w->from_child);
  waitpid(w->pid, NULL, 0);
}

/* ---- extractors: columns read by name through the component's rows ------ */

/* A column as one key element, whatever SQLite type it holds (the schema
 * cannot stop another program from writing NULL or text): integers, reals,
 * NULL, text and blobs each become the matching key type. */
static int lb_key_column(const tally_sqlite_row *row, const char *col,
                         tally_keybuf *key) {
  int i = tally_sqlite_row_index(row, col);
  if (i < 0)
    return 1; /* no such column: not our table */
  switch (tally_sqlite_row_type(row, i)) {
  case SQLITE_INTEGER: {
    int64_t v = 0;
    tally_sqlite_row_int_at(row, i, &v);
    return tally_key_int(key, v);
  }
  case SQLITE_FLOAT: {
    double d = 0;
    tally_sqlite_row_double_at(row, i, &d);
    return tally_key_double(key, d);
  }
  case SQLITE_TEXT: {
    const char *s = NULL;
    size_t n = 0;
    tally_sqlite_row_text_at(row, i, &s, &n);
    return tally_key_string(key, s, n);
  }
  case SQLITE_BLOB: {
    const void *p = NULL;
    size_t n = 0;
    tally_sqlite_row_blob_at(row, i, &p, &n);
    return tally_key_bytes(key, p, n);
  }
  default:
    return tally_key_null(key);
  }
}

/* key: score */
static int lb_x_score(const tally_row *row, tally_keybuf *key, void *udata) {
  (void)udata;
  return lb_key_column(row->data, "score", key);
}

/* key: [game, score] */
static int lb_x_game_score(const tally_row *row, tally_keybuf *key,
                           void *udata) {
  int rc = tally_key_tuple_begin(key);
  if (rc == TALLY_OK)
    rc = lb_key_column(row->data, "game", key);
  if (rc == TALLY_OK)
    rc = lb_key_column(row->data, "score", key);
  if (rc == TALLY_OK)
    rc = tally_key_tuple_end(key);
  (void)udata;
  return rc;
}

/* sum: the score as a number (NULL and text count 0, as SQL's TOTAL). */
static int lb_x_points(const tally_row *row, double *sum, void *udata) {
  const tally_sqlite_row *r = row->data;
  int i = tally_sqlite_row_index(r, "score");
  int type = i >= 0 ? tally_sqlite_row_type(r, i) : SQLITE_NULL;
  double d = 0;
  if (type == SQLITE_INTEGER || type == SQLITE_FLOAT)
    tally_sqlite_row_double_at(r, i, &d);
  *sum = d;
  (void)udata;
  return 0;
}

/* namespace: the game (a NULL game: no namespace). */
static int lb_x_game(const tally_row *row, tally_keybuf *ns, bool *has_ns,
                     void *udata) {
  bool is_null = false;
  (void)udata;
  if (tally_sqlite_row_is_null(row->data, "game", &is_null) != TALLY_OK)
    return 1;
  if (is_null) {
    *has_ns = false;
    return 0;
  }
  return lb_key_column(row->data, "game", ns);
}

/* ---- the demo's state ---------------------------------------------------- */

#define LB_NAGGS 3

typedef struct lb {
  const char *path;          /* database file */
  sqlite3 *db;               /* the connection */
  tally_sqlite *ts;          /* the component's handle over it */
  tally_table *t[LB_NAGGS];  /* by_score, by_game_score, per_game */
  sqlite3_stmt *ins;         /* INSERT of one result */
  tally_page *page;          /* reused by every top-10 read */
  int64_t followed_id;       /* kamiro's result written by this run */
  int disagreements;         /* answers that differed from SQL */
  bool tty;                  /* stdout is a terminal */
} lb;

static const char *const lb_names[LB_NAGGS] = {"by_score", "by_game_score",
                                               "per_game"};

static const tally_agg *lb_by_score(const lb *b) {
  return tally_table_agg(b->t[0]);
}
static const tally_agg *lb_by_game_score(const lb *b) {
  return tally_table_agg(b->t[1]);
}
static const tally_agg *lb_per_game(const lb *b) {
  return tally_table_agg(b->t[2]);
}

static void lb_tcheck(lb *b, int rc, const char *what) {
  if (rc != TALLY_OK)
    lb_die("%s: %s (%s)", what, tally_strerror(rc),
           b->ts != NULL ? tally_sqlite_errmsg(b->ts) : "");
}

static void lb_scheck(lb *b, int rc, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
    lb_die("%s: %s", what, sqlite3_errmsg(b->db));
}

static sqlite3_stmt *lb_prepare(lb *b, const char *sql) {
  sqlite3_stmt *st = NULL;
  lb_scheck(b, sqlite3_prepare_v2(b->db, sql, -1, &st, NULL), sql);
  return st;
}

/* One integer from a query with up to two integer parameters. */
static int64_t lb_sql_int(lb *b, const char *sql, int nparams, int64_t p1,
                          int64_t p2) {
  sqlite3_stmt *st = lb_prepare(b, sql);
  if (nparams > 0)
    sqlite3_bind_int64(st, 1, p1);
  if (nparams > 1)
    sqlite3_bind_int64(st, 2, p2);
  int rc = sqlite3_step(st);
  lb_scheck(b, rc, sql);
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_finalize(st);
  return v;
}

static tally_table *lb_new_table(tally_key_fn key, tally_ns_fn ns) {
  tally_table_options o;
  tally_table *t = NULL;
  memset(&o, 0, sizeof o);
  o.version = 1;
  o.key = key;
  o.sum = lb_x_points;
  o.ns = ns;
  if (tally_table_new(&o, &t) != TALLY_OK)
    lb_die("tally_table_new failed");
  return t;
}

static void lb_new_tables(tally_table *t[LB_NAGGS]) {
  t[0] = lb_new_table(lb_x_score, NULL);
  t[1] = lb_new_table(lb_x_game_score, NULL);
  t[2] = lb_new_table(lb_x_score, lb_x_game);
}

/* ---- opening and closing -------------------------------------------------- */

typedef struct lb_open_info {
  double seconds;            /* tally_sqlite_open + the three attaches */
  tally_sqlite_stats stats;  /* what the handle did to get there */
} lb_open_info;

/* Connection, schema, handle, three attached aggregates. */
static void lb_open(lb *b, lb_open_info *info) {
  if (sqlite3_open(b->path, &b->db) != SQLITE_OK)
    lb_die("%s: %s", b->path, sqlite3_errmsg(b->db));
  lb_scheck(b, sqlite3_exec(b->db, lb_schema, NULL, NULL, NULL), "schema");
  /* A page cache that holds the table, its indexes and tally's log, for
   * both sides of the comparison (SQLite's default is 2 MiB). */
  lb_scheck(b, sqlite3_exec(b->db, "PRAGMA cache_size = -65536", NULL, NULL,
                            NULL),
            "cache_size");

  double t0 = lb_now();
  tally_sqlite_options o;
  memset(&o, 0, sizeof o);
  o.version = 1; /* WAL, synchronous=NORMAL, 5 s busy timeout */
  lb_tcheck(b, tally_sqlite_open(b->db, &o, &b->ts), "tally_sqlite_open");
  lb_new_tables(b->t);
  for (int i = 0; i < LB_NAGGS; i++)
    lb_tcheck(b, tally_sqlite_attach(b->ts, lb_names[i], "scores", b->t[i]),
              "tally_sqlite_attach");
  info->seconds = lb_now() - t0;
  lb_tcheck(b, tally_sqlite_get_stats(b->ts, &info->stats), "stats");

  b->ins = lb_prepare(b, "INSERT INTO scores(id, player, game, score) "
                         "VALUES (?, ?, ?, ?)");
}

static void lb_close(lb *b) {
  sqlite3_finalize(b->ins);
  b->ins = NULL;
  tally_sqlite_close(b->ts); /* before the tables it feeds */
  b->ts = NULL;
  for (int i = 0; i < LB_NAGGS; i++) {
    tally_table_free(b->t[i]);
    b->t[i] = NULL;
  }
  if (sqlite3_close(b->db) != SQLITE_OK)
    lb_die("sqlite3_close: %s", sqlite3_errmsg(b->db));
  b->db = NULL;
}

static void lb_print_open(const lb *b, const lb_open_info *in, bool first) {
  char n1[32], n2[32], d[32];
  const tally_sqlite_stats *s = &in->stats;
  int64_t rows = (int64_t)s->rows_scanned;
  if (s->backfills > 0 && s->checkpoint_loads == 0 && rows == 0) {
    printf("%s %s: new table; capture triggers installed, 3 aggregates "
           "attached in %s (nothing to scan)\n",
           first ? "opened" : "reopened", b->path, lb_dur(in->seconds, d));
    return;
  }
  if (s->backfills > 0 && s->checkpoint_loads == 0) {
    printf("%s %s: no checkpoint yet; attach filled the 3 aggregates from "
           "the table (%s rows scanned) in %s\n",
           first ? "opened" : "reopened", b->path, lb_int(rows, n1),
           lb_dur(in->seconds, d));
    return;
  }
  uint64_t count = 0;
  tally_agg_count(lb_by_score(b), NULL, NULL, &count);
  printf("%s %s in %s from checkpoint + %s log rows, no table scan "
         "(%s rows; %" PRIu64 " aggregates loaded, %" PRIu64
         " rows scanned)\n",
         first ? "opened" : "reopened", b->path, lb_dur(in->seconds, d),
         lb_int((int64_t)s->log_rows, n2), lb_int((int64_t)count, n1),
         s->checkpoint_loads, s->rows_scanned);
}

/* ---- writes: the only code that changes scores in this process ---------- */

/*
 * lb_add_results - write n results in one transaction: tally_sqlite_begin
 * (catch up, take the write lock), one plain SQL INSERT per result,
 * tally_sqlite_commit (apply the transaction's log rows to the
 * aggregates, COMMIT, commit the aggregates). All or nothing.
 */
static int lb_add_results(lb *b, const lb_result *r, size_t n) {
  int rc = tally_sqlite_begin(b->ts);
  if (rc != TALLY_OK)
    return rc;
  for (size_t i = 0; i < n; i++) {
    sqlite3_bind_int64(b->ins, 1, r[i].id);
    sqlite3_bind_text(b->ins, 2, r[i].player, -1, SQLITE_STATIC);
    sqlite3_bind_text(b->ins, 3, r[i].game, -1, SQLITE_STATIC);
    sqlite3_bind_int64(b->ins, 4, r[i].score);
    int s = sqlite3_step(b->ins);
    sqlite3_reset(b->ins);
    if (s != SQLITE_DONE) {
      fprintf(stderr, "INSERT: %s\n", sqlite3_errmsg(b->db));
      tally_sqlite_rollback(b->ts);
      return TALLY_EDB;
    }
  }
  return tally_sqlite_commit(b->ts);
}

/*
 * lb_correct - a referee's correction in one transaction: add a
 * replacement result, then deduct points from result id. *inside gets
 * the count the aggregates answer between the two statements (after
 * tally_sqlite_sync). A deduction below zero violates CHECK(score >= 0):
 * everything is rolled back, table and aggregates, and the SQLite message
 * goes to msg.
 */
static int lb_correct(lb *b, const lb_result *replacement, int64_t id,
                      int64_t points, uint64_t *inside, char *msg,
                      size_t cap) {
  int rc = tally_sqlite_begin(b->ts);
  if (rc != TALLY_OK)
    return rc;
  sqlite3_bind_int64(b->ins, 1, replacement->id);
  sqlite3_bind_text(b->ins, 2, replacement->player, -1, SQLITE_STATIC);
  sqlite3_bind_text(b->ins, 3, replacement->game, -1, SQLITE_STATIC);
  sqlite3_bind_int64(b->ins, 4, replacement->score);
  int s = sqlite3_step(b->ins);
  sqlite3_reset(b->ins);
  if (s == SQLITE_DONE)
    rc = tally_sqlite_sync(b->ts);
  else
    rc = TALLY_EDB;
  if (rc == TALLY_OK)
    rc = tally_agg_count(lb_by_score(b), NULL, NULL, inside);
  if (rc == TALLY_OK) {
    sqlite3_stmt *st = lb_prepare(
        b, "UPDATE scores SET score = score - ? WHERE id = ?");
    sqlite3_bind_int64(st, 1, points);
    sqlite3_bind_int64(st, 2, id);
    s = sqlite3_step(st);
    if (s != SQLITE_DONE) {
      snprintf(msg, cap, "%s", sqlite3_errmsg(b->db));
      rc = TALLY_EDB;
    }
    sqlite3_finalize(st);
  }
  if (rc != TALLY_OK) {
    tally_sqlite_rollback(b->ts);
    return rc;
  }
  return tally_sqlite_commit(b->ts);
}

/* ---- loading, with a progress display ------------------------------------ */

static void lb_progress(const lb *b, int64_t done, int64_t total, double t0,
                        int *last_quarter) {
  char n1[32], n2[32];
  if (b->tty) {
    int width = 30, fill = (int)(done * width / (total > 0 ? total : 1));
    printf("\r  loading [%.*s%*s] %3d%%  %s / %s rows", fill,
           "##############################", width - fill, "",
           (int)(done * 100 / (total > 0 ? total : 1)), lb_int(done, n1),
           lb_int(total, n2));
    if (done == total)
      printf("\n");
    fflush(stdout);
    return;
  }
  int quarter = (int)(done * 4 / (total > 0 ? total : 1));
  if (quarter > *last_quarter) {
    *last_quarter = quarter;
    printf("  loaded %s / %s rows (%.1f s)\n", lb_int(done, n1),
           lb_int(total, n2), lb_now() - t0);
    fflush(stdout);
  }
}

/* Write rows new results after the table's largest id, kamiro's first. */
static void lb_load(lb *b, int64_t rows) {
  int64_t next = lb_sql_int(b, "SELECT COALESCE(MAX(id), 0) + 1 FROM scores",
                            0, 0, 0);
  lb_result *batch = malloc(LB_BATCH * sizeof *batch);
  if (batch == NULL)
    lb_die("out of memory");
  char n1[32], n2[32], n3[32], d[32];
  printf("loading %s results (ids %s..%s) in transactions of %s rows:\n",
         lb_int(rows, n1), lb_int(next, n2), lb_int(next + rows - 1, n3),
         lb_int(LB_BATCH, d));
  double t0 = lb_now();
  int last_quarter = 0;
  int64_t done = 0, txns = 0;
  while (done < rows) {
    size_t n = rows - done < LB_BATCH ? (size_t)(rows - done) : LB_BATCH;
    for (size_t i = 0; i < n; i++)
      lb_generate(next + done + (int64_t)i, &batch[i]);
    if (done == 0) { /* the player the report follows */
      snprintf(batch[0].player, sizeof batch[0].player, "%s", LB_FOLLOWED);
      batch[0].game = "chess";
      batch[0].score = LB_FOLLOWED_SCORE;
      b->followed_id = batch[0].id;
    }
    lb_tcheck(b, lb_add_results(b, batch, n), "write transaction");
    done += (int64_t)n;
    txns++;
    lb_progress(b, done, rows, t0, &last_quarter);
  }
  double s = lb_now() - t0;
  free(batch);
  printf("loaded %s rows in %s transactions: %s, %.1f us per row (INSERT, "
         "capture trigger, log, apply to 3 aggregates, COMMIT)\n",
         lb_int(rows, n1), lb_int(txns, n2), lb_dur(s, d),
         s * 1e6 / (double)rows);
}

/* ---- durability: checkpoint, reopen, and what a backfill would cost ------- */

static void lb_durability(lb *b) {
  char d1[32], d2[32], n1[32];
  double t0 = lb_now();
  lb_tcheck(b, tally_sqlite_checkpoint(b->ts), "tally_sqlite_checkpoint");
  double ck = lb_now() - t0;
  printf("checkpoint: 3 aggregates written into the database in %s\n",
         lb_dur(ck, d1));

  /* Close everything, reopen: the aggregates come from the checkpoint. */
  lb_close(b);
  lb_open_info info;
  lb_open(b, &info);
  lb_print_open(b, &info, false);

  /* What the same three aggregates cost when filled from the table: fresh
   * table aggregates, tally_table_backfill through the component's store
   * (one scan of scores each). They must hold what the reopen restored. */
  tally_table *fresh[LB_NAGGS];
  lb_new_tables(fresh);
  const tally_store *store = tally_sqlite_store(b->ts);
  uint64_t scanned = 0;
  t0 = lb_now();
  lb_tcheck(b, tally_sqlite_read_begin(b->ts), "read_begin");
  for (int i = 0; i < LB_NAGGS; i++) {
    uint64_t rows = 0;
    lb_tcheck(b, tally_table_backfill(fresh[i], store, "scores", &rows),
              "tally_table_backfill");
    scanned += rows;
  }
  lb_tcheck(b, tally_sqlite_read_end(b->ts), "read_end");
  double bf = lb_now() - t0;
  for (int i = 0; i < LB_NAGGS; i++) {
    uint64_t c1 = 0, c2 = 0;
    double s1 = 0, s2 = 0;
    size_t ns1 = tally_agg_namespace_count(tally_table_agg(fresh[i]));
    size_t ns2 = tally_agg_namespace_count(tally_table_agg(b->t[i]));
    tally_agg_count_sum(tally_table_agg(fresh[i]), NULL, NULL, &c1, &s1);
    tally_agg_count_sum(tally_table_agg(b->t[i]), NULL, NULL, &c2, &s2);
    if (c1 != c2 || s1 != s2 || ns1 != ns2) {
      printf("  %s: restored and backfilled aggregates DIFFER\n",
             lb_names[i]);
      b->disagreements++;
    }
    tally_table_free(fresh[i]);
  }
  printf("a backfill of the same 3 aggregates (fresh tally_table, "
         "tally_table_backfill through\ntally_sqlite_store: %s rows "
         "scanned) takes %s: the reopen cost %.1f%% of it\n",
         lb_int((int64_t)scanned, n1), lb_dur(bf, d2),
         100.0 * info.seconds / bf);
}

/* ---- the report: tally and SQL side by side ------------------------------- */

typedef struct lb_answers {
  int64_t count, total;          /* results, sum of scores */
  int64_t score;                 /* kamiro's score (input of the ranks) */
  int64_t rank, rank_chess;      /* 1 + results with a higher score */
  int64_t median, p90;           /* scores at offsets (n-1)/2, 9(n-1)/10 */
  int ntop;                      /* top page: scores and ids, best first */
  int64_t top_score[LB_TOP], top_id[LB_TOP];
  int ngames;                    /* per-game counts, in game order */
  char game[LB_MAX_GAMES][16];
  int64_t game_count[LB_MAX_GAMES];
} lb_answers;

/* The score of a key holding one int64 (anything else reads as -1). */
static int64_t lb_key_score(tally_bytes key) {
  int64_t v = -1;
  return tally_key_to_int(key, &v) == TALLY_OK ? v : -1;
}

/* ---- the questions, as tally reads -------------------------------------- */

static void lb_t_count(lb *b, lb_answers *a) {
  uint64_t n = 0;
  lb_tcheck(b, tally_agg_count(lb_by_score(b), NULL, NULL, &n), "count");
  a->count = (int64_t)n;
}

static void lb_t_total(lb *b, lb_answers *a) {
  double s = 0;
  lb_tcheck(b, tally_agg_sum(lb_by_score(b), NULL, NULL, &s), "sum");
  a->total = (int64_t)s;
}

static void lb_t_rank(lb *b, lb_answers *a) {
  uint64_t above = 0;
  lb_tcheck(b,
            tally_agg_index_of(lb_by_score(b), NULL, NULL,
                               TALLY_KEY_INT(a->score), NULL, TALLY_DESC,
                               &above),
            "index_of");
  a->rank = (int64_t)above + 1;
}

/* The rank in chess from the [game, score] aggregate: bounds admit the
 * tuples starting with "chess"; DESC without an id counts the items after
 * every item with key ["chess", score]. */
static void lb_t_rank_chess(lb *b, lb_answers *a) {
  tally_keybuf pk, kk;
  tally_bytes prefix, key;
  tally_key_init(&pk);
  tally_key_tuple_begin(&pk);
  tally_key_cstr(&pk, "chess");
  tally_key_init(&kk);
  tally_key_tuple_begin(&kk);
  tally_key_cstr(&kk, "chess");
  tally_key_int(&kk, a->score);
  tally_key_tuple_end(&kk);
  lb_tcheck(b, tally_key_prefix(&pk, &prefix), "prefix");
  lb_tcheck(b, tally_key_finish(&kk, &key), "key");
  tally_bounds in_chess = tally_bounds_prefix(prefix);
  uint64_t above = 0;
  lb_tcheck(b,
            tally_agg_index_of(lb_by_game_score(b), NULL, &in_chess, key,
                               NULL, TALLY_DESC, &above),
            "index_of");
  a->rank_chess = (int64_t)above + 1;
}

static int64_t lb_t_at_fraction(lb *b, int num, int den) {
  uint64_t n = 0;
  tally_item it;
  lb_tcheck(b, tally_agg_count(lb_by_score(b), NULL, NULL, &n), "count");
  if (n == 0)
    return -1;
  lb_tcheck(b,
            tally_agg_at(lb_by_score(b), NULL, NULL,
                         (int64_t)((n - 1) * (uint64_t)num / (uint64_t)den),
                         &it),
            "at");
  return lb_key_score(tally_item_key(&it));
}

static void lb_t_median(lb *b, lb_answers *a) {
  a->median = lb_t_at_fraction(b, 1, 2);
}

static void lb_t_p90(lb *b, lb_answers *a) {
  a->p90 = lb_t_at_fraction(b, 9, 10);
}

/* Best first; ties on score come out by id, highest first. */
static void lb_t_top(lb *b, lb_answers *a) {
  lb_tcheck(b,
            tally_agg_paginate(lb_by_score(b), NULL, NULL, TALLY_DESC, NULL,
                               LB_TOP, b->page),
            "paginate");
  const tally_entry *e = tally_page_items(b->page);
  a->ntop = (int)tally_page_count(b->page);
  for (int i = 0; i < a->ntop; i++) {
    a->top_score[i] = lb_key_score(e[i].key);
    tally_id_to_int(e[i].id, &a->top_id[i]);
  }
}

static bool lb_t_game_one(const tally_bytes *ns, uint64_t count, void *udata) {
  lb_answers *a = udata;
  if (a->ngames == LB_MAX_GAMES)
    return false;
  if (ns == NULL)
    snprintf(a->game[a->ngames], 16, "(null)");
  else if (tally_key_to_str(*ns, a->game[a->ngames], 16, NULL) != TALLY_OK &&
           a->game[a->ngames][0] == '\0')
    snprintf(a->game[a->ngames], 16, "(not text)");
  a->game_count[a->ngames++] = (int64_t)count;
  return true;
}

/* One namespace per game: the listing gives every count at once. */
static void lb_t_games(lb *b, lb_answers *a) {
  a->ngames = 0;
  lb_tcheck(b, tally_agg_namespaces(lb_per_game(b), lb_t_game_one, a),
            "namespaces");
}

/* ---- the same questions in SQL ------------------------------------------ */

static void lb_s_count(lb *b, lb_answers *a) {
  a->count = lb_sql_int(b, "SELECT COUNT(*) FROM scores", 0, 0, 0);
}

static void lb_s_total(lb *b, lb_answers *a) {
  a->total = lb_sql_int(b, "SELECT TOTAL(score) FROM scores", 0, 0, 0);
}

static void lb_s_rank(lb *b, lb_answers *a) {
  a->rank = lb_sql_int(b, "SELECT 1 + COUNT(*) FROM scores WHERE score > ?",
                       1, a->score, 0);
}

static void lb_s_rank_chess(lb *b, lb_answers *a) {
  a->rank_chess = lb_sql_int(b,
                             "SELECT 1 + COUNT(*) FROM scores "
                             "WHERE game = 'chess' AND score > ?",
                             1, a->score, 0);
}

static void lb_s_median(lb *b, lb_answers *a) {
  a->median = lb_sql_int(b,
                         "SELECT score FROM scores ORDER BY score LIMIT 1 "
                         "OFFSET (SELECT (COUNT(*) - 1) / 2 FROM scores)",
                         0, 0, 0);
}

static void lb_s_p90(lb *b, lb_answers *a) {
  a->p90 = lb_sql_int(b,
                      "SELECT score FROM scores ORDER BY score LIMIT 1 "
                      "OFFSET (SELECT (COUNT(*) - 1) * 9 / 10 FROM scores)",
                      0, 0, 0);
}

static void lb_s_top(lb *b, lb_answers *a) {
  sqlite3_stmt *st = lb_prepare(b, "SELECT score, id FROM scores "
                                   "ORDER BY score DESC, id DESC LIMIT 10");
  a->ntop = 0;
  while (a->ntop < LB_TOP && sqlite3_step(st) == SQLITE_ROW) {
    a->top_score[a->ntop] = sqlite3_column_int64(st, 0);
    a->top_id[a->ntop++] = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
}

static void lb_s_games(lb *b, lb_answers *a) {
  sqlite3_stmt *st = lb_prepare(b, "SELECT game, COUNT(*) FROM scores "
                                   "GROUP BY game ORDER BY game");
  a->ngames = 0;
  while (a->ngames < LB_MAX_GAMES && sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char *g = sqlite3_column_text(st, 0);
    snprintf(a->game[a->ngames], 16, "%s",
             g != NULL ? (const char *)g : "(null)");
    a->game_count[a->ngames++] = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
}

/* ---- comparing and showing answers --------------------------------------- */

typedef enum lb_field {
  LB_COUNT, LB_TOTAL, LB_RANK, LB_RANK_CHESS, LB_MEDIAN, LB_P90, LB_TOPPAGE,
  LB_GAMES
} lb_field;

static bool lb_same(const lb_answers *x, const lb_answers *y, lb_field f) {
  switch (f) {
  case LB_COUNT: return x->count == y->count;
  case LB_TOTAL: return x->total == y->total;
  case LB_RANK: return x->rank == y->rank;
  case LB_RANK_CHESS: return x->rank_chess == y->rank_chess;
  case LB_MEDIAN: return x->median == y->median;
  case LB_P90: return x->p90 == y->p90;
  case LB_TOPPAGE:
    if (x->ntop != y->ntop)
      return false;
    for (int i = 0; i < x->ntop; i++)
      if (x->top_score[i] != y->top_score[i] || x->top_id[i] != y->top_id[i])
        return false;
    return true;
  case LB_GAMES:
    if (x->ngames != y->ngames)
      return false;
    for (int i = 0; i < x->ngames; i++)
      if (strcmp(x->game[i], y->game[i]) != 0 ||
          x->game_count[i] != y->game_count[i])
        return false;
    return true;
  }
  return false;
}

static const char *lb_show(const lb_answers *a, lb_field f, char *buf,
                           size_t cap) {
  char n[32];
  switch (f) {
  case LB_COUNT: return lb_int(a->count, buf);
  case LB_TOTAL: return lb_int(a->total, buf);
  case LB_RANK: return lb_int(a->rank, buf);
  case LB_RANK_CHESS: return lb_int(a->rank_chess, buf);
  case LB_MEDIAN: return lb_int(a->median, buf);
  case LB_P90: return lb_int(a->p90, buf);
  case LB_TOPPAGE: {
    char m[32];
    if (a->ntop == 0)
      return "empty";
    snprintf(buf, cap, "%s..%s", lb_int(a->top_score[0], n),
             lb_int(a->top_score[a->ntop - 1], m));
    return buf;
  }
  case LB_GAMES:
    snprintf(buf, cap, "%d games", a->ngames);
    return buf;
  }
  return "";
}

typedef struct lb_question {
  lb_field field;
  const char *label;
  void (*tally)(lb *b, lb_answers *a);
  void (*sql)(lb *b, lb_answers *a);
} lb_question;

static const lb_question lb_questions[] = {
    {LB_COUNT, "results (count)", lb_t_count, lb_s_count},
    {LB_TOTAL, "total points", lb_t_total, lb_s_total},
    {LB_RANK, "rank of " LB_FOLLOWED, lb_t_rank, lb_s_rank},
    {LB_RANK_CHESS, "rank of " LB_FOLLOWED " in chess", lb_t_rank_chess,
     lb_s_rank_chess},
    {LB_MEDIAN, "median score", lb_t_median, lb_s_median},
    {LB_P90, "90th percentile", lb_t_p90, lb_s_p90},
    {LB_TOPPAGE, "top-10 page (scores)", lb_t_top, lb_s_top},
    {LB_GAMES, "per-game counts", lb_t_games, lb_s_games},
};
#define LB_NQUESTIONS (sizeof lb_questions / sizeof lb_questions[0])

/* Average seconds per call of a tally read: repeat until 5 ms passed. */
static double lb_time_tally(lb *b, const lb_question *q, lb_answers *a) {
  long reps = 0;
  double t0 = lb_now(), t = t0;
  for (long batch = 1; t - t0 < 5e-3; batch *= 2) {
    for (long i = 0; i < batch; i++)
      q->tally(b, a);
    reps += batch;
    t = lb_now();
  }
  return (t - t0) / (double)reps;
}

/* kamiro's current score, by primary key (what the application would
 * read before asking for a rank). */
static int64_t lb_followed_score(lb *b) {
  return lb_sql_int(b, "SELECT score FROM scores WHERE id = ?", 1,
                    b->followed_id, 0);
}

static void lb_report(lb *b) {
  lb_answers t, s;
  char n1[32], n2[32], d1[32], d2[32], d3[32];
  memset(&t, 0, sizeof t);
  memset(&s, 0, sizeof s);

  double r0 = lb_now();
  lb_tcheck(b, tally_sqlite_refresh(b->ts), "refresh");
  double r1 = lb_now();
  /* nothing new: the first refreshes of a handle check the journal mode;
   * after them a refresh reads the WAL's shared header (see README.md,
   * Durable and shared). Averaged over LB_IDLE_CALLS calls. */
  lb_tcheck(b, tally_sqlite_refresh(b->ts), "refresh");
  double r2 = lb_now();
  for (int i = 0; i < LB_IDLE_CALLS; i++)
    lb_tcheck(b, tally_sqlite_refresh(b->ts), "refresh");
  double r3 = lb_now();
  t.score = s.score = lb_followed_score(b);

  printf("\nReport. tally: reads of the in-memory aggregates, each averaged "
         "over repeated calls,\n"
         "after tally_sqlite_refresh (%s; when nothing was new: %s the next "
         "time,\n%s on average over %d more calls). SQL: the "
         "same question on the\n"
         "same connection and data, indexes on score and (game, score), one "
         "run each.\n",
         lb_dur(r1 - r0, d1), lb_dur(r2 - r1, d2),
         lb_dur((r3 - r2) / LB_IDLE_CALLS, d3), LB_IDLE_CALLS);
  printf("%s's result: id %s, score %s (the ranks are for that score)\n",
         LB_FOLLOWED, lb_int(b->followed_id, n1), lb_int(t.score, n2));
  printf("  %-24s %14s %10s %10s  %s\n", "question", "answer", "tally", "SQL",
         "check");
  for (size_t i = 0; i < LB_NQUESTIONS; i++) {
    const lb_question *q = &lb_questions[i];
    char ans[64];
    double tt = lb_time_tally(b, q, &t);
    double s0 = lb_now();
    q->sql(b, &s);
    double ts = lb_now() - s0;
    bool same = lb_same(&t, &s, q->field);
    if (!same)
      b->disagreements++;
    printf("  %-24s %14s %10s %10s  %s\n", q->label,
           lb_show(&t, q->field, ans, sizeof ans), lb_dur(tt, d1),
           lb_dur(ts, d2), same ? "same" : "DIFFERS");
    if (!same)
      printf("  %-24s %14s  (SQL's answer)\n", "",
             lb_show(&s, q->field, ans, sizeof ans));
  }
  printf("  top 10:");
  for (int i = 0; i < t.ntop; i++)
    printf(" %s", lb_int(t.top_score[i], n1));
  printf("\n  per game:");
  for (int i = 0; i < t.ngames; i++)
    printf(" %s %s%s", t.game[i], lb_int(t.game_count[i], n2),
           i + 1 < t.ngames ? "," : "");
  printf("\n");
}

/* ---- another process changes the table ------------------------------------ */

static void lb_tally_answers(lb *b, lb_answers *a) {
  memset(a, 0, sizeof *a);
  a->score = lb_followed_score(b);
  for (size_t i = 0; i < LB_NQUESTIONS; i++)
    lb_questions[i].tally(b, a);
}

static void lb_foreign_change(lb *b, lb_writer *w) {
  char script[1024], msg[256], n1[32], n2[32], n3[32], d[32];
  int64_t some_id = b->followed_id + 1; /* a row this run wrote */
  snprintf(script, sizeof script,
           "BEGIN IMMEDIATE;\n"
           "UPDATE scores SET score = 9990 WHERE id = %" PRId64 ";\n"
           "INSERT INTO scores(player, game, score) VALUES ('zed', 'tetris', "
           "10000), ('zed', 'go', 7);\n"
           "INSERT OR REPLACE INTO scores(id, player, game, score) VALUES "
           "(%" PRId64 ", 'yuki', 'go', 9995);\n"
           "DELETE FROM scores WHERE game = 'poker' AND score < 1000;\n"
           "COMMIT;",
           b->followed_id, some_id);

  lb_answers before, after, sql;
  lb_tally_answers(b, &before);
  int changes = 0;
  int rc = lb_writer_run(w, b->path, script, &changes, msg, sizeof msg);
  if (rc != SQLITE_OK)
    lb_die("the writer process failed: %s", msg);
  printf("\nAnother process (pid %ld, plain sqlite3 API, no tally) changed "
         "%s rows in one transaction:\n",
         (long)w->pid, lb_int(changes, n1));
  for (const char *p = script; *p != '\0';) {
    const char *e = strchr(p, '\n');
    size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
    printf("    %.*s\n", (int)len, p);
    p += len + (e != NULL ? 1 : 0);
  }

  /* Until the next refresh (or transaction) the aggregates stay as of the
   * last snapshot they caught up to. */
  lb_answers stale;
  lb_tally_answers(b, &stale);
  int still = lb_same(&before, &stale, LB_COUNT) ? 1 : 0;

  tally_sqlite_stats s0, s1;
  tally_sqlite_get_stats(b->ts, &s0);
  double t0 = lb_now();
  lb_tcheck(b, tally_sqlite_refresh(b->ts), "refresh");
  double dt = lb_now() - t0;
  tally_sqlite_get_stats(b->ts, &s1);
  printf("before refresh the aggregates still answer as of their last "
         "snapshot (count %s%s);\n",
         lb_int(stale.count, n1), still ? ", unchanged" : "");
  printf("tally_sqlite_refresh applied %s log rows (%s touched rows) in %s\n",
         lb_int((int64_t)(s1.log_rows - s0.log_rows), n1),
         lb_int((int64_t)(s1.rows_applied - s0.rows_applied), n2),
         lb_dur(dt, d));

  lb_tally_answers(b, &after);
  memset(&sql, 0, sizeof sql);
  sql.score = after.score;
  for (size_t i = 0; i < LB_NQUESTIONS; i++)
    lb_questions[i].sql(b, &sql);
  printf("%s's score (read by primary key): %s before, %s after\n",
         LB_FOLLOWED, lb_int(before.score, n1), lb_int(after.score, n2));
  printf("  %-24s %14s %14s %14s  %s\n", "question", "before", "after",
         "SQL after", "check");
  for (size_t i = 0; i < LB_NQUESTIONS; i++) {
    const lb_question *q = &lb_questions[i];
    char a1[64], a2[64], a3[64];
    bool same = lb_same(&after, &sql, q->field);
    if (!same)
      b->disagreements++;
    printf("  %-24s %14s %14s %14s  %s\n", q->label,
           lb_show(&before, q->field, a1, sizeof a1),
           lb_show(&after, q->field, a2, sizeof a2),
           lb_show(&sql, q->field, a3, sizeof a3), same ? "same" : "DIFFERS");
  }
  printf("  per game after:");
  for (int i = 0; i < after.ngames; i++)
    printf(" %s %s%s", after.game[i], lb_int(after.game_count[i], n3),
           i + 1 < after.ngames ? "," : "");
  printf("\n");
}

/* ---- a failing transaction ------------------------------------------------ */

static void lb_failing_transaction(lb *b) {
  char n1[32], n2[32], n3[32], n4[32], msg[256] = "";
  lb_answers before, after;
  lb_tally_answers(b, &before);
  int64_t sql_before = lb_sql_int(b, "SELECT COUNT(*) FROM scores", 0, 0, 0);
  lb_result extra;
  lb_generate(lb_sql_int(b, "SELECT MAX(id) + 1 FROM scores", 0, 0, 0),
              &extra);
  uint64_t inside = 0;
  int64_t deduct = before.score + 1; /* one point more than kamiro has */
  printf("\nA failing transaction (lb_correct): INSERT a replacement result, "
         "then deduct %s points\nfrom %s's %s, which violates "
         "CHECK(score >= 0):\n",
         lb_int(deduct, n1), LB_FOLLOWED, lb_int(before.score, n2));
  int rc = lb_correct(b, &extra, b->followed_id, deduct, &inside, msg,
                      sizeof msg);
  lb_tally_answers(b, &after);
  int64_t sql_after = lb_sql_int(b, "SELECT COUNT(*) FROM scores", 0, 0, 0);
  int64_t sql_extra = lb_sql_int(b, "SELECT COUNT(*) FROM scores WHERE id = ?",
                                 1, extra.id, 0);
  bool ok = rc != TALLY_OK && after.count == before.count &&
            sql_after == sql_before && sql_extra == 0 &&
            after.total == before.total && after.score == before.score &&
            lb_same(&before, &after, LB_GAMES) &&
            lb_same(&before, &after, LB_TOPPAGE) &&
            lb_same(&before, &after, LB_RANK_CHESS) &&
            inside == (uint64_t)before.count + 1;
  if (!ok)
    b->disagreements++;
  printf("  inside the transaction, after the INSERT and tally_sqlite_sync: "
         "count %s\n",
         lb_int((int64_t)inside, n1));
  printf("  the UPDATE failed (\"%s\"); lb_correct returned %s and rolled "
         "back\n",
         msg, tally_errname(rc));
  printf("  after: tally count %s, SQL COUNT(*) %s (before: %s); the "
         "replacement row is %s; every aggregate as before: %s\n",
         lb_int(after.count, n2), lb_int(sql_after, n3),
         lb_int(sql_before, n4), sql_extra == 0 ? "gone" : "STILL THERE",
         ok ? "yes" : "NO");
}

/* ---- verify ----------------------------------------------------------------- */

static void lb_verify(lb *b) {
  printf("\ntally_sqlite_verify (every aggregate against a full scan of "
         "scores):\n");
  for (int i = 0; i < LB_NAGGS; i++) {
    tally_verify_report r;
    bool stale = false;
    char n1[32], n2[32];
    lb_tcheck(b, tally_sqlite_verify(b->ts, lb_names[i], &r, &stale),
              "tally_sqlite_verify");
    uint64_t diffs = r.missing + r.extra + r.wrong;
    if (diffs != 0 || stale)
      b->disagreements++;
    printf("  %-14s %s rows, %s items: %" PRIu64 " missing, %" PRIu64
           " extra, %" PRIu64 " wrong%s -> %" PRIu64 " differences\n",
           lb_names[i], lb_int((int64_t)r.rows, n1),
           lb_int((int64_t)r.items, n2), r.missing, r.extra, r.wrong,
           stale ? " (capture triggers STALE)" : "", diffs);
  }
}

/* ---- main ------------------------------------------------------------------- */

static void lb_usage(FILE *f) {
  fprintf(f,
          "usage: leaderboard_sqlite [--rows N] [--help] [database-file]\n"
          "\n"
          "A game leaderboard in a SQLite file whose aggregates tally keeps\n"
          "in step with the table, durably and across processes; every\n"
          "answer is checked against SQL (exit status 1 if one differs).\n"
          "\n"
          "  --rows N   results to add (default %d)\n"
          "  --help     this text\n"
          "  database-file   kept after the run (a second run restores the\n"
          "                  aggregates from its checkpoint and adds N rows);\n"
          "                  default: a new temporary file, removed at exit\n",
          LB_DEFAULT_ROWS);
}

static bool lb_parse_rows(const char *s, int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 1000000000LL)
    return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  int64_t rows = LB_DEFAULT_ROWS;
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      lb_usage(stdout);
      return 0;
    } else if (strcmp(a, "--rows") == 0 && i + 1 < argc) {
      if (!lb_parse_rows(argv[++i], &rows)) {
        fprintf(stderr, "leaderboard_sqlite: --rows wants a number from 1 "
                        "to 1000000000\n");
        lb_usage(stderr);
        return 2;
      }
    } else if (strncmp(a, "--rows=", 7) == 0) {
      if (!lb_parse_rows(a + 7, &rows)) {
        fprintf(stderr, "leaderboard_sqlite: --rows wants a number from 1 "
                        "to 1000000000\n");
        lb_usage(stderr);
        return 2;
      }
    } else if (a[0] == '-' && strcmp(a, "-") != 0) {
      fprintf(stderr, "leaderboard_sqlite: unknown option %s\n", a);
      lb_usage(stderr);
      return 2;
    } else if (path == NULL) {
      path = a;
    } else {
      fprintf(stderr, "leaderboard_sqlite: one database file only\n");
      lb_usage(stderr);
      return 2;
    }
  }

  /* The plain-SQL writer first: before this process touches SQLite. */
  lb_writer writer;
  lb_writer_start(&writer);

  if (path == NULL) {
    const char *dir = getenv("TMPDIR");
    snprintf(lb_tmp_path, sizeof lb_tmp_path,
             "%s/tally-leaderboard-XXXXXX", dir != NULL && *dir ? dir : "/tmp");
    int fd = mkstemp(lb_tmp_path);
    if (fd < 0)
      lb_die("mkstemp %s: %s", lb_tmp_path, strerror(errno));
    close(fd);
    atexit(lb_remove_tmp);
    path = lb_tmp_path;
  }

  lb b;
  memset(&b, 0, sizeof b);
  b.path = path;
  b.tty = isatty(STDOUT_FILENO) != 0;
  if (tally_page_new(NULL, &b.page) != TALLY_OK)
    lb_die("tally_page_new failed");
  printf("leaderboard_sqlite: tally %s, SQLite %s; database %s%s\n",
         tally_version(), sqlite3_libversion(), path,
         lb_tmp_path[0] != '\0' ? " (temporary; name a file to keep it)" : "");

  lb_open_info info;
  lb_open(&b, &info);
  lb_print_open(&b, &info, true);
  lb_load(&b, rows);
  lb_durability(&b);
  lb_report(&b);
  lb_foreign_change(&b, &writer);
  lb_failing_transaction(&b);
  lb_verify(&b);

  /* No checkpoint here: the changes made since the one after the load
   * stay in the log, and the next run on this file replays them after
   * loading that checkpoint. */
  lb_close(&b);
  tally_page_free(b.page);
  lb_writer_stop(&writer);

  if (b.disagreements != 0) {
    printf("\n%d check(s) FAILED: tally and SQLite disagree\n",
           b.disagreements);
    return 1;
  }
  printf("\nevery answer agreed with SQL; 0 differences\n");
  return 0;
}
