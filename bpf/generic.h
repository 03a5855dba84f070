/* generic.h - policy hooks: the compiled-policy encoding the kernel reads,
 * and the record it sends. Mirrored by tetrad/abi/generic.py (checked
 * field by field in tests/kernel/test_record_layout.py).
 *
 * A policy hook is one `struct g_hook` in the program's `hooks` array,
 * found through `hook_index` by a demux key the program can compute at run
 * time: the syscall number for syscall tracepoints (one program serves every
 * syscall with the same argument layout), 0 for programs that serve one
 * target (a kprobe function, an LSM hook, a tracepoint, a uprobe). String,
 * path and address values live in hash and LPM-trie maps keyed by the
 * match's `id` (see tetrad/policy/compile.py for every encoding).
 */
#ifndef TETRAD_GENERIC_H
#define TETRAD_GENERIC_H

#include "tetrad_events.h"

#define TETRAD_OP_GENERIC 10

/* Array sizes are powers of two so loops can mask their index: the
 * verifier then needs no proof that a loop stops at the logical limit
 * (5 selectors, 5 matchArgs, 3 actions), which user space enforces. */
#define G_MAX_ARGS 5
#define G_MAX_SEL 8
#define G_MAX_MATCH 8
#define G_MAX_VALUES 8          /* ints, or 4 (lo, hi) ranges */
#define G_MAX_ACTIONS 4
#define G_MAX_PIDS 4
#define G_HOOKS_PER_KEY 1
#define G_STR_MAX 256           /* bytes of a string, path or buffer kept */
#define G_STR_MASK 255
#define G_POSTFIX_MAX 128
#define G_LPM_STR 248           /* LPM keys hold at most 256 data bytes */
#define G_RETURN_SLOT 7         /* match.slot value naming the return value */

/* How a slot's value is read (per slot, fixed when the program is built). */
#define GA_NONE 0
#define GA_INT 1                /* integer value                          */
#define GA_USTR 2               /* NUL-terminated string in user memory   */
#define GA_UBUF 3               /* bytes in user memory                   */
#define GA_FD 4                 /* fd number, resolved to its path        */
#define GA_FILE 5               /* struct file *                          */
#define GA_PATH 6               /* struct path *                          */
#define GA_SOCK 7               /* struct sock *                          */
#define GA_USOCKADDR 8          /* struct sockaddr * in user memory       */
#define GA_BINPRM 9             /* struct linux_binprm *                  */
#define GA_KSTR 10              /* NUL-terminated string in kernel memory */
#define GA_DATALOC 11           /* tracepoint __data_loc string           */

/* Slot flags. */
#define G_SLOT_TRUNC 0x1
#define G_SLOT_ERROR 0x2
#define G_SLOT_PATH_TRUNC 0x4
/* User memory that could not be read, at entry nor (syscalls) at exit:
 * the value is unknown. Matches every operator on it unless the hook has
 * G_HOOK_UNREADABLE_NOMATCH (policy option unreadable-args: no-match). */
#define G_SLOT_UNREADABLE 0x8

/* Operators (struct g_match.op). */
#define G_OP_EQ 1
#define G_OP_NE 2
#define G_OP_PREFIX 3
#define G_OP_NOTPREFIX 4
#define G_OP_POSTFIX 5
#define G_OP_NOTPOSTFIX 6
#define G_OP_MASK 7
#define G_OP_GT 8
#define G_OP_LT 9
#define G_OP_INRANGE 10
#define G_OP_NOTINRANGE 11
#define G_OP_SADDR 12
#define G_OP_NOTSADDR 13
#define G_OP_DADDR 14
#define G_OP_NOTDADDR 15
#define G_OP_SPORT 16
#define G_OP_NOTSPORT 17
#define G_OP_DPORT 18
#define G_OP_NOTDPORT 19
#define G_OP_PROTOCOL 20
#define G_OP_FAMILY 21
#define G_OP_STR_EQ 22          /* Equal on a string/path: hash map       */
#define G_OP_STR_NE 23

/* Actions. */
#define G_ACT_POST 1
#define G_ACT_NOPOST 2
#define G_ACT_SIGKILL 3
#define G_ACT_SIGNAL 4
#define G_ACT_OVERRIDE 5
#define G_ACT_FOLLOWFD 6
#define G_ACT_UNFOLLOWFD 7

