/*
 * plot.c - turns tally_bench's CSV into one SVG: one panel per op, N on a
 * log x axis, the figure (ns/op or bytes/item) on a log y axis, one line
 * per contender. Plain C and hand-written SVG, so plotting needs nothing
 * beyond a C compiler.
 *
 *     +-- title / legend ------------------------------------------+
 *     | [insert]        [delete]        [rank]                      |
 *     | [select]        [range1]        [range50]                   |
 *     | [page]          [txn]           [bytes_per_item] ...        |
 *     +-------------------------------------------------------------+
 *
 * Invariants:
 *   1. A contender keeps one colour in every panel (colour = its index in
 *      order of first appearance in the CSV).
 *   2. Axes span whole decades around the data, so panels read alike.
 *
 * usage: tally_bench_plot IN.csv OUT.svg
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PL_MAX_ROWS 4096
#define PL_MAX_NAMES 32
#define PL_NAME 40

typedef struct pl_row {
  int op;        /* index into ops */
  int who;       /* index into contenders */
  double n;      /* items */
  double value;  /* the figure */
} pl_row;

typedef struct pl_data {
  pl_row rows[PL_MAX_ROWS];
  int n_rows;
  char ops[PL_MAX_NAMES][PL_NAME];
  char units[PL_MAX_NAMES][PL_NAME];
  int n_ops;
  char who[PL_MAX_NAMES][PL_NAME];
  int n_who;
} pl_data;

static const char *const pl_colours[] = {"#1f77b4", "#d62728", "#ff7f0e",
                                         "#2ca02c", "#9467bd", "#8c564b",
                                         "#e377c2", "#17becf", "#7f7f7f"};
#define PL_N_COLOURS (sizeof pl_colours / sizeof pl_colours[0])

static int pl_intern(char names[][PL_NAME], int *count, const char *s) {
  int i;
  for (i = 0; i < *count; i++)
    if (strcmp(names[i], s) == 0)
      return i;
  if (*count == PL_MAX_NAMES)
    return -1;
  /* truncate long names to the column width */
  snprintf(names[*count], PL_NAME, "%.*s", PL_NAME - 1, s);
  return (*count)++;
}

/* Splits line at commas in place; returns the number of fields. */
static int pl_split(char *line, char **f, int max) {
  int n = 0;
  char *p = line;
  while (n < max) {
    f[n++] = p;
    p = strchr(p, ',');
    if (p == NULL)
      break;
    *p++ = '\0';
  }
  return n;
}

static int pl_read(pl_data *d, FILE *in) {
  char line[512];
  int lineno = 0;
  while (fgets(line, sizeof line, in)) {
    char *f[8];
    int nf, op, who;
    pl_row *r;
    lineno++;
    line[strcspn(line, "\r\n")] = '\0';
    if (lineno == 1 && strncmp(line, "op,", 3) == 0)
      continue;
    if (line[0] == '\0')
      continue;
    nf = pl_split(line, f, 8);
    if (nf < 5) {
      fprintf(stderr, "plot: line %d: expected op,n,contender,value,unit\n",
              lineno);
      return -1;
    }
    op = pl_intern(d->ops, &d->n_ops, f[0]);
    who = pl_intern(d->who, &d->n_who, f[2]);
    if (op < 0 || who < 0 || d->n_rows == PL_MAX_ROWS) {
      fprintf(stderr, "plot: too many rows or names\n");
      return -1;
    }
    strncpy(d->units[op], f[4], PL_NAME - 1);
    r = &d->rows[d->n_rows++];
    r->op = op;
    r->who = who;
    r->n = atof(f[1]);
    r->value = atof(f[3]);
  }
  return 0;
}

static int pl_row_cmp(const void *a, const void *b) {
  const pl_row *x = a, *y = b;
  if (x->op != y->op)
    return x->op - y->op;
  if (x->who != y->who)
    return x->who - y->who;
  return x->n < y->n ? -1 : x->n > y->n;
}

/* "10", "1k", "100k", "1M" ... for a power of ten */
static void pl_decade(char *buf, size_t cap, int e) {
  static const char *const suffix[] = {"", "k", "M", "G", "T"};
  if (e < 0)
    snprintf(buf, cap, "1e%d", e);
  else if (e / 3 < 5)
    snprintf(buf, cap, "%.0f%s", pow(10, e % 3), suffix[e / 3]);
  else
    snprintf(buf, cap, "1e%d", e);
}

#define PW 380.0 /* panel width */
#define PH 270.0 /* panel height */
#define ML 62.0  /* left margin inside a panel */
#define MR 14.0
#define MT 30.0
#define MB 40.0
#define COLS 3
#define TOP 70.0 /* title and legend */

