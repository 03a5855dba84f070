/* execve_map.h - the kernel's table of live processes, keyed by tgid.
 *
 * Owned and written by process.c (exec, fork, exit, and the exits of the
 * syscalls that change credentials or namespaces) and seeded from /proc by
 * user space at start; policy programs read it (matchBinaries,
 * matchNamespaces, matchCapabilities and their *Changes) after declaring it
 * with TETRAD_EXECVE_MAP_EXTERN. Mirrored by ExecEntry in
 * tetrad/abi/records.py. Fields are only ever appended: policy programs
 * read key, parent, bin_len and binary at their offsets.
 */
#ifndef TETRAD_EXECVE_MAP_H
#define TETRAD_EXECVE_MAP_H

#include "tetrad_events.h"

#ifndef EXECVE_MAP_ENTRIES
#define EXECVE_MAP_ENTRIES 32768
#endif
#define TETRAD_BINARY_MAX 256

/* One live process as the kernel side knows it. */
struct tetrad_exec_entry {
	struct tetrad_proc_key key;     /* exec_id of the process            */
	struct tetrad_proc_key parent;
	__u32 flags;
	__s32 threads;                  /* live tasks; used without group_dead */
	__u32 exit_how;                 /* final answer once set (TETRAD_EXIT_*) */
	__u32 exit_code;
	__u32 sig_candidate;            /* fatal signal sent, not yet taken  */
	__u32 thread_code;              /* exit() of a thread; 0x100 = valid */
	__u32 bin_len;
	__u32 pad;
	char binary[TETRAD_BINARY_MAX]; /* resolved path, NUL terminated     */
	/* Credentials and namespaces (tetrad_events.h). exec_state: as the
	 * current image started: at exec; a child that has not exec'd runs
	 * its parent's image and has its parent's; for a process older than
	 * the daemon, what /proc showed at start-up. state: as they are now:
	 * at exec, at fork the child's own (CLONE_NEW* included), then, while
	 * user space follows changes, kept current at the exits of set*id,
	 * capset, prctl, unshare and setns (bpf/process.c, "state", says when
	 * and what can be missed). */
	struct tetrad_proc_state exec_state;
	struct tetrad_proc_state state;
};

#define TETRAD_EXECVE_MAP_EXTERN \
	BPF_TABLE("extern", u32, struct tetrad_exec_entry, execve_map, EXECVE_MAP_ENTRIES)

#endif
