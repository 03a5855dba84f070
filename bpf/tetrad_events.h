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
#define TETRAD_OP_STATE 6

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

/* ---- credentials and namespaces ------------------------------------------- *
 *
 * What Tetragon's `process.cap`, `process.ns` and `process.process_credentials`
 * report, and what matchNamespaces/matchCapabilities (and their *Changes)
 * compare against. Read from the task by bpf/proc_state.h at exec, fork and
 * the exits of the syscalls that change them. Ids are the kernel's (as seen
 * from the initial user namespace), as in Tetragon.
 */

/* Indices of tetrad_proc_state.ns: Tetragon's ns_* order. */
#define TETRAD_NS_UTS 0
#define TETRAD_NS_IPC 1
#define TETRAD_NS_MNT 2
#define TETRAD_NS_PID 3
#define TETRAD_NS_PID_FOR_CHILDREN 4
#define TETRAD_NS_NET 5
#define TETRAD_NS_TIME 6
#define TETRAD_NS_TIME_FOR_CHILDREN 7
#define TETRAD_NS_CGROUP 8
#define TETRAD_NS_USER 9
#define TETRAD_NS_COUNT 10

/* Indices of tetrad_proc_state.caps: Tetragon's caps_* order. */
#define TETRAD_CAPS_PERMITTED 0
#define TETRAD_CAPS_EFFECTIVE 1
#define TETRAD_CAPS_INHERITABLE 2

/* tetrad_proc_state.known: which parts hold values. A part not known is
 * zero (no BTF; a process from /proc has no securebits or user_ns). */
#define TETRAD_STATE_CREDS      0x1 /* uid .. fsgid, caps                   */
#define TETRAD_STATE_NS         0x2 /* ns[]; 0 where the kernel lacks a type */
#define TETRAD_STATE_SECUREBITS 0x4
#define TETRAD_STATE_USER_NS    0x8 /* user_ns_level, _owner, _group        */

struct tetrad_proc_state {
	__u32 known;                    /* TETRAD_STATE_*                      */
	__u32 securebits;
	__u32 uid;
	__u32 gid;
	__u32 suid;
	__u32 sgid;
	__u32 euid;
	__u32 egid;
	__u32 fsuid;
	__u32 fsgid;
	__u64 caps[3];                  /* TETRAD_CAPS_*: bit n = capability n */
	__s32 user_ns_level;            /* 0: the initial user namespace       */
	__u32 user_ns_owner;            /* uid and gid that made it            */
	__u32 user_ns_group;
	__u32 ns[TETRAD_NS_COUNT];      /* inode numbers, TETRAD_NS_*          */
	__u32 pad;
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
	struct tetrad_proc_state state; /* as the new image starts             */
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
	struct tetrad_proc_state state; /* the child's, new namespaces included */
};

/* A process's credentials or namespaces changed after its exec (setuid,
 * capset, unshare, setns, ...): the new values, for its later events. */
struct tetrad_msg_state {
	struct tetrad_msg_header hdr;
	struct tetrad_proc_key proc;
	__u32 tid;                      /* the thread that changed             */
	__s32 syscall;                  /* whose exit saw the change           */
	struct tetrad_proc_state state;
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
