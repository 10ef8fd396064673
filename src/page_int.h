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
/* Room for one more item of up to need bytes: *dst is where the caller
 * writes its key and then its id, then tally__page_push appends it.
 * TALLY_ENOMEM when no room could be made (the page is as before). */
int tally__page_room(tally_page *p, size_t need, unsigned char **dst);
/* Append the item whose key (klen bytes) and id (idlen) were just written
 * at the room tally__page_room gave; its sum. */
void tally__page_push(tally_page *p, size_t klen, size_t idlen, double sum);
/* Point the views at the bytes; set done (done clears the next cursor). */
void tally__page_finish(tally_page *p, bool done);
/* Where paginate writes the next cursor. */
tally_page_cursor *tally__page_cursor(tally_page *p);
/* Check the invariants of page.c: TALLY_OK or TALLY_ECORRUPT. */
int tally__page_validate(const tally_page *p);

#endif /* TALLY_PAGE_INT_H */
