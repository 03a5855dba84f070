/* generic.h - policy hooks as tables: what the kernel reads, and the record
 * it sends. Mirrored by tetrad/abi/generic.py (checked field by field in
 * tests/kernel/test_record_layout.py); the encoding is built in pure Python
 * by tetrad/policy/points.py.
 *
 * The programs of bpf/generic_hook.c are compiled once per program type
 * and never know a policy: everything a policy says is data in these maps.
 *
 *   point     one attach point (a syscall, a kprobe function, an LSM hook,
 *             a tracepoint, a uprobe): which values to read from the call
 *             (`slots`, the union of what its hooks' arguments need, each
 *             read once per call), the integer predicates on them, and the
 *             hooks attached there. A program finds its point by the
 *             syscall number (syscall tracepoints) or by a constant patched
 *             into its copy when it was loaded (every other kind).
 *   predicate one test of one slot against a value set: "the path has one
 *             of these prefixes", "the port is in one of these ranges". It
 *             owns one bit of the point's `hits`. String and address
 *             predicates are answered for all hooks at once by one lookup
 *             per slot in a trie whose values are bit masks (see
 *             tetrad/policy/points.py); integer predicates are evaluated in
 *             a loop. Each predicate is evaluated once per call, however
 *             many policies use the point.
 *   hook      one policy's hook: its selectors (bit masks of the predicates
 *             that must hold and must not hold, matchPIDs, actions) and
 *             which slots are its arguments, in its order, for the record.
 *
 * A record carries the hook's own arguments in its order (`g_msg`), so the
 * event builder never sees the point's union.
 */
#ifndef TETRAD_GENERIC_H
#define TETRAD_GENERIC_H

#include "tetrad_events.h"

#define TETRAD_OP_GENERIC 10

/* Sizes. Arrays are powers of two so that loop indexes can be masked. */
#define G_MAX_ARGS 5            /* arguments of one hook (record slots)     */
#define G_MAX_SLOTS 8           /* values read at one point                 */
#define G_SLOT_MASK 7
#define G_MAX_ARGV 8            /* raw call arguments fetched (6 used)      */
#define G_MAX_SEL 8             /* selectors of one hook                    */
#define G_MAX_VALUES 8          /* values of one integer predicate          */
#define G_MAX_ACTIONS 4
#define G_MAX_IPREDS 32         /* integer predicates of one point          */
#define G_WORDS 4               /* predicate bits of one point: 256         */
#define G_POINT_HOOKS 16        /* hooks attached at one point              */
#define G_MAX_SPREDS 16         /* credential/namespace predicates of a point */
#define G_SPRED_VALUES 4        /* namespace inode numbers of one predicate  */
#define G_STR_MAX 256           /* bytes of a string, path or buffer kept   */
#define G_STR_MASK 255
#define G_POSTFIX_MAX 128
#define G_LPM_STR 248           /* LPM keys hold at most 256 data bytes     */
#define G_NO_SLOT 0xff
#define G_MAX_OPS 64            /* struct walk steps of one point's slots   */
#define G_OPS_MASK 63
#define G_SLOT_OPS 16           /* steps of one slot: walk, then gather     */
#define G_IOVEC_MAX 8           /* iovec entries of a char_iovec read       */

/* How a slot's value is read (g_slot_desc.kind). */
#define GA_NONE 0
#define GA_INT 1                /* integer value                            */
#define GA_USTR 2               /* NUL-terminated string in user memory     */
#define GA_UBUF 3               /* bytes in user memory                     */
#define GA_FD 4                 /* fd number, resolved to its path          */
#define GA_FILE 5               /* struct file *                            */
#define GA_PATH 6               /* struct path *                            */
#define GA_SOCK 7               /* struct sock *                            */
#define GA_USOCKADDR 8          /* struct sockaddr * in user memory         */
#define GA_GATHER 9             /* struct fields copied by steps (g_op)     */
#define GA_KSTR 10              /* NUL-terminated string in kernel memory   */
#define GA_DATALOC 11           /* tracepoint __data_loc string             */
#define GA_DENTRY 12            /* struct dentry *: path within its mount   */
#define GA_IOVEC 13             /* struct iovec * in user memory, sizesrc entries */
#define GA_BUF 14               /* bytes in user or kernel memory (kprobes) */
#define GA_ITER 15              /* struct iov_iter: its first user buffer; S_STEPS
				 * gathers iter_type (data[0]), count (data[8]) and
				 * the vector pointer (data[16]); `size` is the
				 * kernel's ITER_IOVEC, `sizesrc` its ITER_UBUF */

