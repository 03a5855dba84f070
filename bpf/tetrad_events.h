/* tetrad_events.h - records the kernel side sends to user space.
 *
 * Every record starts with struct tetrad_msg_header; `op` says which record
 * follows. This file is mirrored by tetrad/abi/ops.py and
 * tetrad/abi/records.py; tests/kernel/test_record_layout.py compiles it and
 * compares sizes and offsets with the ctypes mirror, so change both together.
 *
 * Variable-length payloads (arguments, paths) follow the fixed part in
 * `data[]`; the fixed part says how long each piece is.
 */
#ifndef TETRAD_EVENTS_H
#define TETRAD_EVENTS_H

#define TETRAD_OP_EXEC 1
#define TETRAD_OP_EXIT 2
#define TETRAD_OP_CLONE 3
#define TETRAD_OP_CGROUP_MKDIR 4
#define TETRAD_OP_CGROUP_RMDIR 5

/* Ring buffer records never wake the reader: waking it for each record
 * costs an inter-processor interrupt and a context switch per event on the
 * traced task's path. The observer drains the buffer on a short timer
 * instead (tetrad/observer.py), trading a few milliseconds of latency. */
#define TETRAD_RB_FLAGS BPF_RB_NO_WAKEUP

/* Sizes of the variable-length pieces of an exec record. */
#define TETRAD_ARGS_MAX 4096      /* argv bytes kept, NUL separated        */
#define TETRAD_ARG_READ 1024      /* longest argument read at once (no BTF) */
#define TETRAD_MAX_ARGS 128       /* argv entries walked (no BTF)           */
#define TETRAD_PATH_MAX 4096      /* bytes of one path (components, NULs)   */
#define TETRAD_NAME_READ 256      /* longest path component read at once    */
#define TETRAD_PATH_DEPTH 48      /* path components walked                 */
#define TETRAD_CGROUP_PATH_MAX 512 /* bytes of a cgroup path kept          */

/* Process flags; names follow Tetragon's `flags` vocabulary. */
#define TETRAD_F_EXECVE        0x0001
#define TETRAD_F_PROCFS        0x0002
#define TETRAD_F_TRUNC_FILE    0x0004
#define TETRAD_F_TRUNC_ARGS    0x0008
#define TETRAD_F_MISS          0x0020 /* no argv stash (no BTF): args unknown */
#define TETRAD_F_ERROR_FILE    0x0040
#define TETRAD_F_ERROR_ARGS    0x0080
#define TETRAD_F_NO_CWD        0x0100 /* kernel walk unavailable (no BTF)  */
#define TETRAD_F_ROOT_CWD      0x0200
#define TETRAD_F_ERROR_CWD     0x0400
#define TETRAD_F_CLONE         0x0800
#define TETRAD_F_TRUNC_CWD     0x1000

/* How a process ended (tetrad_msg_exit.how). */
#define TETRAD_EXIT_UNKNOWN 0
#define TETRAD_EXIT_CODE    1      /* exit_group()/exit() with `code`      */
#define TETRAD_EXIT_SIGNAL  2      /* killed by signal `code`              */

struct tetrad_msg_header {
	__u8  op;
	__u8  pad0;
	__u16 size;        /* whole record, header included */
	__u32 cpu;
	__u64 ktime;       /* bpf_ktime_get_ns() when the record was made */
};

/* Identity of a process as in Tetragon's exec_id: pid + ktime of its exec
 * (or of its fork, for a clone that has not exec'd). */
struct tetrad_proc_key {
	__u32 pid;
	__u32 pad;
	__u64 ktime;
};

struct tetrad_msg_exec {
	struct tetrad_msg_header hdr;   /* hdr.ktime is the exec time          */
	struct tetrad_proc_key parent;  /* zero when the parent is unknown     */
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u32 auid;
	__u32 flags;
	__u64 cgroup_id;
	__u16 args_len;                 /* argv incl. argv[0], NUL separated   */
	__u16 exe_len;                  /* binary path components, leaf first  */
	__u16 cwd_len;                  /* cwd components, leaf first          */
	__u16 filename_len;             /* path as given to execve             */
	/* data[]: args | exe | cwd | filename */
};

struct tetrad_msg_exit {
	struct tetrad_msg_header hdr;   /* hdr.ktime is the exit time          */
	struct tetrad_proc_key proc;    /* ktime 0 when the process is unknown */
	struct tetrad_proc_key parent;
	__u32 pid;
	__u32 tid;
	__u32 how;                      /* TETRAD_EXIT_*                       */
	__u32 code;                     /* exit status or signal number        */
	__u64 cgroup_id;
};

/* A new process (not a thread): user space keeps the tree complete even
 * for children that never exec, so their events name the right parent. */
struct tetrad_msg_clone {
	struct tetrad_msg_header hdr;   /* hdr.ktime is the fork time          */
	struct tetrad_proc_key proc;    /* the child: pid, hdr.ktime           */
	struct tetrad_proc_key parent;
	__u32 flags;
	__u32 pad;
};

/* A cgroup v2 directory made or removed. Policies scoped to containers
 * (tetrad/policy/cgroup_scope.py) learn new cgroups from these as soon as
 * they exist, before the container's first process runs in one. */
struct tetrad_msg_cgroup {
	struct tetrad_msg_header hdr;
	__u64 id;                       /* what bpf_get_current_cgroup_id() says */
	__u32 level;                    /* depth below the root                */
	__u16 path_len;                 /* bytes of path used, NUL excluded    */
	__u16 pad;
	char path[TETRAD_CGROUP_PATH_MAX]; /* relative to the cgroup2 mount    */
};

#endif
