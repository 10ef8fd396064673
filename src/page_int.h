/*
 * page_int.h - how tally_agg_paginate fills a tally_page (page.c).
 */
#ifndef TALLY_PAGE_INT_H
#define TALLY_PAGE_INT_H

#include "alloc_int.h"

/* Empty the page (keeps its memory). */
void tally__page_reset(tally_page *p);
/* Make room for `items` entries; TALLY_ENOMEM leaves the page as it was. */
int tally__page_reserve(tally_page *p, size_t items);
/* Append a copy of it; TALLY_ENOMEM when its bytes do not fit. */
int tally__page_push(tally_page *p, const tally_item *it);
/* Point the views at the bytes; set done (done clears the next cursor). */
void tally__page_finish(tally_page *p, bool done);
/* Where paginate writes the next cursor. */
tally_page_cursor *tally__page_cursor(tally_page *p);
/* Check the invariants of page.c: TALLY_OK or TALLY_ECORRUPT. */
int tally__page_validate(const tally_page *p);

#endif /* TALLY_PAGE_INT_H */