/* Network kinds (from 20). */
#define GA_SKB 20               /* struct sk_buff *: its IP/TCP/UDP headers  */
#define GA_SOCKET 21            /* struct socket *: its struct sock          */
#define GA_KSOCKADDR 22         /* struct sockaddr * in kernel memory        */
#define GA_USOCKADDR_UN 23      /* struct sockaddr_un * in user memory       */
#define GA_KSOCKADDR_UN 24      /* struct sockaddr_un * in kernel memory     */
#define GA_NETDEV 25            /* struct net_device *: its name             */

/* Struct walk steps (g_op.code), run on the slot's value `v` before its kind
 * reads it (the walk: resolve:, btfType, a type's own members), then, for
 * GA_GATHER, from that value again (the gather: the fields a struct-typed
 * argument shows). Offsets come from the running kernel's BTF
 * (tetrad/policy/btfwalk.py). */
#define GO_DEREF 1              /* v = the pointer at v + off; NULL fails   */
#define GO_LOAD 2               /* v = the `size` bytes at v + off          */
#define GO_ADD 3                /* v += off                                 */
#define GO_COPY 4               /* data[dst..] = the `size` bytes at v + off */
#define GO_STR 5                /* data[dst..] = the string at v + off (size max) */
#define GO_BASE 6               /* v = the walked value again               */
#define GO_USER 0x80            /* flag: read user memory                   */

/* g_slot_desc.flags: which lookups a slot's predicates need, and how it is read. */
#define GS_FWD 0x01             /* string: Equal/Prefix trie (str_fwd)      */
#define GS_REV 0x02             /* string: Postfix trie (str_rev)           */
#define GS_SADDR 0x04           /* address: SAddr trie (cidr, source)       */
#define GS_DADDR 0x08           /* address: DAddr trie (cidr, destination)  */
#define GS_SIGNED 0x10          /* integer: sign-extend `size` bytes        */
#define GS_RETCOPY 0x20         /* buffer: read at return, `retval` bytes   */
#define GS_USER 0x40            /* in user memory: read again at sys_exit   */
#define GS_RETVAL 0x80          /* the return value (a string, a sock): read at return */

/* Slot flags (g_slot.flags), also in records. */
#define G_SLOT_TRUNC 0x1
#define G_SLOT_ERROR 0x2
#define G_SLOT_PATH_TRUNC 0x4
/* User memory that could not be read, at entry nor (syscalls) at exit:
 * the value is unknown. Every predicate on it holds, unless the hook has
 * G_HOOK_UNREADABLE_NOMATCH (policy option unreadable-args: no-match). */
#define G_SLOT_UNREADABLE 0x8
/* A pointer met while walking to the value was NULL or unreadable; the
 * value read is 0 or empty, and the flags' high byte is the pointer's place
 * in the resolve path (G_SLOT_DEPTH_SHIFT). */
#define G_SLOT_BADPTR 0x10
#define G_SLOT_ABSTRACT 0x20    /* sockaddr_un: an abstract name (no file)  */
#define G_SLOT_DEPTH_SHIFT 8

/* Integer predicate operators (g_ipred.op). */
#define G_OP_EQ 1               /* any value equal                          */
#define G_OP_MASK 7             /* any value with a common bit              */
#define G_OP_GT 8               /* greater than any value                   */
#define G_OP_LT 9               /* less than any value                      */
#define G_OP_INRANGE 10         /* within any (lo, hi) pair                 */
#define G_OP_SPORT 16           /* sock/sockaddr source port in a range     */
#define G_OP_DPORT 18           /* ... destination port in a range          */
#define G_OP_PROTOCOL 20        /* sock/skb protocol in a range             */
#define G_OP_FAMILY 21          /* sock/sockaddr family in a range          */
#define G_OP_STATE 22           /* sock state in a range                    */

