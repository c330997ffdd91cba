/*
 * The Lua side of out_stream (src/vhd/stream.h), shared by the bindings that
 * make streams (salvage.vhd's vhd.stream, a qcow2 writer) and those that
 * consume them (salvage.http's body_stream). One metatable, "salvage.stream".
 *
 * A maker pushes an empty box first (so nothing leaks if a later step
 * raises), then fills s, and release/ctx for what the stream reads from:
 *   lstream *b = lstream_new(L, keep);   -- keep: a stack index kept alive with it (0: none)
 *   b->ctx = ...; b->release = ...;      -- freed after the stream closes
 *   b->s = writer_open(...);
 */
#ifndef SALVAGE_LSTREAM_H
#define SALVAGE_LSTREAM_H

#include "lua.h"
#include "vhd/stream.h"

#define LSTREAM_MT "salvage.stream"

typedef struct lstream {
	out_stream *s;
	void *ctx;
	void (*release)(void *ctx);
	char id[40];              /* the output's own identity (a VHD footer UUID), or "" */
	int used;                 /* a stream is read once: a second consumer is refused */
} lstream;

lstream *lstream_new(lua_State *L, int keep);
/* The open, unread stream at idx; raises on anything else. Set used = 1 once reading starts. */
lstream *lstream_check_unread(lua_State *L, int idx);
void lstream_close(lstream *b);

#endif
