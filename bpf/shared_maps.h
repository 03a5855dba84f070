/* shared_maps.h - the process sensor's maps that policy programs use too.
 *
 * Policy programs (generic_hook.c) are compiled on their own, possibly in
 * another process and cached across restarts (tetrad/sensors/bpfobject.py),
 * so they declare these maps as ordinary maps of the same shape; when they
 * are loaded, every reference to them is pointed at the process sensor's
 * own map (tetrad/sensors/bpfobject.py, relocation):
 *
 *   events       the one ring buffer the observer reads (in kernel order)
 *   execve_map   live processes by tgid (execve_map.h)
 *   shed         shed[0] != 0: the reader is behind or every sink queue is
 *                full (set by tetrad/observer.py after each batch). Policy
 *                programs then count a record as shed instead of writing
 *                it: the ring buffer keeps room for process records (the
 *                process cache needs every one), and records user space
 *                would drop anyway cost it nothing. Enforcement does not
 *                depend on it.
 *   enforce_notes  a decision to make a syscall fail, by thread (pid_tgid):
 *                written by a policy program (NotifyEnforcer, or Override on
 *                a syscall hook, whose tracepoint cannot change the call's
 *                result), taken by the enforcer program on the syscall's
 *                function (bpf/enforcer.c), which returns the error.
 */
#ifndef TETRAD_SHARED_MAPS_H
#define TETRAD_SHARED_MAPS_H

#include "execve_map.h"

struct tetrad_enforce_note {
	__s32 error;            /* returned by the syscall instead of running it */
	__u32 sig;              /* sent to the thread first, when not 0 */
	__u32 nr;               /* the syscall it is for; ~0: the next one enforced */
	__u32 hook_id;          /* the policy hook that decided (user space's id) */
};

#define ENFORCE_NOTES 8192
#define TETRAD_ANY_SYSCALL 0xffffffff

#define TETRAD_SHARED_MAPS                                                     \
	BPF_RINGBUF_OUTPUT(events, 1);                                         \
	BPF_TABLE("hash", u32, struct tetrad_exec_entry, execve_map, EXECVE_MAP_ENTRIES); \
	BPF_ARRAY(shed, u32, 1);                                               \
	BPF_TABLE("lru_hash", u64, struct tetrad_enforce_note, enforce_notes, ENFORCE_NOTES)

#endif