/* Hook flags. */
#define G_HOOK_MONITOR 0x1      /* policy-mode monitor: enforcement elided */
#define G_HOOK_ACTIVE 0x2
#define G_HOOK_CGROUPS 0x4      /* only tasks in cgroups listed in cgroup_sel */
#define G_HOOK_UNREADABLE_NOMATCH 0x8   /* an unreadable argument matches nothing */

/* matchPIDs / matchBinaries operators. */
#define G_SET_IN 1
#define G_SET_NOTIN 2
#define G_SET_PREFIX 3
#define G_SET_NOTPREFIX 4
#define G_SET_POSTFIX 5
#define G_SET_NOTPOSTFIX 6

/* Record flags (g_msg.flags). */
#define G_MSG_MONITOR 0x1       /* the action was not enforced (monitor) */
#define G_MSG_RETURN 0x2        /* retval is set                          */

struct g_sockinfo {
	__u16 family;
	__u16 type;
	__u16 protocol;
	__u16 sport;            /* host order */
	__u16 dport;            /* host order */
	__u16 state;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct g_slot {
	__s64 ival;             /* integer, fd number, buffer size */
	__u16 len;              /* bytes of data used */
	__u16 flags;            /* G_SLOT_* */
	__u32 pad;
	char data[G_STR_MAX];   /* string, path, buffer, or struct g_sockinfo */
};

struct g_match {
	__u8 slot;              /* 0..4, or G_RETURN_SLOT */
	__u8 op;
	__u8 nvals;
	__u8 pad;
	__u32 id;               /* key prefix of this match in the value maps */
	__s64 vals[G_MAX_VALUES];
};

struct g_action {
	__u8 action;
	__u8 pad[3];
	__s32 arg;              /* argError, argSig, or argFd slot */
	__u32 arg2;             /* argName slot */
	__u32 rate_limit_s;
};

struct g_selector {
	__u8 nmatch;
	__u8 has_ret;
	__u8 nact;
	__u8 nret_act;
	__u8 pid_op;
	__u8 npids;
	__u8 follow_forks;
	__u8 ns_pid;
	__u32 pids[G_MAX_PIDS];
	__u8 bin_op;
	__u8 pad[3];
	__u32 bin_id;
	struct g_match match[G_MAX_MATCH];
	struct g_match ret_match;
	struct g_action act[G_MAX_ACTIONS];
	struct g_action ret_act[G_MAX_ACTIONS];
};

struct g_hook {
	__u32 id;
	__u32 flags;            /* G_HOOK_* */
	__u32 nsel;
	__u32 pad;
	struct g_selector sel[G_MAX_SEL];
};

struct g_hook_list {
	__u32 n;
	__u32 ids[G_HOOKS_PER_KEY];
};

/* Map keys for values that do not fit in a g_match. */
struct g_str_key {
	__u32 id;
	char data[G_STR_MAX];
};

/* cgroup_sel: the cgroups (v2 ids) a workload-scoped hook runs for. */
struct g_cgroup_key {
	__u64 cgroup_id;
	__u32 hook_id;
	__u32 pad;
};

struct g_lpm_str_key {
	__u32 prefixlen;        /* bits: 32 (id) + 8 * bytes */
	__u32 id;
	char data[G_LPM_STR];
};

struct g_lpm_addr_key {
	__u32 prefixlen;        /* bits: 32 (id) + 8 (family) + prefix */
	__u32 id;
	__u8 family;
	__u8 addr[16];
};

struct g_msg {
	struct tetrad_msg_header hdr;
	__u32 obj_id;           /* which compiled program (user space's id) */
	__u32 hook_id;
	__u32 pid;
	__u32 tid;
	__u64 proc_ktime;       /* execve_map key of the process (its exec_id) */
	__s64 retval;
	__u8 selector;
	__u8 action;
	__u8 flags;             /* G_MSG_* */
	__u8 nslots;
	__u32 pad;
	struct g_slot slots[G_MAX_ARGS];
};

struct g_hook_stats {
	__u64 posted;           /* records written to the ring buffer */
	__u64 enforced;
	__u64 monitored;
	__u64 rate_limited;
	__u64 dropped;          /* the ring buffer was full */
	__u64 shed;             /* user space could not take it (shared_maps.h) */
	__u64 deferred;         /* calls decided at syscall exit: a user-memory
				 * argument was unreadable at entry */
	__u64 unreadable;       /* arguments unreadable even then (or, for
				 * hooks without an exit, at entry) */
};

#endif