/* Actions. */
#define G_ACT_POST 1
#define G_ACT_NOPOST 2
#define G_ACT_SIGKILL 3
#define G_ACT_SIGNAL 4
#define G_ACT_OVERRIDE 5
#define G_ACT_FOLLOWFD 6
#define G_ACT_UNFOLLOWFD 7
#define G_ACT_TRACKSOCK 8       /* socktrack: the sock of argument `arg` -> this process */
#define G_ACT_UNTRACKSOCK 9     /* ... forgotten                            */
#define G_ACT_GETURL 10         /* done by user space when the record arrives */
#define G_ACT_DNSLOOKUP 11
#define G_ACT_NOTIFY 12         /* NotifyEnforcer: arg error, arg2 signal  */

/* Hook flags. */
#define G_HOOK_MONITOR 0x1      /* policy-mode monitor: enforcement elided  */
#define G_HOOK_ACTIVE 0x2
#define G_HOOK_CGROUPS 0x4      /* only tasks in cgroups listed in cgroup_sel */
#define G_HOOK_UNREADABLE_NOMATCH 0x8   /* an unreadable argument matches nothing */
#define G_HOOK_RETURN 0x10      /* decided at return: matchReturnArgs, return actions */
#define G_HOOK_RETSLOT 0x20     /* its last record slot is the return value (GS_RETVAL) */

/* Point flags. */
#define G_POINT_ACTIVE 0x1
#define G_POINT_BINARY 0x2      /* some selector has matchBinaries          */
#define G_POINT_PIDS 0x4        /* some selector has matchPIDs (pid_sel)    */
#define G_POINT_FORKS 0x8       /* ... with followForks: ancestors looked up */
#define G_POINT_NSPID 0x10      /* ... with isNamespacePID                  */
#define G_POINT_RETRY 0x20      /* user memory unreadable at entry is read at exit */
#define G_POINT_STATE 0x40      /* some selector tests the caller's namespaces or
				 * capabilities (the S_STATE stage runs) */