static void pl_panel(FILE *out, const pl_data *d, int op, double x0,
                     double y0) {
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  int i, e, ex0, ex1, ey0, ey1, who;
  double w = PW - ML - MR, h = PH - MT - MB;
  char lab[32];
  for (i = 0; i < d->n_rows; i++) {
    const pl_row *r = &d->rows[i];
    if (r->op != op || !(r->n > 0) || !(r->value > 0))
      continue;
    xmin = fmin(xmin, r->n);
    xmax = fmax(xmax, r->n);
    ymin = fmin(ymin, r->value);
    ymax = fmax(ymax, r->value);
  }
  if (!(xmin <= xmax))
    return;
  /* invariant 2: whole decades, at least one wide */
  ex0 = (int)floor(log10(xmin) + 1e-9);
  ex1 = (int)ceil(log10(xmax) - 1e-9);
  ey0 = (int)floor(log10(ymin) + 1e-9);
  ey1 = (int)ceil(log10(ymax) - 1e-9);
  if (ex1 <= ex0)
    ex1 = ex0 + 1;
  if (ey1 <= ey0)
    ey1 = ey0 + 1;
#define PX(v) (x0 + ML + (log10(v) - ex0) / (double)(ex1 - ex0) * w)
#define PY(v) (y0 + MT + h - (log10(v) - ey0) / (double)(ey1 - ey0) * h)
  fprintf(out, "<text x='%.1f' y='%.1f' class='t'>%s</text>\n", x0 + ML,
          y0 + MT - 10, d->ops[op]);
  fprintf(out,
          "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' "
          "fill='none' stroke='#444'/>\n",
          x0 + ML, y0 + MT, w, h);
  for (e = ex0; e <= ex1; e++) {
    double x = x0 + ML + (double)(e - ex0) / (ex1 - ex0) * w;
    pl_decade(lab, sizeof lab, e);
    fprintf(out,
            "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' class='g'/>\n"
            "<text x='%.1f' y='%.1f' class='xt'>%s</text>\n",
            x, y0 + MT, x, y0 + MT + h, x, y0 + MT + h + 14, lab);
  }
  for (e = ey0; e <= ey1; e++) {
    double y = y0 + MT + h - (double)(e - ey0) / (ey1 - ey0) * h;
    pl_decade(lab, sizeof lab, e);
    fprintf(out,
            "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' class='g'/>\n"
            "<text x='%.1f' y='%.1f' class='yt'>%s</text>\n",
            x0 + ML, y, x0 + ML + w, y, x0 + ML - 5, y + 4, lab);
  }
  fprintf(out, "<text x='%.1f' y='%.1f' class='xl'>N (items)</text>\n",
          x0 + ML + w / 2, y0 + PH - 8);
  fprintf(out,
          "<text transform='translate(%.1f,%.1f) rotate(-90)' "
          "class='xl'>%s</text>\n",
          x0 + 14, y0 + MT + h / 2, d->units[op]);
  for (who = 0; who < d->n_who; who++) {
    const char *col = pl_colours[(size_t)who % PL_N_COLOURS];
    int first = 1;
    for (i = 0; i < d->n_rows; i++) {
      const pl_row *r = &d->rows[i];
      if (r->op != op || r->who != who || !(r->n > 0) || !(r->value > 0))
        continue;
      if (first)
        fprintf(out, "<polyline fill='none' stroke='%s' stroke-width='2' "
                     "points='",
                col);
      fprintf(out, "%s%.1f,%.1f", first ? "" : " ", PX(r->n), PY(r->value));
      first = 0;
    }
    if (!first)
      fprintf(out, "'/>\n");
    for (i = 0; i < d->n_rows; i++) {
      const pl_row *r = &d->rows[i];
      if (r->op != op || r->who != who || !(r->n > 0) || !(r->value > 0))
        continue;
      fprintf(out, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n",
              PX(r->n), PY(r->value), col);
    }
  }
#undef PX
#undef PY
}

int main(int argc, char **argv) {
  pl_data *d;
  FILE *in, *out;
  int op, who, rows;
  double width, height;
  if (argc != 3) {
    fprintf(stderr, "usage: %s IN.csv OUT.svg\n", argv[0]);
    return 2;
  }
  d = calloc(1, sizeof *d);
  if (d == NULL)
    return 1;
  in = fopen(argv[1], "r");
  if (in == NULL) {
    perror(argv[1]);
    free(d);
    return 1;
  }
  if (pl_read(d, in) != 0 || d->n_rows == 0) {
    if (d->n_rows == 0)
      fprintf(stderr, "plot: %s holds no figures\n", argv[1]);
    fclose(in);
    free(d);
    return 1;
  }
  fclose(in);
  qsort(d->rows, (size_t)d->n_rows, sizeof d->rows[0], pl_row_cmp);
  out = fopen(argv[2], "w");
  if (out == NULL) {
    perror(argv[2]);
    free(d);
    return 1;
  }
  rows = (d->n_ops + COLS - 1) / COLS;
  width = COLS * PW + 20;
  height = TOP + rows * PH + 10;
  fprintf(out,
          "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' "
          "height='%.0f' viewBox='0 0 %.0f %.0f' "
          "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'>\n"
          "<style>.t{font-size:14px;font-weight:bold}"
          ".xt{font-size:11px;text-anchor:middle}"
          ".yt{font-size:11px;text-anchor:end}"
          ".xl{font-size:11px;text-anchor:middle;fill:#333}"
          ".l{font-size:12px}.g{stroke:#ddd;stroke-width:1}</style>\n"
          "<rect width='100%%' height='100%%' fill='white'/>\n"
          "<text x='10' y='22' class='t'>tally_bench: per op, "
          "log-log (lower is better)</text>\n",
          width, height, width, height);
  for (who = 0; who < d->n_who; who++) {
    double x = 10 + who * 130.0;
    const char *col = pl_colours[(size_t)who % PL_N_COLOURS];
    fprintf(out,
            "<line x1='%.1f' y1='45' x2='%.1f' y2='45' stroke='%s' "
            "stroke-width='3'/><text x='%.1f' y='49' class='l'>%s</text>\n",
            x, x + 22, col, x + 28, d->who[who]);
  }
  for (op = 0; op < d->n_ops; op++)
    pl_panel(out, d, op, 10 + (op % COLS) * PW, TOP + (op / COLS) * PH);
  fprintf(out, "</svg>\n");
  if (fclose(out) != 0) {
    perror(argv[2]);
    free(d);
    return 1;
  }
  free(d);
  return 0;
}
