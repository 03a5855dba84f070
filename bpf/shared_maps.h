/* shared_maps.h - how other BPF programs (policies) reach the process
 * sensor's maps. process.c exports them; a program compiled separately in
 * the same daemon declares them here and bcc binds it to the same maps:
 *
 *   TETRAD_EVENTS_EXTERN;       the one ring buffer the observer reads
 *   TETRAD_EXECVE_MAP_EXTERN;   live processes by tgid (execve_map.h)
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

#endif