#define G_POINT_BASE 0x80       /* ... their changes since the image started
				 * (execve_map's exec_state is looked up) */

/* State predicates (g_spred.kind): caller predicates on the task's
 * namespaces and capabilities (struct tetrad_proc_state), read at the hook.
 * `index` is the namespace (TETRAD_NS_*) or capability set (TETRAD_CAPS_*);
 * with `userns` set (isNamespaceCapability), a capability predicate never
 * holds in that user namespace (the host's). */
#define G_SP_NS 1               /* ns[index] is one of vals                 */
#define G_SP_CAPS_IN 2          /* caps[index] has a capability of mask     */
#define G_SP_CAPS_NOTIN 3       /* ... has none of them                     */
#define G_SP_NSCHG 4            /* a namespace whose bit is in mask differs
				 * from the one the image started in         */
#define G_SP_CAPCHG_IN 5        /* caps[index] changed in a capability of
				 * mask since the image started              */
#define G_SP_CAPCHG_NOTIN 6     /* ... changed, but in none of mask         */

/* g_selector.chg: after the selector chose a call, the caller's present
 * namespaces (capabilities) become the ones changes are counted from, so
 * one change is reported once (as Tetragon does). */
#define G_SEL_NSCHG 0x1
#define G_SEL_CAPCHG 0x2
#define G_POINT_SYSNR 0x100     /* raw_syscalls:sys_enter: `id` names the syscall
				 * an enforce note is for */
#define G_POINT_RETVAL 0x200     /* a slot is a return value (GS_RETVAL): its
				 * tests are decided at return */
#define G_POINT_BIN_REV 0x400   /* matchBinaries Postfix: the binary is looked
				 * up reversed too (a loop of G_POSTFIX_MAX) */

/* Record flags (g_msg.flags). */
#define G_MSG_MONITOR 0x1       /* the action was not enforced (monitor)    */
#define G_MSG_RETURN 0x2        /* retval is set                            */

/* A sock, socket, sk_buff or sockaddr, in a slot's data. */
struct g_sockinfo {
	__u16 family;
	__u16 type;
	__u16 protocol;
	__u16 sport;            /* host order */
	__u16 dport;            /* host order */
	__u16 state;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 mark;
	__u32 priority;
	__u32 hash;             /* skb */
	__u64 cookie;           /* sock: its address, the socktrack key */
	__u32 len;              /* skb */
	__u32 pad;
};

struct g_slot {
	__s64 ival;             /* integer, fd number, buffer size */
	__u16 len;              /* bytes of data used */
	__u16 flags;            /* G_SLOT_* */
	__u32 pad;
	char data[G_STR_MAX];   /* string, path, buffer, or struct g_sockinfo */
};

struct g_slot_desc {
	__u8 kind;              /* GA_* */
	__u8 flags;             /* GS_* */
	__u8 size;              /* integer bytes; GA_GATHER: bytes gathered */
	__u8 sizesrc;           /* argument holding a buffer's length, or G_NO_SLOT */
	__u16 src;              /* argument index, or tracepoint field offset */
	__u8 op_at;             /* its first step in the point's ops */
	__u8 nwalk;             /* steps to its value */
	__u8 ngather;           /* then steps gathering fields (GA_GATHER) */
	__u8 pad;
	__u16 xflags;           /* GSX_* */
};

struct g_op {
	__u32 off;              /* bytes added to v */
	__u8 code;              /* GO_* */
	__u8 size;              /* bytes loaded, copied, or string maximum */
	__u8 dst;               /* where in the slot's data (copy, string) */
	__u8 depth;             /* its place in the resolve path (BADPTR) */
};

/* g_slot_desc.xflags. */
#define GSX_OPENED 0x1          /* the path of an open-family syscall: read at
				 * a deferred call's exit from the file the
				 * call returned (the kernel's own path) */

struct g_ipred {
	__u8 slot;
	__u8 op;                /* G_OP_* */
	__u8 nvals;             /* values; ranges count two */
	__u8 bit;               /* its bit in the point's hits */
	__u8 negate;            /* matchReturnArgs NotEqual/NotInRange */
	__u8 pad[3];
	__s64 vals[G_MAX_VALUES];
};

struct g_spred {
	__u8 kind;              /* G_SP_* */
	__u8 index;
	__u8 nvals;
	__u8 bit;               /* its bit among the caller predicates */
	__u32 userns;           /* isNamespaceCapability: the host's user ns */
	__u64 mask;             /* capabilities, or namespaces (bit = TETRAD_NS_*) */
	__u32 vals[G_SPRED_VALUES];
};

struct g_point {
	__u32 flags;            /* G_POINT_* */
	__u8 nslots;
	__u8 npreds;            /* integer predicates */
	__u8 nhooks;
	__u8 nspreds;           /* state predicates */
	struct g_slot_desc slot[G_MAX_SLOTS];
	/* Predicates on each slot: G_WORDS words from slot * G_WORDS (one
	 * dimension: bcc's view of a map value has no two-dimensional arrays). */
	__u64 slot_bits[G_MAX_SLOTS * G_WORDS];
	__u16 hooks[G_POINT_HOOKS];             /* hook ids */
	struct g_ipred pred[G_MAX_IPREDS];
	struct g_spred spred[G_MAX_SPREDS];
	struct g_op ops[G_MAX_OPS];             /* the slots' steps (op_at) */
};

/* g_action.stack: stack traces a Post records (kernelStackTrace,
 * userStackTrace): ids in `stacks`, read and removed by user space. */
#define G_STACK_KERNEL 0x1
#define G_STACK_USER 0x2
#define G_NO_STACK (-65536)     /* g_msg.kstack/ustack: none was asked for */

struct g_action {
	__u8 action;
	__u8 stack;             /* G_STACK_* (Post) */
	__u8 pad[2];
	__s32 arg;              /* argError, argSig, or argFd slot */
	__u32 arg2;             /* argName slot */
	__u32 rate_limit_s;
};

struct g_selector {
	__u8 nact;
	__u8 nret_act;
	__u8 has_ret;
	__u8 chg;               /* G_SEL_* */
	__u8 pad[4];
	__u64 cpos;             /* caller predicates (matchBinaries, matchPIDs,
				 * namespaces, capabilities) that must hold */
	__u64 cneg;             /* ... that must not */
	__u64 pos[G_WORDS];     /* argument predicates that must hold */
	__u64 neg[G_WORDS];     /* ... that must not */
	struct g_ipred ret;     /* matchReturnArgs (slot unused) */
	struct g_action act[G_MAX_ACTIONS];
	struct g_action ret_act[G_MAX_ACTIONS];
};

struct g_hook {
	__u32 id;
	__u32 flags;            /* G_HOOK_* */
	__u8 nsel;
	__u8 nargs;             /* record slots (the return value's included) */
	__u8 ret_action;        /* returnArgAction: G_ACT_TRACKSOCK/UNTRACKSOCK, or 0 */
	__u8 sockargs;          /* record slots holding a sock (bit per slot) */
	__u16 track;            /* its policy's socktrack scope; 0: none */
	__u8 pad[2];
	__u8 argslot[8];        /* the point's slot of each argument (nargs) */
	struct g_selector sel[G_MAX_SEL];
};

/* Trie keys: strings (str_fwd, str_rev) and addresses (cidr). Values are
 * struct g_bits: the predicates that hold for every key they are the
 * longest match of. `id` is the point, slot and table (g_trie_id). */
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

struct g_bits {
	__u64 w[G_WORDS];
};

/* Trie ids: point << 8 | table << 4 | slot; slot 15 is the binary. */
#define G_TRIE_FWD 0
#define G_TRIE_REV 1
#define G_TRIE_SADDR 2
#define G_TRIE_DADDR 3
#define G_BINARY_SLOT 15

/* pid_sel: matchPIDs values as caller predicates. A process's pid (and,
 * at FORKS points, each of its ancestors' for followForks predicates; at
 * NSPID points its pid in its own namespace) is looked up under its point;
 * the value says which predicates list it. */
struct g_pid_key {
	__u32 point;
	__u32 pid;
};

struct g_pid_bits {
	__u64 pid;              /* predicates listing this pid */
	__u64 forks;            /* followForks predicates listing it (the pid
				 * itself or an ancestor) */
	__u64 nspid;            /* isNamespacePID predicates listing it */
};

/* cgroup_sel: the cgroups (v2 ids) a workload-scoped hook runs for. */
struct g_cgroup_key {
	__u64 cgroup_id;
	__u32 hook_id;
	__u32 pad;
};

/* socktrack: a sock (by address) -> the process that owns it, per policy
 * (`scope`: a policy's hooks share one, as Tetragon keeps a map per
 * policy). Written by TrackSock/UntrackSock; a sock argument of a hook
 * found here reports that process instead of the task the call runs in. */
struct g_sock_key {
	__u64 sk;
	__u32 scope;
	__u32 pad;
};

struct g_sock_owner {
	__u32 pid;
	__u32 tid;
	__u64 ktime;            /* its exec_id's ktime (execve_map) */
};

/* usdt_specs: where each argument of a USDT probe is at the probe (its
 * note's argument specs, tetrad/elf.py), per logical point: the program
 * computes args[i] from them, then reads slots as for any uprobe. */
#define G_USDT_NONE 0
#define G_USDT_CONST 1          /* the value is `val`                       */
#define G_USDT_REG 2            /* the register at byte `reg` of pt_regs    */
#define G_USDT_DEREF 3          /* user memory at register `reg` + `val`    */
#define G_USDT_SIB 4            /* ... at `reg` + register `idx` * scale + val */

struct g_usdt_arg {
	__u8 kind;              /* G_USDT_* */
	__u8 size;              /* bytes: 1, 2, 4, 8 */
	__u8 is_signed;
	__u8 scale;
	__u16 reg;              /* offsets in struct pt_regs */
	__u16 idx;
	__s64 val;
};

struct g_usdt {
	struct g_usdt_arg arg[G_MAX_ARGV];
};

struct g_msg {
	struct tetrad_msg_header hdr;
	__u32 obj_id;           /* which compiled object (user space's id) */
	__u32 hook_id;
	__u32 pid;
	__u32 tid;
	__u64 proc_ktime;       /* execve_map key of the process (its exec_id) */
	__s64 retval;
	__u8 selector;
	__u8 action;
	__u8 flags;             /* G_MSG_* */
	__u8 nslots;
	__s32 kstack;           /* stack ids in `stacks`; G_NO_STACK: none asked */
	__s32 ustack;           /* for; other negatives: the kernel kept none */
	__u32 nr;               /* the syscall's number, at syscall points */
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
