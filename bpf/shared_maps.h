/* shared_maps.h - how other BPF programs (policies) reach the process
 * sensor's maps. process.c exports them; a program compiled separately in
 * the same daemon declares them here and bcc binds it to the same maps:
 *
 *   TETRAD_EVENTS_EXTERN;       the one ring buffer the observer reads
 *   TETRAD_EXECVE_MAP_EXTERN;   live processes by tgid (execve_map.h)
 *   TETRAD_SHED_EXTERN;         set while user space cannot take policy records
 */
#ifndef TETRAD_SHARED_MAPS_H
#define TETRAD_SHARED_MAPS_H

#include "execve_map.h"

/* Same shape as bcc's BPF_RINGBUF_OUTPUT table, in the "extern" section. */
struct events_table_t {
	int key;
	u32 leaf;
	int (*ringbuf_output)(void *, u64, u64);
	void *(*ringbuf_reserve)(u64);
	void (*ringbuf_discard)(void *, u64);
	void (*ringbuf_submit)(void *, u64);
	u32 max_entries;
};
#define TETRAD_EVENTS_EXTERN \
	__attribute__((section("maps/extern"))) struct events_table_t events

/* shed[0] != 0: the reader is behind or every sink queue is full (set by
 * tetrad/observer.py after each batch). Policy programs then count a record
 * as shed instead of writing it: the ring buffer keeps room for process
 * records (the process cache needs every one), and records user space would
 * drop anyway cost it nothing. Enforcement does not depend on it. */
#define TETRAD_SHED_EXTERN BPF_TABLE("extern", u32, u32, shed, 1)

#endif
