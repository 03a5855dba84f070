/* generic_hook.c - the policy programs: compiled once per program type,
 * driven by tables (generic.h), shared by every policy.
 *
 * Built once per BPF program type (-DG_PROG_TYPE) with the entries of the
 * kinds of call that type serves:
 *   G_TYPE_TP      g_sys_enter/g_sys_exit on syscalls:sys_{enter,exit}_*
 *                  (the point is found by syscall number), g_sys_any and
 *                  g_sys_any_exit on raw_syscalls for hooks on every
 *                  syscall, g_tp on other tracepoints
 *   G_TYPE_KPROBE  g_kprobe/g_kretprobe on kprobes and uprobes, g_usdt on
 *                  USDT probes (uprobes whose arguments come from usdt_specs)
 *   G_TYPE_LSM     g_lsm on BPF LSM hooks
 *   G_TYPE_RAWTP   g_rawtp on raw tracepoints
 * Entries other than the syscall ones are loaded once per attach point from
 * the same compiled code, each with its point number patched in
 * (tetrad/sensors/bpfobject.py, POINT_CONST below), so a new policy costs map
 * writes and at most a verifier pass, never a compile.
 *
 * A call runs as a chain of tail calls (so that each piece stays within
 * what the verifier can walk), sharing one per-CPU `g_state`:
 *   entry     the point; the caller predicates (matchBinaries: one lookup
 *             per trie on the binary; matchPIDs: pid_sel); which hooks want
 *             the caller (active, cgroup scope, some selector's caller
 *             masks) -> `wanted`; none: done, no argument read
 *   S_STATE   (G_POINT_STATE only) the caller's namespaces and capabilities
 *             read and tested (state predicates), then `wanted` as above
 *   S_READ    one slot per run, each read once however many hooks use it;
 *             a slot with struct walk steps (resolve:, btfType, struct-
 *             typed arguments) runs S_STEPS first, which walks to its
 *             value and gathers its fields (generic.h GO_*); a char_iovec
 *             is read by S_IOVEC instead
 *   S_EVAL    predicates: one trie lookup per slot and trie, then the
 *             integer predicates -> `hits`
 *   S_SELECT  each wanted hook: its first selector whose masks hold;
 *             a return hook's choice waits for the return (`waiting`)
 *   S_ACT     the chosen selectors' actions (signal, override, post)
 * Nothing is reserved in the ring buffer before a selector matched.
 *
 * At a return, only the return hooks that waited act. Where a slot is the
 * returned value itself (GS_RETVAL, a uprobe returning a string), its
 * tests hold at entry until known (`later`); at the return it is read and
 * S_EVAL and S_SELECT run again for those hooks.
 *
 * Arguments in user memory (strings, buffers, socket addresses) are read
 * with page faults disabled, so a read at syscall entry fails when the
 * caller placed the value on a page it never touched (issue 12). The kernel
 * faults that page in when it copies the value, so at a syscall point
 * (G_POINT_RETRY) such a call is deferred to its sys_exit: those slots are
 * read again there, then predicates, selection and actions run. A value
 * unreadable even then (or at a point without an exit) is marked
 * G_SLOT_UNREADABLE, counted, and every predicate on it holds, unless the
 * hook says unreadable-args: no-match (G_HOOK_UNREADABLE_NOMATCH): never a
 * silent pass.
 *
 * Build flags: G_PROG_TYPE, OBJ_ID, the OFF_* struct offsets from BTF (or
 * TETRAD_NO_BTF), G_OVERRIDE_RETURN where the kernel has kprobe override,
 * and the map sizes below.
 */
#include <uapi/linux/ptrace.h>
#include "generic.h"
#include "shared_maps.h"
#include "path_walk.h"
#include "proc_state.h"

#define G_TYPE_TP 1
#define G_TYPE_KPROBE 2
#define G_TYPE_LSM 3
#define G_TYPE_RAWTP 4

/* What the call's values are read from (g_state.ck). */
#define CK_SYSCALL 1            /* syscall tracepoint: nr, then 6 x u64     */
#define CK_TRACEPOINT 2         /* tracepoint record: fields at offsets     */
#define CK_REGS 3               /* struct pt_regs (kprobe, uprobe)          */
#define CK_ARRAY 4              /* u64 args[] (LSM, raw tracepoint)         */
#define CK_USDT 5               /* struct pt_regs at a USDT probe: args from
				 * the probe's specs (usdt_specs)           */

/* Stages (indexes in `stages`). */
#define S_READ 0
#define S_EVAL 1
#define S_SELECT 2
#define S_ACT 3
#define S_STATE 4
#define S_STEPS 5
#define S_IOVEC 6
#define S_COUNT 7

#ifndef G_MAX_POINTS
#define G_MAX_POINTS 128
#endif
#ifndef G_MAX_HOOKS
#define G_MAX_HOOKS 256
#endif
#ifndef G_TRIE_ENTRIES
#define G_TRIE_ENTRIES 16384
#endif
#ifndef G_PID_ENTRIES
#define G_PID_ENTRIES 4096
#endif
#ifndef G_STACKS
#define G_STACKS 1024
#endif
#ifndef G_CGROUP_ENTRIES
#define G_CGROUP_ENTRIES 16384
#endif
#ifndef G_SOCKTRACK_ENTRIES
#define G_SOCKTRACK_ENTRIES 32000
#endif
/* Syscall numbers are below 512 on every architecture we build for; user
 * space checks a number against the same size (INDEX_SIZE). */
#ifndef G_INDEX_SIZE
#define G_INDEX_SIZE 512
#endif
#define G_HAS_EXIT (G_PROG_TYPE == G_TYPE_TP || G_PROG_TYPE == G_TYPE_KPROBE)
#define G_ANCESTORS 8

TETRAD_SHARED_MAPS;

BPF_PROG_ARRAY(stages, S_COUNT);
/* Each attach point is a logical point L with two tables, 2L and 2L+1:
 * user space writes the one not in use, then switches point_ref[L] to it
 * (one aligned u32 write), so a call never reads a table half written. */
BPF_ARRAY(point_ref, u32, G_MAX_POINTS / 2);
BPF_ARRAY(points, struct g_point, G_MAX_POINTS);
BPF_ARRAY(hooks, struct g_hook, G_MAX_HOOKS);
BPF_PERCPU_ARRAY(hook_stats, struct g_hook_stats, G_MAX_HOOKS);
BPF_F_TABLE("lpm_trie", struct g_lpm_str_key, struct g_bits, str_fwd, G_TRIE_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct g_lpm_str_key, struct g_bits, str_rev, G_TRIE_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct g_lpm_addr_key, struct g_bits, cidr, G_TRIE_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct g_pid_key, struct g_pid_bits, pid_sel, G_PID_ENTRIES, BPF_F_NO_PREALLOC);
BPF_TABLE("lru_hash", u64, u64, rate_limits, 8192);
/* Written by user space as cgroups appear (tetrad/policy/cgroup_scope.py);
 * not preallocated: most hooks are not workload-scoped. */
BPF_F_TABLE("hash", struct g_cgroup_key, u8, cgroup_sel, G_CGROUP_ENTRIES, BPF_F_NO_PREALLOC);
/* One map for every program type (user space makes it and hands it to each
 * object, as the process sensor's maps): TrackSock on a kprobe is seen by a
 * tracepoint of the same policy. LRU, as Tetragon's: a policy that tracks
 * socks it never untracks loses the oldest. */
BPF_TABLE("lru_hash", struct g_sock_key, struct g_sock_owner, socktrack, G_SOCKTRACK_ENTRIES);
#if G_PROG_TYPE == G_TYPE_TP
/* Syscall number -> logical point (0: none). */
BPF_ARRAY(sys_point, u32, G_INDEX_SIZE);
#endif
#if G_PROG_TYPE == G_TYPE_KPROBE
/* Logical point -> its USDT probe's argument specs (generic.h). */
BPF_ARRAY(usdt_specs, struct g_usdt, G_MAX_POINTS / 2);
#endif

/* What one call has gathered, from stage to stage; kept in `pending` while
 * the call waits for its return. */
struct g_state {
	u64 args[G_MAX_ARGV];
	struct g_slot slots[G_MAX_SLOTS];
	u64 hits[G_WORDS];
	u64 unknown[G_WORDS];       /* predicates on unreadable slots */
	u64 later[G_WORDS];         /* predicates on return values, at entry */
	u64 callerhits;             /* caller predicates that hold */
	u64 proc_ktime;
	u64 cgroup_id;
	s64 retval;
	u32 pid;
	u32 tid;
	u32 point;                  /* the table this call uses (physical) */
	u32 lpoint;                 /* its logical point: trie, pid and pending keys */
	u32 ck;                     /* CK_* */
	u32 nr;                     /* CK_SYSCALL: the syscall's number */
	u32 sysnr;                  /* the syscall being entered, or TETRAD_ANY_SYSCALL */
	u32 iter;                   /* S_READ: the next slot */
	u32 wanted;                 /* hook positions whose caller filters pass */
	u32 failed;                 /* slots in user memory unreadable at entry */
	u32 acting;                 /* hook positions whose actions run now */
	u32 waiting;                /* return hooks that chose a selector at entry */
	s32 verdict;                /* the first action verdict (LSM, override) */
	u64 stepped;                /* S_STEPS: the value of slot `iter` */
	u64 step_base;              /* S_STEPS: the walked value (GO_BASE) */
	u32 step_dead;              /* S_STEPS: skipping to the next GO_BASE */
	u32 pad0;
	u8 at_return;
	u8 deferred;                /* the whole call is decided at return */
	u8 waits;                   /* a return hook chose a selector */
	u8 has_stepped;             /* S_STEPS: `stepped` is set (slot `iter`) */
	u8 shown;                   /* S_ACT: the event's action (run_actions) */
	u8 enforcing;               /* ... and whether one enforced */
	u8 stack;                   /* ... and the stacks its Post asked for */
	u8 pad[1];
	u8 sel[G_POINT_HOOKS];      /* selector chosen per hook position */
	struct tetrad_proc_state cur;   /* S_STATE: the caller's, at this call */
};

struct g_scratch {
	struct g_state st;
	struct g_msg out;
	struct g_lpm_str_key skey;
	struct g_lpm_addr_key akey;
	char bin[G_STR_MAX];
	u32 rev_last;               /* rev_lookup's last index */
	u32 pad;
	struct g_slot walk;         /* a path is walked here, then copied */
	/* walk_path writes within walk.data, but the verifier sees each name
	 * read as up to 2 * TETRAD_NAME_READ bytes from any offset in it. */
	char walk_room[2 * TETRAD_NAME_READ];
};
BPF_PERCPU_ARRAY(scratch, struct g_scratch, 1);
BPF_PERCPU_ARRAY(walk_heap, struct walk_scratch, 1);
/* Tail calls that did not happen (the call went on without its stage):
 * never expected; counted so that a lost decision is never silent. */
BPF_PERCPU_ARRAY(tail_misses, u64, S_COUNT);

#if G_HAS_EXIT
struct g_pending_key {
	u32 tid;
	u32 point;
};
/* Not LRU: a deferred call must never be evicted by a flood of other
 * pending calls (that would be a silent pass). When the map is full the
 * call is decided at entry, its unreadable arguments marked. */
BPF_F_TABLE("hash", struct g_pending_key, struct g_state, pending, 4096, BPF_F_NO_PREALLOC);
/* Calls waiting in `pending`, by point: the return of a call nothing waits
 * for costs an inlined array read, not a hash lookup. An entry never taken
 * (its task died in the call) leaves it high: returns then look. */
BPF_ARRAY(pending_now, u64, G_MAX_POINTS);
#endif

#define NO_SEL 0xff             /* no selector chosen */
#define ALL_SEL 0xfe            /* a hook without selectors: every call */

/* The point number patched into this copy of the program when it was
 * loaded (tetrad/sensors/bpfobject.py looks for this 64-bit immediate). */
#define POINT_MAGIC 0x7e7a5e0f7e7a5e0fULL
static __always_inline u32 point_const(void)
{
	u64 v;
	asm volatile("%0 = %1 ll" : "=r"(v) : "i"(POINT_MAGIC));
	return v;
}

/* A loop's bound from a table, loaded afresh at every test: neither clang
 * (which would compute a trip count) nor the verifier (which would narrow
 * the bound on each pass and so keep states apart that differ only there)
 * carries it from one iteration to the next. Without this, loops over a
 * point's hooks and selectors multiply into more states than it allows. */
#define BOUND(field) LAUNDER(field)

/* Loop index i masked for an array of mask+1 entries, hidden from the
 * compiler first: it cannot then turn indexing into a running pointer
 * (which loses the bound), and the verifier sees an index within the array. */
static __always_inline u32 at(u32 i, u32 mask)
{
	BARRIER_VAR(i);
	return i & mask;
}

static __always_inline struct g_scratch *get_scratch(void)
{
	u32 zero = 0;
	return scratch.lookup(&zero);
}

/* The tables of the call's point (the one its entry chose). */
static __always_inline struct g_point *point_of(struct g_state *st)
{
	u32 point = st->point;
	return points.lookup(&point);
}

static __always_inline int tail_missed(u32 stage)
{
	u64 *n = tail_misses.lookup(&stage);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

static __always_inline struct g_hook_stats *stats_of(u32 hook_id)
{
	return hook_stats.lookup(&hook_id);
}

/* Adds n to one counter of every hook in `mask` (positions at point p). */
#define COUNT_HOOKS(p, mask, field, n)                                          \
	do {                                                                    \
		_Pragma("clang loop unroll(disable)")                           \
		for (u32 _i = 0; _i < G_POINT_HOOKS; _i++) {                    \
			if (_i >= BOUND((p)->nhooks))                           \
				break;                                          \
			if (!((mask) & (1u << _i)))                             \
				continue;                                       \
			struct g_hook_stats *_s = stats_of((p)->hooks[at(_i, G_POINT_HOOKS - 1)]); \
			if (_s)                                                 \
				__sync_fetch_and_add(&_s->field, (n));          \
		}                                                               \
	} while (0)

/* ---- reading a slot --------------------------------------------------------- */

static __always_inline s64 extend(u64 v, int size, int is_signed)
{
	switch (size) {
	case 1: return is_signed ? (s64)(s8)v : (s64)(u8)v;
	case 2: return is_signed ? (s64)(s16)v : (s64)(u16)v;
	case 4: return is_signed ? (s64)(s32)v : (s64)(u32)v;
	default: return (s64)v;
	}
}

#ifndef TETRAD_NO_BTF
/* The file behind a descriptor of the current process: files->fdt->fd[fd]. */
static __always_inline void *fd_file(s64 fd)
{
	void *files = read_ptr((char *)bpf_get_current_task() + OFF_TASK_FILES);
	void *fdt = read_ptr((char *)files + OFF_FILES_FDT);
	u32 max = 0;
	bpf_probe_read_kernel(&max, sizeof(max), (char *)fdt + OFF_FDT_MAX_FDS);
	if (fd < 0 || fd >= max)
		return NULL;
	void **array = read_ptr((char *)fdt + OFF_FDT_FD);
	return read_ptr(&array[fd]);
}

/* The path of (dentry, mnt) into sc->walk, relative to the task's root;
 * without a mount (a dentry argument), relative to the root of the
 * dentry's file system: every read through the NULL mount fails, so the
 * walk stops where the dentry is its own parent. */
static __always_inline void walk_into(struct g_scratch *sc, void *dentry, void *mnt, bool need_mnt)
{
	u32 zero = 0;
	struct g_slot *s = &sc->walk;
	struct walk_scratch *w = walk_heap.lookup(&zero);
	s->len = 0;
	s->flags = 0;
	if (!w || !dentry || (need_mnt && !mnt)) {
		s->flags = G_SLOT_ERROR;
		return;
	}
	void *root_dentry, *root_mnt;
	task_root((void *)bpf_get_current_task(), &root_dentry, &root_mnt);
	u32 flags = 0;
	s->len = walk_path(s->data, G_STR_MASK, 0, G_STR_MAX - 1, w, dentry, mnt,
			   root_dentry, root_mnt, &flags, G_SLOT_PATH_TRUNC) & G_STR_MASK;
	s->flags = flags;
}

/* sc->walk's path (walk_into) as the slot's value. */
static __always_inline void walked_into(struct g_scratch *sc, struct g_slot *s)
{
	s->len = sc->walk.len;
	s->flags = sc->walk.flags;
	bpf_probe_read_kernel(s->data, G_STR_MAX, sc->walk.data);
}

static __always_inline void slot_sock(struct g_slot *s, void *sk)
{
	struct g_sockinfo *si = (struct g_sockinfo *)s->data;
	__builtin_memset(si, 0, sizeof(*si));
	if (!sk) {
		s->flags |= G_SLOT_ERROR;
		return;
	}
	bpf_probe_read_kernel(&si->family, 2, (char *)sk + OFF_SOCK_FAMILY);
	bpf_probe_read_kernel(&si->type, 2, (char *)sk + OFF_SOCK_TYPE);
	bpf_probe_read_kernel(&si->protocol, 2, (char *)sk + OFF_SOCK_PROTOCOL);
	bpf_probe_read_kernel(&si->state, 1, (char *)sk + OFF_SOCK_STATE);
	bpf_probe_read_kernel(&si->sport, 2, (char *)sk + OFF_SOCK_NUM);
	bpf_probe_read_kernel(&si->mark, 4, (char *)sk + OFF_SOCK_MARK);
	bpf_probe_read_kernel(&si->priority, 4, (char *)sk + OFF_SOCK_PRIORITY);
	si->cookie = (u64)sk;
	u16 dport = 0;
	bpf_probe_read_kernel(&dport, 2, (char *)sk + OFF_SOCK_DPORT);
	si->dport = (dport >> 8) | (dport << 8);
	if (si->family == 10 /* AF_INET6 */) {
		bpf_probe_read_kernel(si->saddr, 16, (char *)sk + OFF_SOCK_V6_SADDR);
		bpf_probe_read_kernel(si->daddr, 16, (char *)sk + OFF_SOCK_V6_DADDR);
	} else {
		bpf_probe_read_kernel(si->saddr, 4, (char *)sk + OFF_SOCK_SADDR);
		bpf_probe_read_kernel(si->daddr, 4, (char *)sk + OFF_SOCK_DADDR);
	}
	s->len = sizeof(*si);
}

#if defined(OFF_SOCKET_SK)
/* struct socket: its sock (Tetragon's `socket` type reads the same). */
static __always_inline void slot_socket(struct g_slot *s, void *sock)
{
	slot_sock(s, sock ? read_ptr((char *)sock + OFF_SOCKET_SK) : NULL);
}
#endif

#if defined(OFF_SKB_HEAD) && defined(OFF_SKB_NETWORK_HEADER) && defined(OFF_SKB_LEN) && \
	defined(OFF_SKB_HASH) && defined(OFF_SKB_MARK) && defined(OFF_SKB_PRIORITY)
#define G_HAS_SKB 1
/* IPv6 extension headers skipped before the transport header. */
#define G_IP6_EXTS 6

/* struct sk_buff: the buffer's fields and, from its network header, the IP
 * addresses and protocol and (TCP, UDP) ports. Anything but IPv4/IPv6 at
 * the network header leaves family 0. */
static __always_inline void slot_skb(struct g_slot *s, void *skb)
{
	struct g_sockinfo *si = (struct g_sockinfo *)s->data;
	__builtin_memset(si, 0, sizeof(*si));
	if (!skb) {
		s->flags |= G_SLOT_ERROR;
		return;
	}
	s->len = sizeof(*si);
	bpf_probe_read_kernel(&si->len, 4, (char *)skb + OFF_SKB_LEN);
	bpf_probe_read_kernel(&si->hash, 4, (char *)skb + OFF_SKB_HASH);
	bpf_probe_read_kernel(&si->mark, 4, (char *)skb + OFF_SKB_MARK);
	bpf_probe_read_kernel(&si->priority, 4, (char *)skb + OFF_SKB_PRIORITY);
	char *head = read_ptr((char *)skb + OFF_SKB_HEAD);
	u16 l3 = 0xffff;
	bpf_probe_read_kernel(&l3, 2, (char *)skb + OFF_SKB_NETWORK_HEADER);
	u8 first = 0;
	if (!head || l3 == 0xffff || bpf_probe_read_kernel(&first, 1, head + l3) < 0)
		return;
	char *ip = head + l3;
	u8 proto = 0;
	u32 l4;
	if (first >> 4 == 4) {
		si->family = 2;
		bpf_probe_read_kernel(&proto, 1, ip + 9);
		bpf_probe_read_kernel(si->saddr, 4, ip + 12);
		bpf_probe_read_kernel(si->daddr, 4, ip + 16);
		l4 = (first & 0xf) * 4;
	} else if (first >> 4 == 6) {
		si->family = 10;
		bpf_probe_read_kernel(si->saddr, 16, ip + 8);
		bpf_probe_read_kernel(si->daddr, 16, ip + 24);
		bpf_probe_read_kernel(&proto, 1, ip + 6);
		l4 = 40;
		/* Hop-by-hop, routing, fragment, authentication and destination
		 * options headers: (next header, length) first. */
#pragma clang loop unroll(disable)
		for (int i = 0; i < G_IP6_EXTS; i++) {
			u8 ext[2] = {};
			if (proto != 0 && proto != 43 && proto != 44 && proto != 51 && proto != 60)
				break;
			if (bpf_probe_read_kernel(ext, 2, ip + (l4 & 0x3ff)) < 0) {
				proto = 0;
				break;
			}
			if (proto == 44)
				l4 += 8;
			else if (proto == 51)
				l4 += (ext[1] + 2) * 4;
			else
				l4 += (ext[1] + 1) * 8;
			proto = ext[0];
		}
	} else {
		return;
	}
	si->protocol = proto;
	if (proto == 6 /* TCP */ || proto == 17 /* UDP */) {
		u16 ports[2] = {};
		bpf_probe_read_kernel(ports, 4, ip + (l4 & 0x3ff));
		si->sport = (ports[0] >> 8) | (ports[0] << 8);
		si->dport = (ports[1] >> 8) | (ports[1] << 8);
	}
}
#endif
#endif

/* user ? bpf_probe_read_user : bpf_probe_read_kernel (constant when inlined). */
static __always_inline long read_mem(void *dst, u32 size, void *src, bool user)
{
	return user ? bpf_probe_read_user(dst, size, src) : bpf_probe_read_kernel(dst, size, src);
}

/* struct sockaddr (user or kernel memory): both ends of the slot get its
 * address, so S* and D* predicates both see it (connect names the peer,
 * bind the local end). */
static __always_inline void slot_sockaddr(struct g_slot *s, void *addr, s64 len, bool user)
{
	struct g_sockinfo *si = (struct g_sockinfo *)s->data;
	u16 port = 0;
	__builtin_memset(si, 0, sizeof(*si));
	if (!addr || read_mem(&si->family, 2, addr, user) < 0) {
		s->flags |= G_SLOT_ERROR;
		return;
	}
	s->ival = len;
	if (si->family == 2 /* AF_INET */) {
		read_mem(&port, 2, (char *)addr + 2, user);
		read_mem(si->daddr, 4, (char *)addr + 4, user);
		__builtin_memcpy(si->saddr, si->daddr, 4);
	} else if (si->family == 10 /* AF_INET6 */) {
		read_mem(&port, 2, (char *)addr + 2, user);
		read_mem(si->daddr, 16, (char *)addr + 8, user);
		__builtin_memcpy(si->saddr, si->daddr, 16);
	}
	si->dport = si->sport = (port >> 8) | (port << 8);
	s->len = sizeof(*si);
}

#define UNIX_PATH_MAX 108

/* struct sockaddr_un (user or kernel memory): the family in `ival`, the
 * path in `data` as a string, so string predicates see it. An abstract name
 * (a leading NUL) is marked G_SLOT_ABSTRACT (events show it with Tetragon's
 * leading '@'); it is not NUL-terminated, so the caller's address length
 * `len` (when the hook has one) bounds it: the bytes after it are whatever
 * the caller's buffer held. Without a length it ends at the next NUL. */
static __always_inline void slot_sockaddr_un(struct g_slot *s, void *addr, s64 len, bool user)
{
	u16 family = 0;
	char first = 0;
	if (!addr || read_mem(&family, 2, addr, user) < 0 ||
	    read_mem(&first, 1, (char *)addr + 2, user) < 0) {
		s->flags |= G_SLOT_ERROR;
		return;
	}
	s->ival = family;
	char *path = (char *)addr + 2;
	if (!first) {
		s->flags |= G_SLOT_ABSTRACT;
		path++;
		if (len > 0) {
			/* family (2 bytes) and the leading NUL precede the name */
			s64 n = len - 3;
			if (n <= 0)
				return;
			if (n > UNIX_PATH_MAX - 1)
				n = UNIX_PATH_MAX - 1;
			if (read_mem(s->data, n & 127, path, user) < 0)
				s->flags |= G_SLOT_ERROR;
			else
				s->len = n & 127;
			return;
		}
	}
	long n = user ? bpf_probe_read_user_str(s->data, UNIX_PATH_MAX, path)
		      : bpf_probe_read_kernel_str(s->data, UNIX_PATH_MAX, path);
	if (n > 0)
		s->len = (n - 1) & G_STR_MASK;
}

/* A string read into a slot: its length without the NUL, truncation marked. */
static __always_inline void string_read(struct g_slot *s, long n)
{
	if (n < 0) {
		s->flags |= G_SLOT_ERROR;
	} else if (n > 0) {
		s->len = (n - 1) & G_STR_MASK;
		if (n == G_STR_MAX)
			s->flags |= G_SLOT_TRUNC;
	}
}

static __always_inline void read_ubuf(struct g_slot *s, u64 ptr, s64 want)
{
	u32 n = want < 0 ? 0 : (want > G_STR_MAX ? G_STR_MAX : want);
	s->ival = want;
	if (want > G_STR_MAX)
		s->flags |= G_SLOT_TRUNC;
	if (n && bpf_probe_read_user(s->data, n & (G_STR_MAX * 2 - 1), (void *)ptr) < 0)
		s->flags |= G_SLOT_ERROR;
	else
		s->len = n;
}

static __always_inline s64 arg_or(struct g_state *st, u8 index, s64 otherwise)
{
	return index < G_MAX_ARGV ? (s64)st->args[index & (G_MAX_ARGV - 1)] : otherwise;
}

/* Bytes at `ptr` in user memory, or (a kprobe's char_buf, which may point
 * either way) in kernel memory. */
static __always_inline void read_buf(struct g_slot *s, u64 ptr, s64 want)
{
	u32 n = want < 0 ? 0 : (want > G_STR_MAX ? G_STR_MAX : want);
	s->ival = want;
	if (want > G_STR_MAX)
		s->flags |= G_SLOT_TRUNC;
	n &= G_STR_MAX * 2 - 1;
	if (n && bpf_probe_read_user(s->data, n, (void *)ptr) < 0 &&
	    bpf_probe_read_kernel(s->data, n, (void *)ptr) < 0)
		s->flags |= G_SLOT_ERROR;
	else
		s->len = n;
}

/* The bytes of up to G_IOVEC_MAX entries of a struct iovec array in user
 * memory, one after the other; ival: the bytes they hold in all. Unrolled,
 * in a stage of its own (S_IOVEC): 6.1's verifier, walking a loop here
 * inside g_read with every slot kind around it, gave up ("the sequence of
 * 8193 jumps is too complex"). */
static __always_inline void read_iovec(struct g_slot *s, u64 iov, s64 count)
{
	u32 pos = 0;
	s64 total = 0;
	bool stop = false;
	if (count > G_IOVEC_MAX)
		s->flags |= G_SLOT_TRUNC;
	/* Eight rounds whatever the count (no early exit): clang unrolls
	 * them all, and there is no loop left for the verifier to bound. */
#pragma clang loop unroll(full)
	for (u32 i = 0; i < G_IOVEC_MAX; i++) {
		if (stop || i >= count)
			continue;
		u64 vec[2] = {};
		if (bpf_probe_read_user(vec, sizeof(vec), (void *)(iov + 16 * i)) < 0) {
			s->flags |= G_SLOT_ERROR;
			stop = true;
			continue;
		}
		total += vec[1];
		u32 room = G_STR_MAX - pos;
		u64 n = vec[1] < room ? vec[1] : room;
		BARRIER_VAR(n);
		n &= G_STR_MAX * 2 - 1;
		if (n && bpf_probe_read_user(&s->data[pos & G_STR_MASK], n, (void *)vec[0]) < 0) {
			s->flags |= G_SLOT_ERROR;
			stop = true;
			continue;
		}
		pos += n;
	}
	if (total > pos)
		s->flags |= G_SLOT_TRUNC;
	s->ival = total;
	s->len = pos & (G_STR_MAX * 2 - 1);
}

/* The raw value a slot starts from: the call's argument, or a tracepoint
 * record's field. */
static __always_inline u64 raw_value(void *ctx, struct g_state *st, struct g_slot_desc *d)
{
	u64 v = 0;
	if (st->ck == CK_TRACEPOINT)
		bpf_probe_read_kernel(&v, sizeof(v), (char *)ctx + d->src);
	else
		v = st->args[d->src & (G_MAX_ARGV - 1)];
	return v;
}

/* Reads one slot. Returns whether a read of user memory failed (a NULL
 * pointer is no value to read, not an unreadable one). `iovec` (a
 * constant): the slot is a GA_IOVEC, read in S_IOVEC; without it every
 * other kind is read (S_READ). */
static __always_inline bool read_slot(void *ctx, struct g_scratch *sc, struct g_slot_desc *d, u32 i,
				      bool iovec)
{
	struct g_state *st = &sc->st;
	struct g_slot *s = &st->slots[at(i, G_SLOT_MASK)];
	u8 kind = d->kind;
	u64 v;
	if (st->has_stepped) {
		/* S_STEPS walked to the value (flags: BADPTR) and gathered. */
		v = st->stepped;
		st->has_stepped = 0;
		if (kind == GA_GATHER) {
			s->len = d->size;
			return (s->flags & G_SLOT_ERROR) && v;
		}
	} else {
		s->flags = 0;
		s->len = 0;
		s->ival = 0;
		if (d->flags & GS_RETVAL)
			return false;           /* the return value: read at return */
		v = raw_value(ctx, st, d);
	}
	if (iovec) {
		read_iovec(s, v, arg_or(st, d->sizesrc, 1));
		return (s->flags & G_SLOT_ERROR) && v;
	}
	if (kind == GA_INT) {
		if (!(s->flags & G_SLOT_BADPTR))
			s->ival = extend(v, d->size, d->flags & GS_SIGNED);
		return false;
	}
	if (kind == GA_USTR) {
		string_read(s, bpf_probe_read_user_str(s->data, G_STR_MAX, (void *)v));
		return (s->flags & G_SLOT_ERROR) && v;
	}
	if (kind == GA_KSTR) {
		string_read(s, bpf_probe_read_kernel_str(s->data, G_STR_MAX, (void *)v));
		return false;
	}
	if (kind == GA_DATALOC) {
		string_read(s, bpf_probe_read_kernel_str(s->data, G_STR_MAX,
							 (char *)ctx + ((u32)v & 0xffff)));
		return false;
	}
	if (kind == GA_UBUF) {
		s64 want = arg_or(st, d->sizesrc, G_STR_MAX);
		if (d->flags & GS_RETCOPY) {
			s->ival = want;
			return false;           /* read at return */
		}
		read_ubuf(s, v, want);
		return (s->flags & G_SLOT_ERROR) && v;
	}
	if (kind == GA_BUF) {
		read_buf(s, v, arg_or(st, d->sizesrc, G_STR_MAX));
		return false;
	}
	if (kind == GA_ITER) {
		/* Tetragon's view of an iov_iter: an ITER_UBUF's buffer, or an
		 * ITER_IOVEC's first vector; nothing of other kinds. */
		u8 type = s->data[0];
		u64 count = *(u64 *)&s->data[8], ptr = *(u64 *)&s->data[16];
		s->len = 0;
		if (s->flags & G_SLOT_BADPTR)
			return false;
		if (type == d->size) {
			u64 vec[2] = {};
			bpf_probe_read_kernel(vec, sizeof(vec), (void *)ptr);
			ptr = vec[0];
			count = vec[1];
		} else if (type != d->sizesrc) {
			return false;
		}
		read_ubuf(s, ptr, count);
		return false;
	}
	if (kind == GA_USOCKADDR) {
		slot_sockaddr(s, (void *)v, arg_or(st, d->sizesrc, 0), true);
		return (s->flags & G_SLOT_ERROR) && v;
	}
	if (kind == GA_KSOCKADDR) {
		slot_sockaddr(s, (void *)v, arg_or(st, d->sizesrc, 0), false);
		return false;
	}
	if (kind == GA_USOCKADDR_UN) {
		slot_sockaddr_un(s, (void *)v, arg_or(st, d->sizesrc, 0), true);
		return (s->flags & G_SLOT_ERROR) && v;
	}
	if (kind == GA_KSOCKADDR_UN) {
		slot_sockaddr_un(s, (void *)v, arg_or(st, d->sizesrc, 0), false);
		return false;
	}
#ifndef TETRAD_NO_BTF
	if (d->flags & GS_RETVAL)
		return false;           /* read at return */
	if (kind == GA_SOCK) {
		slot_sock(s, (void *)v);
		return false;
	}
#ifdef OFF_SOCKET_SK
	if (kind == GA_SOCKET) {
		slot_socket(s, (void *)v);
		return false;
	}
#endif
#ifdef G_HAS_SKB
	if (kind == GA_SKB) {
		slot_skb(s, (void *)v);
		return false;
	}
#endif
#ifdef OFF_NETDEV_NAME
	if (kind == GA_NETDEV) {
		/* char name[IFNAMSIZ] */
		string_read(s, bpf_probe_read_kernel_str(s->data, 16, (char *)v + OFF_NETDEV_NAME));
		return false;
	}
#endif
	void *file = NULL, *dentry = NULL, *mnt = NULL;
	if (kind == GA_FD) {
		s->ival = (s32)v;
		file = fd_file((s32)v);
	} else if (kind == GA_FILE) {
		file = (void *)v;
	} else if (kind == GA_PATH) {
		dentry = read_ptr((char *)v + OFF_PATH_DENTRY);
		mnt = read_ptr((char *)v + OFF_PATH_MNT);
	} else if (kind == GA_DENTRY) {
		dentry = (void *)v;
	} else {
		return false;
	}
	if (file) {
		dentry = read_ptr((char *)file + OFF_FILE_F_PATH + OFF_PATH_DENTRY);
		mnt = read_ptr((char *)file + OFF_FILE_F_PATH + OFF_PATH_MNT);
	}
	u16 walked = s->flags & (G_SLOT_BADPTR | 0xff00);
	walk_into(sc, dentry, mnt, kind != GA_DENTRY);
	walked_into(sc, s);
	s->flags |= walked;
#endif
	return false;
}

/* ---- predicates --------------------------------------------------------------- */

static __always_inline void or_bits(u64 *hits, struct g_bits *b)
{
	if (!b)
		return;
#pragma unroll
	for (int w = 0; w < G_WORDS; w++)
		hits[w] |= b->w[w];
}

static __always_inline u32 trie_id(u32 point, u32 table, u32 slot)
{
	return point << 8 | table << 4 | slot;
}

/* Equal and Prefix values are in one trie, Equal values with their NUL so
 * that their longest match is an exact one; the key is the string with its
 * NUL when that fits. */
static __always_inline struct g_bits *fwd_lookup(struct g_scratch *sc, u32 id, char *data, u32 len)
{
	struct g_lpm_str_key *k = &sc->skey;
	u32 n = len + 1 > G_LPM_STR ? G_LPM_STR : len + 1;
	k->id = id;
	k->prefixlen = 32 + 8 * n;
	bpf_probe_read_kernel(k->data, G_LPM_STR, data);
	if (len < G_LPM_STR)
		k->data[len & G_STR_MASK] = 0;
	return str_fwd.lookup(k);
}

/* Postfix values are stored reversed; so is the key (the string's last
 * bytes). Every byte of the first G_POSTFIX_MAX is written: a loop that
 * stops at len leaves the verifier one path per length (path_walk.h). */
static __always_inline struct g_bits *rev_lookup(struct g_scratch *sc, u32 id, char *data, u32 len)
{
	struct g_lpm_str_key *k = &sc->skey;
	if (len > G_POSTFIX_MAX)
		len = G_POSTFIX_MAX;
	/* The last byte's index goes through map memory, so the verifier
	 * knows nothing of it and the mask alone bounds each index: 6.1's
	 * verifier, tracking `last - i` exactly, ends with inverted bounds
	 * and refuses the access. */
	sc->rev_last = len - 1;
	k->id = id;
	k->prefixlen = 32 + 8 * len;
#pragma clang loop unroll(disable)
	for (int i = 0; i < G_POSTFIX_MAX; i++)
		k->data[i & (G_POSTFIX_MAX - 1)] = data[(LAUNDER(sc->rev_last) - i) & G_STR_MASK];
	return str_rev.lookup(k);
}

static __always_inline struct g_bits *addr_lookup(struct g_scratch *sc, u32 id,
						  struct g_sockinfo *si, bool source)
{
	struct g_lpm_addr_key *k = &sc->akey;
	k->id = id;
	k->family = si->family;
	__builtin_memset(k->addr, 0, 16);
	if (si->family == 10) {
		k->prefixlen = 32 + 8 + 128;
		__builtin_memcpy(k->addr, source ? si->saddr : si->daddr, 16);
	} else {
		k->prefixlen = 32 + 8 + 32;
		__builtin_memcpy(k->addr, source ? si->saddr : si->daddr, 4);
	}
	return cidr.lookup(k);
}

/* Whether x satisfies op against any value (ranges: (lo, hi) pairs). */
static __always_inline bool int_match(struct g_ipred *q, u8 op, s64 x)
{
	s64 *vals = q->vals;
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < G_MAX_VALUES; i++) {
		if (i >= BOUND(q->nvals))
			break;
		s64 v = vals[at(i, G_MAX_VALUES - 1)];
		if (op == G_OP_MASK) {
			if (x & v)
				return true;
		} else if (op == G_OP_GT) {
			if (x > v)
				return true;
		} else if (op == G_OP_LT) {
			if (x < v)
				return true;
		} else if (op == G_OP_INRANGE) {
			if (!(i & 1) && x >= v && x <= vals[at(i + 1, G_MAX_VALUES - 1)])
				return true;
		} else if (x == v) {
			return true;
		}
	}
	return false;
}

static __always_inline bool ipred_holds(struct g_slot *s, struct g_ipred *q)
{
	struct g_sockinfo *si = (struct g_sockinfo *)s->data;
	s64 x = s->ival;
	u8 op = q->op;
	if (op == G_OP_SPORT) {
		x = si->sport;
		op = G_OP_INRANGE;
	} else if (op == G_OP_DPORT) {
		x = si->dport;
		op = G_OP_INRANGE;
	} else if (op == G_OP_PROTOCOL) {
		x = si->protocol;
		op = G_OP_INRANGE;
	} else if (op == G_OP_FAMILY) {
		x = si->family;
		op = G_OP_INRANGE;
	} else if (op == G_OP_STATE) {
		x = si->state;
		op = G_OP_INRANGE;
	}
	return int_match(q, op, x);
}

/* ---- the caller -------------------------------------------------------------- */

/* matchBinaries predicates that hold: one lookup per trie on the process's
 * binary from execve_map (an unknown process: none holds). */
static __always_inline u64 binary_bits(struct g_scratch *sc, struct g_point *p, u32 point)
{
	struct g_state *st = &sc->st;
	u32 tgid = st->pid;
	struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
	if (!e)
		return 0;
	st->proc_ktime = e->key.ktime;
	u32 len = e->bin_len & G_STR_MASK;
	bpf_probe_read_kernel(sc->bin, G_STR_MAX, e->binary);
	u64 bits = 0;
	struct g_bits *b = fwd_lookup(sc, trie_id(point, G_TRIE_FWD, G_BINARY_SLOT), sc->bin, len);
	if (b)
		bits |= b->w[0];
	if (!(p->flags & G_POINT_BIN_REV))
		return bits;
	b = rev_lookup(sc, trie_id(point, G_TRIE_REV, G_BINARY_SLOT), sc->bin, len);
	if (b)
		bits |= b->w[0];
	return bits;
}

/* matchPIDs predicates that hold (pid_sel). */
static __always_inline u64 pid_bits(struct g_state *st, struct g_point *p, u32 point)
{
	struct g_pid_key key = {.point = point, .pid = st->pid};
	struct g_pid_bits *b = pid_sel.lookup(&key);
	u64 bits = b ? b->pid | b->forks : 0;
	if (p->flags & G_POINT_FORKS) {
		/* followForks: a descendant of a listed pid matches too. */
		u32 pid = st->pid;
#pragma clang loop unroll(disable)
		for (int i = 0; i < G_ANCESTORS; i++) {
			struct tetrad_exec_entry *e = execve_map.lookup(&pid);
			if (!e || !e->parent.pid)
				break;
			pid = e->parent.pid;
			key.pid = pid;
			b = pid_sel.lookup(&key);
			if (b)
				bits |= b->forks;
		}
	}
#ifndef TETRAD_NO_BTF
	if (p->flags & G_POINT_NSPID) {
		/* isNamespacePID: the pid in the task's own pid namespace
		 * (task->thread_pid->numbers[level]). */
		void *pid = read_ptr((char *)bpf_get_current_task() + OFF_TASK_THREAD_PID);
		u32 level = 0;
		bpf_probe_read_kernel(&level, sizeof(level), (char *)pid + OFF_PID_LEVEL);
		key.pid = 0;
		bpf_probe_read_kernel(&key.pid, sizeof(key.pid),
				      (char *)pid + OFF_PID_NUMBERS + (level & 31) * SIZEOF_UPID);
		b = pid_sel.lookup(&key);
		if (b)
			bits |= b->nspid;
	}
#endif
	return bits;
}

static __always_inline bool caller_match(struct g_state *st, struct g_selector *sel)
{
	return (st->callerhits & sel->cpos) == sel->cpos && !(st->callerhits & sel->cneg);
}

/* Whether a workload-scoped hook (containerSelector/hostSelector) runs for
 * the current task: its cgroup is one user space selected for this hook. */
static __always_inline bool in_scope(struct g_state *st, struct g_hook *h)
{
	if (!(h->flags & G_HOOK_CGROUPS))
		return true;
	if (!st->cgroup_id)
		st->cgroup_id = bpf_get_current_cgroup_id();
	struct g_cgroup_key key = {};
	key.cgroup_id = st->cgroup_id;
	key.hook_id = h->id;
	return cgroup_sel.lookup(&key) != NULL;
}

/* Positions of the point's hooks that want this caller: active, in scope,
 * and with a selector whose caller masks hold (or no selector). */
static __always_inline void wanted_hooks(struct g_state *st, struct g_point *p)
{
	/* Accumulated in map memory, not a register: the verifier does not
	 * track its value, so it walks each hook once, not once per
	 * combination of the hooks before it. */
	st->wanted = 0;
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < G_POINT_HOOKS; i++) {
		if (i >= BOUND(p->nhooks))
			break;
		u32 id = p->hooks[at(i, G_POINT_HOOKS - 1)];
		struct g_hook *h = hooks.lookup(&id);
		if (!h || !(h->flags & G_HOOK_ACTIVE) || !in_scope(st, h))
			continue;
		bool want = h->nsel == 0;
#pragma clang loop unroll(disable)
		for (u32 s = 0; s < G_MAX_SEL; s++) {
			if (want || s >= BOUND(h->nsel))
				break;
			want = caller_match(st, &h->sel[at(s, G_MAX_SEL - 1)]);
		}
		if (want)
			LAUNDER(st->wanted) |= 1u << i;
	}
}

#if G_PROG_TYPE == G_TYPE_KPROBE
/* A USDT probe's arguments into st->args, each as its note's spec says:
 * a constant, a register, or user memory at a register plus a displacement
 * (plus an index register times a scale), `size` bytes extended by sign. */
static __always_inline void usdt_fetch(struct g_state *st, struct pt_regs *regs, u32 lpoint)
{
	struct g_usdt *u = usdt_specs.lookup(&lpoint);
	if (!u)
		return;
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < G_MAX_ARGV; i++) {
		struct g_usdt_arg *a = &u->arg[at(i, G_MAX_ARGV - 1)];
		u8 kind = a->kind, size = a->size;
		u64 v = 0, base = 0, idx = 0;
		if (kind == G_USDT_CONST) {
			v = a->val;
		} else if (kind != G_USDT_NONE) {
			bpf_probe_read_kernel(&base, sizeof(base), (char *)regs + (a->reg & 0x3f8));
			if (kind == G_USDT_REG) {
				v = base;
			} else {
				if (kind == G_USDT_SIB) {
					bpf_probe_read_kernel(&idx, sizeof(idx), (char *)regs + (a->idx & 0x3f8));
					base += idx * a->scale;
				}
				void *at_addr = (void *)(base + a->val);
				if (size == 1)
					bpf_probe_read_user(&v, 1, at_addr);
				else if (size == 2)
					bpf_probe_read_user(&v, 2, at_addr);
				else if (size == 4)
					bpf_probe_read_user(&v, 4, at_addr);
				else
					bpf_probe_read_user(&v, 8, at_addr);
			}
		}
		st->args[at(i, G_MAX_ARGV - 1)] = extend(v, size, a->is_signed);
	}
}
#endif

/* The start of every call: the caller's predicates and the hooks that want
 * it; then, when some do, the raw values and the first stage. */
static __always_inline int begin(void *ctx, u32 ck, u32 lpoint)
{
	u32 *ref = point_ref.lookup(&lpoint);
	if (!ref)
		return 0;
	u32 point = *ref;
	struct g_point *p = points.lookup(&point);
	if (!p || !(p->flags & G_POINT_ACTIVE))
		return 0;
	struct g_scratch *sc = get_scratch();
	if (!sc)
		return 0;
	struct g_state *st = &sc->st;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	st->pid = pid_tgid >> 32;
	st->tid = (u32)pid_tgid;
	st->point = point;
	st->lpoint = lpoint;
	st->ck = ck;
	st->proc_ktime = 0;
	st->cgroup_id = 0;
	st->callerhits = 0;
	st->retval = 0;
	st->verdict = 0;
	st->at_return = 0;
	st->deferred = 0;
	if (p->flags & G_POINT_BINARY)
		st->callerhits |= binary_bits(sc, p, lpoint);
	if (p->flags & G_POINT_PIDS)
		st->callerhits |= pid_bits(st, p, lpoint);
	bool state = p->flags & G_POINT_STATE;
	if (!state) {
		wanted_hooks(st, p);
		if (!LAUNDER(st->wanted))
			return 0;
	}
	st->failed = 0;
	st->iter = 0;
	st->has_stepped = 0;
	st->nr = 0;
	st->sysnr = TETRAD_ANY_SYSCALL;
	if (!(ck == CK_SYSCALL) && (p->flags & G_POINT_SYSNR))
		/* raw_syscalls:sys_enter as a tracepoint: its `id` follows the
		 * 8 bytes of common fields. Through a helper, as below: g_tp
		 * also attaches to records of 8 bytes. */
		bpf_probe_read_kernel(&st->sysnr, sizeof(st->sysnr), (char *)ctx + 8);
	if (ck == CK_SYSCALL) {
		/* perf_call_bpf_enter: 8 bytes, the syscall number, then each
		 * argument in 8 bytes (raw_syscalls:sys_enter has the same
		 * layout). Through a helper: a direct read past the syscall's
		 * own arguments would make the kernel refuse to attach the
		 * program to a syscall with fewer (max_ctx_offset). */
		st->nr = *(u32 *)((char *)ctx + 8);     /* within every record */
		st->sysnr = st->nr;
		bpf_probe_read_kernel(st->args, 6 * sizeof(u64), (char *)ctx + 16);
	}
#if G_PROG_TYPE == G_TYPE_KPROBE
	if (ck == CK_REGS) {
		struct pt_regs *regs = ctx;
		st->args[0] = PT_REGS_PARM1(regs);
		st->args[1] = PT_REGS_PARM2(regs);
		st->args[2] = PT_REGS_PARM3(regs);
		st->args[3] = PT_REGS_PARM4(regs);
		st->args[4] = PT_REGS_PARM5(regs);
		st->args[5] = PT_REGS_PARM6(regs);
	}
	if (ck == CK_USDT)
		usdt_fetch(st, ctx, lpoint);
#endif
	if (ck == CK_ARRAY)
		/* Through a helper: the verifier refuses a direct read past the
		 * hook's own arguments, which differ per attach point. */
		bpf_probe_read_kernel(st->args, 6 * sizeof(u64), ctx);
	if (state) {
		stages.call(ctx, S_STATE);
		return tail_missed(S_STATE);
	}
	stages.call(ctx, S_READ);
	return tail_missed(S_READ);
}

/* ---- the caller's namespaces and capabilities ------------------------------------ */

#ifdef TETRAD_HAVE_STATE
/* Whether a state predicate holds for the caller (`st->cur`); `base` is
 * its image's start (execve_map's exec_state), NULL when unknown: then no
 * change predicate holds. */
static __always_inline bool spred_holds(struct g_state *st, struct g_spred *q,
					struct tetrad_proc_state *base)
{
	struct tetrad_proc_state *c = &st->cur;
	u8 kind = q->kind;
	if (kind == G_SP_NS) {
		u32 ns = q->index;
		if (ns >= TETRAD_NS_COUNT)
			return false;
		u32 inum = c->ns[at(ns, 15)];
#pragma unroll
		for (int j = 0; j < G_SPRED_VALUES; j++)
			if (j < q->nvals && inum == q->vals[j])
				return true;
		return false;
	}
	if (kind == G_SP_NSCHG) {
		if (!base)
			return false;
		bool changed = false;
#pragma unroll
		for (int j = 0; j < TETRAD_NS_COUNT; j++)
			/* 0: the kernel has no such namespace, or it was not known */
			if ((q->mask >> j & 1) && base->ns[j] && base->ns[j] != c->ns[j])
				changed = true;
		return changed;
	}
	/* isNamespaceCapability: never in the host's user namespace */
	if (q->userns && c->ns[TETRAD_NS_USER] == q->userns)
		return false;
	u32 set = q->index;
	if (set > TETRAD_CAPS_INHERITABLE)
		return false;
	set = at(set, 3);
	u64 now = c->caps[set], mask = q->mask;
	if (kind == G_SP_CAPS_IN)
		return (now & mask) != 0;
	if (kind == G_SP_CAPS_NOTIN)
		return (now & mask) == 0;
	if (!base)
		return false;
	u64 then = base->caps[set];
	if (kind == G_SP_CAPCHG_IN)
		return (then & mask) != (now & mask);
	if (kind == G_SP_CAPCHG_NOTIN)
		return (then & mask) == (now & mask) && then != now;
	return false;
}

/* After a selector with matchNamespaceChanges/matchCapabilityChanges chose
 * a call, changes count from what the caller has now. */
static __always_inline void rebase(struct g_state *st, u8 chg)
{
	u32 tgid = st->pid;
	struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
	if (!e)
		return;
	if (chg & G_SEL_NSCHG)
		__builtin_memcpy(e->exec_state.ns, st->cur.ns, sizeof(st->cur.ns));
	if (chg & G_SEL_CAPCHG)
		__builtin_memcpy(e->exec_state.caps, st->cur.caps, sizeof(st->cur.caps));
}
#endif

/* ---- selection ------------------------------------------------------------------ */

/* Whether the selector's argument masks hold: every `pos` predicate holds,
 * no `neg` one does. A predicate on an unreadable slot holds either way,
 * unless the hook says no-match: then any mask on it fails. Branch-free,
 * so the verifier walks one path per selector. */
static __always_inline bool masks_hold(struct g_state *st, struct g_selector *sel, bool nomatch)
{
	u64 strict = nomatch ? ~0ULL : 0;
	u64 bad = 0;
#pragma unroll
	for (int w = 0; w < G_WORDS; w++) {
		u64 unk = st->unknown[w];
		u64 known = st->hits[w] & ~unk;
		u64 pos = sel->pos[w], neg = sel->neg[w];
		bad |= known & neg;
		/* A return value's tests hold until it is known. */
		bad |= pos & ~(known | (unk & ~strict) | st->later[w]);
		bad |= (pos | neg) & unk & strict;
	}
	return bad == 0;
}

/* Index of the hook's first selector that holds, ALL_SEL for a hook without
 * selectors (Tetragon: no selector => Post), or NO_SEL. */
static __always_inline u8 select_hook(struct g_state *st, struct g_hook *h)
{
	if (h->nsel == 0)
		return ALL_SEL;
	bool nomatch = h->flags & G_HOOK_UNREADABLE_NOMATCH;
#pragma clang loop unroll(disable)
	for (u32 s = 0; s < G_MAX_SEL; s++) {
		if (s >= BOUND(h->nsel))
			break;
		struct g_selector *sel = &h->sel[at(s, G_MAX_SEL - 1)];
		if (caller_match(st, sel) && masks_hold(st, sel, nomatch))
			return s;
	}
	return NO_SEL;
}

/* ---- actions ----------------------------------------------------------------- */

static __always_inline struct g_slot *arg_slot(struct g_state *st, struct g_hook *h, u32 j)
{
	return &st->slots[h->argslot[at(j, 7)] & G_SLOT_MASK];
}

/* TrackSock (the sock at `sk` -> this process, in the hook's policy's
 * scope) or UntrackSock. As Tetragon, a process not in execve_map is not
 * recorded as an owner. */
static __always_inline void track_sock(struct g_state *st, u32 scope, u64 sk, bool track)
{
	struct g_sock_key key = {};
	if (!sk || !scope)
		return;
	key.sk = sk;
	key.scope = scope;
	if (!track) {
		socktrack.delete(&key);
		return;
	}
	if (!st->proc_ktime) {
		u32 tgid = st->pid;
		struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
		if (!e)
			return;
		st->proc_ktime = e->key.ktime;
	}
	struct g_sock_owner owner = {.pid = st->pid, .tid = st->tid, .ktime = st->proc_ktime};
	socktrack.update(&key, &owner);
}

/* The record's process: the owner of a sock argument that the hook's
 * policy tracks (the last such argument), as Tetragon reports network
 * calls made in another task's context (softirq) for the process that owns
 * the socket. */
static __always_inline void sock_owner(struct g_msg *msg, struct g_hook *h)
{
	struct g_sock_key key = {};
	key.scope = h->track;
#pragma clang loop unroll(disable)
	for (u32 j = 0; j < G_MAX_ARGS; j++) {
		if (j >= BOUND(h->nargs))
			break;
		if (!(h->sockargs & (1u << j)))
			continue;
		struct g_sockinfo *si = (struct g_sockinfo *)msg->slots[j].data;
		key.sk = si->cookie;
		struct g_sock_owner *owner = socktrack.lookup(&key);
		if (owner) {
			msg->pid = owner->pid;
			msg->tid = owner->tid;
			msg->proc_ktime = owner->ktime;
		}
	}
}

static __always_inline bool rate_limited(struct g_state *st, struct g_hook *h, u32 sel, u32 seconds)
{
	/* Key: hook, selector, process and the first bytes of each argument. */
	u64 k = 14695981039346656037ULL ^ ((u64)h->id << 40 | (u64)sel << 32 | st->pid);
#pragma clang loop unroll(disable)
	for (u32 j = 0; j < G_MAX_ARGS; j++) {
		if (j >= BOUND(h->nargs))
			break;
		struct g_slot *s = arg_slot(st, h, j);
		k = (k ^ (u64)s->ival) * 1099511628211ULL;
		u64 head = 0;
		__builtin_memcpy(&head, s->data, 8);
		k = (k ^ head) * 1099511628211ULL;
	}
	u64 now = bpf_ktime_get_ns();
	u64 *last = rate_limits.lookup(&k);
	if (last && now - *last < (u64)seconds * 1000000000ULL)
		return true;
	rate_limits.update(&k, &now);
	return false;
}

/* The record: the hook's own arguments, in its order. */
#if G_PROG_TYPE == G_TYPE_TP || G_PROG_TYPE == G_TYPE_KPROBE
/* Kernel and user stacks of kprobe and syscall hooks (Tetragon reports
 * them on process_kprobe only). */
BPF_STACK_TRACE(stacks, G_STACKS);
#define G_HAS_STACKS 1
#else
#define G_HAS_STACKS 0
#endif

static __always_inline void post(void *ctx, struct g_scratch *sc, struct g_hook *h, u8 sel,
				 u8 action, u8 flags, u8 stack)
{
	struct g_state *st = &sc->st;
	struct g_msg *msg = &sc->out;
	u32 zero = 0;
	struct g_hook_stats *stats = stats_of(h->id);
	u32 *shedding = shed.lookup(&zero);
	if (shedding && *shedding) {
		if (stats)
			__sync_fetch_and_add(&stats->shed, 1);
		return;
	}
	if (!st->proc_ktime) {
		u32 tgid = st->pid;
		struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
		st->proc_ktime = e ? e->key.ktime : 0;
	}
	u32 n = h->nargs;
	if (n > G_MAX_ARGS)
		n = G_MAX_ARGS;
#pragma clang loop unroll(disable)
	for (u32 j = 0; j < G_MAX_ARGS; j++) {
		if (j >= BOUND(h->nargs))
			break;
		/* Too big for an inline copy: the helper copies map memory. */
		bpf_probe_read_kernel(&msg->slots[j], sizeof(struct g_slot), arg_slot(st, h, j));
	}
	/* Only the slots this hook has: a one-argument record is a quarter of
	 * a full one, so four times as many fit in the ring buffer. */
	u32 size = offsetof(struct g_msg, slots) + n * sizeof(struct g_slot);
	msg->hdr.op = TETRAD_OP_GENERIC;
	msg->hdr.size = size;
	msg->hdr.cpu = bpf_get_smp_processor_id();
	msg->hdr.ktime = bpf_ktime_get_ns();
	msg->obj_id = OBJ_ID;
	msg->hook_id = h->id;
	msg->pid = st->pid;
	msg->tid = st->tid;
	msg->proc_ktime = st->proc_ktime;
	msg->retval = flags & G_MSG_RETURN ? st->retval : 0;
	msg->selector = sel;
	msg->action = action;
	msg->flags = flags;
	msg->nslots = n;
	msg->kstack = G_NO_STACK;
	msg->ustack = G_NO_STACK;
#if G_HAS_STACKS
	if (stack & G_STACK_KERNEL)
		msg->kstack = stacks.get_stackid(ctx, 0);
	if (stack & G_STACK_USER)
		msg->ustack = stacks.get_stackid(ctx, BPF_F_USER_STACK);
#endif
	if (h->track && h->sockargs)
		sock_owner(msg, h);
	msg->nr = st->nr;
	if (events.ringbuf_output(msg, size, TETRAD_RB_FLAGS) < 0) {
		if (stats)
			__sync_fetch_and_add(&stats->dropped, 1);
	} else if (stats) {
		__sync_fetch_and_add(&stats->posted, 1);
	}
}

/* Runs a chosen selector's actions; returns the LSM/override verdict (0 or
 * a negative errno). */
/* A decision for the enforcer on the syscall this thread is entering (or,
 * outside a syscall's entry, its next enforced one): bpf/enforcer.c.
 * Never at a return: the syscall has run by then, and the note would hit
 * the thread's next call instead. */
static __always_inline void leave_note(struct g_state *st, struct g_hook *h, s32 error, u32 sig)
{
	if (st->at_return)
		return;
	struct tetrad_enforce_note note = {.error = error, .sig = sig, .nr = st->sysnr,
					   .hook_id = h->id};
	u64 id = (u64)st->pid << 32 | st->tid;
	enforce_notes.update(&id, &note);
}

static __always_inline int run_actions(void *ctx, struct g_scratch *sc, struct g_hook *h, u8 sel,
				       struct g_action *acts, u8 *nact, u8 msg_flags)
{
	struct g_state *st = &sc->st;
	bool monitor = h->flags & G_HOOK_MONITOR;
	bool do_post = true, limited = false;
	int verdict = 0;

	/* The event's action (the last that did something, an enforcing one
	 * before any other) and whether one enforced, kept in map memory: as
	 * registers, the verifier would walk the actions once per combination
	 * of their values. */
	LAUNDER(st->shown) = G_ACT_POST;
	LAUNDER(st->enforcing) = 0;
	LAUNDER(st->stack) = 0;

#pragma clang loop unroll(disable)
	for (u32 i = 0; i < G_MAX_ACTIONS; i++) {
		if (i >= BOUND(*nact))
			break;
		struct g_action *a = &acts[at(i, G_MAX_ACTIONS - 1)];
		u8 action = a->action;
		if (action == G_ACT_NOPOST) {
			do_post = false;
		} else if (action == G_ACT_POST) {
			LAUNDER(st->stack) |= a->stack;
			if (a->rate_limit_s && rate_limited(&sc->st, h, sel, a->rate_limit_s)) {
				do_post = false;
				limited = true;
			}
		} else if (action == G_ACT_SIGKILL || action == G_ACT_SIGNAL) {
			LAUNDER(st->shown) = action;
			LAUNDER(st->enforcing) = 1;
			if (!monitor)
				bpf_send_signal(action == G_ACT_SIGKILL ? 9 : a->arg);
		} else if (action == G_ACT_TRACKSOCK || action == G_ACT_UNTRACKSOCK) {
			/* argSock: a position in the hook's arguments, a sock. */
			struct g_sockinfo *si = (struct g_sockinfo *)arg_slot(st, h, a->arg)->data;
			if (!LAUNDER(st->enforcing))
				LAUNDER(st->shown) = action;
			track_sock(st, h->track, si->cookie, action == G_ACT_TRACKSOCK);
		} else if (action == G_ACT_GETURL || action == G_ACT_DNSLOOKUP) {
			/* User space does it when the record comes. */
			if (!LAUNDER(st->enforcing))
				LAUNDER(st->shown) = action;
		} else if (action == G_ACT_OVERRIDE) {
			LAUNDER(st->shown) = action;
			LAUNDER(st->enforcing) = 1;
			if (!monitor) {
				verdict = a->arg;
#if G_PROG_TYPE == G_TYPE_KPROBE && defined(G_OVERRIDE_RETURN)
				bpf_override_return(ctx, a->arg);
#endif
#if G_PROG_TYPE == G_TYPE_TP
				/* A syscall hook: the enforcer on the syscall's
				 * function returns the error. */
				leave_note(&sc->st, h, a->arg, 0);
#endif
			}
		} else if (action == G_ACT_NOTIFY) {
			LAUNDER(st->shown) = action;
			LAUNDER(st->enforcing) = 1;
			if (!monitor)
				leave_note(&sc->st, h, a->arg, a->arg2);
		}
		/* FollowFD/UnfollowFD: fds resolve from the fd table. */
	}
	bool enforcing = LAUNDER(st->enforcing);
	struct g_hook_stats *stats = stats_of(h->id);
	if (stats) {
		if (enforcing) {
			if (monitor)
				__sync_fetch_and_add(&stats->monitored, 1);
			else
				__sync_fetch_and_add(&stats->enforced, 1);
		}
		if (limited)
			__sync_fetch_and_add(&stats->rate_limited, 1);
	}
	if (do_post) {
		if (monitor && enforcing)
			msg_flags |= G_MSG_MONITOR;
		post(ctx, sc, h, sel, LAUNDER(st->shown), msg_flags, LAUNDER(st->stack));
	}
	return verdict;
}

/* The actions of selector `s` of a hook; for a return hook at its return,
 * matchReturnArgs first, then its return actions if it has any. */
static __always_inline int act(void *ctx, struct g_scratch *sc, struct g_hook *h, u8 s)
{
	bool ret = sc->st.at_return && (h->flags & G_HOOK_RETURN);
	u8 flags = ret ? G_MSG_RETURN : 0;
	if (ret && h->ret_action)
		/* returnArgAction: the returned sock, whatever matchReturnArgs says. */
		track_sock(&sc->st, h->track, sc->st.retval, h->ret_action == G_ACT_TRACKSOCK);
	if (s == ALL_SEL)
		/* No selector: no action, Post (h->nsel is 0 here). */
		return run_actions(ctx, sc, h, 0, h->sel[0].act, &h->nsel, flags);
	struct g_selector *sel = &h->sel[at(s, G_MAX_SEL - 1)];
#ifdef TETRAD_HAVE_STATE
	if (sel->chg)
		rebase(&sc->st, sel->chg);
#endif
	if (ret) {
		if (sel->has_ret && int_match(&sel->ret, sel->ret.op, sc->st.retval) ==
		    (bool)sel->ret.negate)
			return 0;
		if (sel->nret_act)
			return run_actions(ctx, sc, h, s, sel->ret_act, &sel->nret_act, flags);
	}
	return run_actions(ctx, sc, h, s, sel->act, &sel->nact, flags);
}

/* ---- returns --------------------------------------------------------------------- */

#if G_HAS_EXIT
/* Keeps the call's state for its return; false when the map is full. */
static __always_inline bool defer(struct g_state *st)
{
	struct g_pending_key key = {.tid = st->tid, .point = st->lpoint};
	u32 point = st->lpoint;
	if (pending.update(&key, st) < 0)
		return false;
	u64 *n = pending_now.lookup(&point);
	if (n)
		__sync_fetch_and_add(n, 1);
	return true;
}

/* The return of a hooked call: the state its entry kept, the return value,
 * buffers the call filled (`retval` bytes); then, for a call deferred at
 * entry, its user-memory slots read again and every stage from S_EVAL; for
 * return hooks, S_ACT (matchReturnArgs, return actions). The call has run:
 * a signal sent now is delivered before it returns to user code. */
static __always_inline int finish(void *ctx, u32 lpoint, s64 retval)
{
	u64 *waiting = pending_now.lookup(&lpoint);
	if (!waiting || !*waiting)
		return 0;
	struct g_pending_key key = {.tid = (u32)bpf_get_current_pid_tgid(), .point = lpoint};
	struct g_state *saved = pending.lookup(&key);
	if (!saved)
		return 0;
	struct g_scratch *sc = get_scratch();
	if (!sc) {
		pending.delete(&key);
		return 0;
	}
	struct g_state *st = &sc->st;
	bpf_probe_read_kernel(st, sizeof(*st), saved);
	pending.delete(&key);
	__sync_fetch_and_add(waiting, -1);
	/* The table the entry used: its hook positions are what `sel` and
	 * `wanted` refer to. */
	struct g_point *p = point_of(st);
	if (!p)
		return 0;
	st->at_return = 1;
	st->retval = retval;
	st->verdict = 0;

	u32 failed = st->failed;
	u32 opened = G_MAX_SLOTS;       /* a slot whose path comes from the opened file */
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < G_MAX_SLOTS; i++) {
		if (i >= BOUND(p->nslots))
			break;
		struct g_slot_desc *d = &p->slot[at(i, G_SLOT_MASK)];
		struct g_slot *s = &st->slots[at(i, G_SLOT_MASK)];
		u64 v = st->args[d->src & (G_MAX_ARGV - 1)];
		if (d->flags & GS_RETCOPY) {
			s->flags = 0;
			s->len = 0;
			read_ubuf(s, v, retval);
			continue;
		}
#ifndef TETRAD_NO_BTF
		if ((d->flags & GS_RETVAL) && d->kind == GA_SOCK) {
			/* A returned sock. */
			s->flags = 0;
			s->len = 0;
			slot_sock(s, (void *)retval);
			continue;
		}
#endif
		if (d->flags & GS_RETVAL) {
			/* A returned string (returnArg of a uprobe). */
			s->flags = 0;
			s->len = 0;
			s->ival = retval;
			if (d->kind == GA_USTR)
				string_read(s, bpf_probe_read_user_str(s->data, G_STR_MAX, (void *)retval));
			else if (d->kind == GA_KSTR)
				string_read(s, bpf_probe_read_kernel_str(s->data, G_STR_MAX, (void *)retval));
			continue;
		}
		if (!st->deferred || !(failed & (1u << i)))
			continue;
		/* Read again what was unreadable at entry: strings, buffers and
		 * socket addresses (other kinds stay unreadable). */
		u8 kind = d->kind;
		if (kind != GA_USTR && kind != GA_UBUF && kind != GA_USOCKADDR && kind != GA_USOCKADDR_UN) {
			s->flags |= G_SLOT_ERROR;
			continue;
		}
		s->flags = 0;
		s->len = 0;
#ifndef TETRAD_NO_BTF
		if ((d->xflags & GSX_OPENED) && retval >= 0) {
			opened = i;     /* walked once, after this loop */
			continue;
		}
#endif
		if (kind == GA_USTR)
			string_read(s, bpf_probe_read_user_str(s->data, G_STR_MAX, (void *)v));
		else if (kind == GA_UBUF)
			read_ubuf(s, v, s->ival);
		else if (kind == GA_USOCKADDR_UN)
			slot_sockaddr_un(s, (void *)v, arg_or(st, d->sizesrc, 0), true);
		else    /* a sockaddr: its length argument is gone at exit */
			slot_sockaddr(s, (void *)v, 0, true);
		if (!(s->flags & G_SLOT_ERROR))
			failed &= ~(1u << i);
		else
			s->flags |= G_SLOT_UNREADABLE;
	}
#ifndef TETRAD_NO_BTF
	if (opened < G_MAX_SLOTS) {
		/* The file the call opened, as the kernel resolved it: another
		 * thread can no longer change what was opened, as it can change
		 * the caller's string between the kernel's copy and a read here. */
		struct g_slot *s = &st->slots[at(opened, G_SLOT_MASK)];
		void *file = fd_file(retval);
		void *dentry = NULL, *mnt = NULL;
		if (file) {
			dentry = read_ptr((char *)file + OFF_FILE_F_PATH + OFF_PATH_DENTRY);
			mnt = read_ptr((char *)file + OFF_FILE_F_PATH + OFF_PATH_MNT);
		}
		walk_into(sc, dentry, mnt, true);
		walked_into(sc, s);
		if (!(s->flags & G_SLOT_ERROR))
			failed &= ~(1u << (opened & G_SLOT_MASK));
		else
			s->flags |= G_SLOT_UNREADABLE;
	}
#endif
	if (st->deferred) {
		if (failed) {
			u32 n = 0;
#pragma unroll
			for (int i = 0; i < G_MAX_SLOTS; i++)
				n += (failed >> i) & 1;
			COUNT_HOOKS(p, st->wanted, unreadable, n);
		}
		stages.call(ctx, S_EVAL);
		return tail_missed(S_EVAL);
	}
	/* Only the return hooks that waited: the others acted at entry. */
	if (p->flags & G_POINT_RETVAL) {
		/* Tests on return values: select again, knowing them. */
		st->wanted = st->waiting;
		stages.call(ctx, S_EVAL);
		return tail_missed(S_EVAL);
	}
	st->acting = st->waiting;
	if (st->acting) {
		stages.call(ctx, S_ACT);
		return tail_missed(S_ACT);
	}
	return 0;
}
#endif

/* ---- stages --------------------------------------------------------------------- */

/* S_STATE: the caller's namespaces and capabilities, as they are at this
 * call, against the point's state predicates (caller bits); then the hooks
 * that want the caller, as the entry does for points without them. */
int g_caller(void *ctx)
{
	struct g_scratch *sc = get_scratch();
	if (!sc)
		return 0;
	struct g_state *st = &sc->st;
	struct g_point *p = point_of(st);
	if (!p)
		return 0;
#ifdef TETRAD_HAVE_STATE
	read_proc_state((void *)bpf_get_current_task(), &st->cur);
	struct tetrad_proc_state *base = NULL;
	if (p->flags & G_POINT_BASE) {
		u32 tgid = st->pid;
		struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
		if (e)
			base = &e->exec_state;
	}
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < G_MAX_SPREDS; i++) {
		if (i >= BOUND(p->nspreds))
			break;
		struct g_spred *q = &p->spred[at(i, G_MAX_SPREDS - 1)];
		if (spred_holds(st, q, base))
			LAUNDER(st->callerhits) |= 1ULL << (q->bit & 63);
	}
#endif
	wanted_hooks(st, p);
	if (!LAUNDER(st->wanted))
		return 0;
	stages.call(ctx, S_READ);
	return tail_missed(S_READ);
}

/* S_READ: slot `iter`, then the next; after the last, unreadable user
 * memory is deferred to the call's return (G_POINT_RETRY) or marked. */
int g_read(void *ctx)
{
	struct g_scratch *sc = get_scratch();
	if (!sc)
		return 0;
	struct g_state *st = &sc->st;
	struct g_point *p = point_of(st);
	if (!p)
		return 0;
	u32 i = st->iter;
	if (i < p->nslots && i < G_MAX_SLOTS) {
		struct g_slot_desc *d = &p->slot[at(i, G_SLOT_MASK)];
		if ((d->nwalk || d->ngather) && !st->has_stepped) {
			stages.call(ctx, S_STEPS);
			return tail_missed(S_STEPS);
		}
		if (d->kind == GA_IOVEC) {
			stages.call(ctx, S_IOVEC);
			return tail_missed(S_IOVEC);
		}
		if (read_slot(ctx, sc, d, i, false))
			st->failed |= 1u << i;
		st->iter = i + 1;
		if (i + 1 < p->nslots) {
			stages.call(ctx, S_READ);
			return tail_missed(S_READ);
		}
	}
	u32 failed = st->failed;
	if (failed) {
#if G_HAS_EXIT
		if (p->flags & G_POINT_RETRY) {
			st->deferred = 1;
			if (defer(st)) {
				COUNT_HOOKS(p, st->wanted, deferred, 1);
				return 0;       /* decided at sys_exit */
			}
			st->deferred = 0;
		}
#endif
		u32 n = 0;
#pragma unroll
		for (int j = 0; j < G_MAX_SLOTS; j++) {
			if (failed & (1u << j)) {
				st->slots[j].flags |= G_SLOT_UNREADABLE;
				n++;
			}
		}
		COUNT_HOOKS(p, st->wanted, unreadable, n);
	}
	stages.call(ctx, S_EVAL);
	return tail_missed(S_EVAL);
}

/* S_STEPS: the struct walk of slot `iter` (generic.h GO_*), then S_READ
 * reads it. Steps [0, nwalk) walk from the raw value to the value its kind
 * reads (`stepped`); a GA_GATHER slot's next ngather steps copy fields of
 * what that value points at into its data (GO_BASE: from that value
 * again). A NULL or unreadable pointer on the way stops the walk (BADPTR,
 * the value 0, its depth in the resolve path in the flags) and, in a gather,
 * skips the fields behind it up to the next GO_BASE. A user memory copy
 * that fails marks the slot (G_SLOT_ERROR): it is then unreadable. */
int g_steps(void *ctx)
{
	struct g_scratch *sc = get_scratch();
	if (!sc)
		return 0;
	struct g_state *st = &sc->st;
	struct g_point *p = point_of(st);
	u32 i = st->iter;
	if (!p || i >= G_MAX_SLOTS)
		return 0;
	struct g_slot_desc *d = &p->slot[at(i, G_SLOT_MASK)];
	struct g_slot *s = &st->slots[at(i, G_SLOT_MASK)];
	s->flags = 0;
	s->len = 0;
	s->ival = 0;
	if (d->kind == GA_GATHER || d->kind == GA_ITER)
		__builtin_memset(s->data, 0, G_STR_MAX);
	u32 nwalk = d->nwalk;
	u32 n = nwalk + d->ngather;
	u32 first = d->op_at;
	/* In map memory: the verifier does not track them, so iterations
	 * that differ only there are one state. */
	st->stepped = raw_value(ctx, st, d);
	st->step_base = 0;
	st->step_dead = 0;
#pragma clang loop unroll(disable)
	for (u32 j = 0; j < G_SLOT_OPS; j++) {
		if (j >= LAUNDER(n))
			break;
		if (j == LAUNDER(nwalk)) {
			if (s->flags & G_SLOT_BADPTR)
				break;
			LAUNDER(st->step_base) = LAUNDER(st->stepped);
		}
		struct g_op *op = &p->ops[(first + j) & G_OPS_MASK];
		u8 code = op->code;
		bool user = code & GO_USER;
		code &= ~GO_USER;
		if (code == GO_BASE) {
			LAUNDER(st->stepped) = LAUNDER(st->step_base);
			LAUNDER(st->step_dead) = 0;
			continue;
		}
		if (LAUNDER(st->step_dead))
			continue;
		void *src = (void *)(LAUNDER(st->stepped) + op->off);
		if (code == GO_ADD) {
			LAUNDER(st->stepped) = (u64)src;
		} else if (code == GO_DEREF || code == GO_LOAD) {
			u64 x = 0;
			u32 size = op->size > 8 ? 8 : op->size;
			long r = user ? bpf_probe_read_user(&x, size, src) : bpf_probe_read_kernel(&x, size, src);
			if (r < 0 || (code == GO_DEREF && !x)) {
				s->flags |= G_SLOT_BADPTR | (u16)op->depth << G_SLOT_DEPTH_SHIFT;
				LAUNDER(st->step_dead) = 1;
				x = 0;
			}
			LAUNDER(st->stepped) = x;
		} else {
			/* dst and size are below 256 and user space keeps dst +
			 * size within the data; the verifier sees up to 510 bytes
			 * from data, inside the scratch map value. */
			char *dst = &s->data[op->dst];
			u32 size = op->size;
			long r = 0;
			if (code == GO_COPY)
				r = user ? bpf_probe_read_user(dst, size, src) : bpf_probe_read_kernel(dst, size, src);
			else if (code == GO_STR)
				r = user ? bpf_probe_read_user_str(dst, size, src)
					 : bpf_probe_read_kernel_str(dst, size, src);
			if (r < 0 && user)
				s->flags |= G_SLOT_ERROR;
		}
	}
	if (n > nwalk && !(s->flags & G_SLOT_BADPTR))
		LAUNDER(st->stepped) = LAUNDER(st->step_base);
	st->has_stepped = 1;
	stages.call(ctx, S_READ);
	return tail_missed(S_READ);
}

/* S_IOVEC: slot `iter`, a char_iovec (read_iovec), then S_READ goes on
 * with the next. */
int g_iovec(void *ctx)
{
	struct g_scratch *sc = get_scratch();
	if (!sc)
		return 0;
	struct g_state *st = &sc->st;
	struct g_point *p = point_of(st);
	u32 i = st->iter;
	if (!p || i >= G_MAX_SLOTS)
		return 0;
	if (read_slot(ctx, sc, &p->slot[at(i, G_SLOT_MASK)], i, true))
		st->failed |= 1u << i;
	st->iter = i + 1;
	stages.call(ctx, S_READ);
	return tail_missed(S_READ);
}

/* S_EVAL: hits, every predicate that holds; unknown, those on unreadable
 * slots. */
int g_eval(void *ctx)
{
	struct g_scratch *sc = get_scratch();
	if (!sc)
		return 0;
	struct g_state *st = &sc->st;
	struct g_point *p = point_of(st);
	if (!p)
		return 0;
	__builtin_memset(st->hits, 0, sizeof(st->hits));
	__builtin_memset(st->unknown, 0, sizeof(st->unknown));
	__builtin_memset(st->later, 0, sizeof(st->later));
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < G_MAX_SLOTS; i++) {
		if (i >= BOUND(p->nslots))
			break;
		u32 k = at(i, G_SLOT_MASK);
		struct g_slot *s = &st->slots[k];
		u8 f = p->slot[k].flags;
		if ((f & GS_RETVAL) && !st->at_return) {
			or_bits(st->later, (struct g_bits *)&p->slot_bits[k * G_WORDS]);
			continue;
		}
		if (s->flags & G_SLOT_UNREADABLE) {
			or_bits(st->unknown, (struct g_bits *)&p->slot_bits[k * G_WORDS]);
			continue;
		}
		u32 len = s->len & G_STR_MASK;
		u32 lp = st->lpoint;
		if (f & GS_FWD)
			or_bits(st->hits, fwd_lookup(sc, trie_id(lp, G_TRIE_FWD, k), s->data,
						     s->flags & G_SLOT_TRUNC ? G_STR_MAX : len));
		if (f & GS_REV)
			or_bits(st->hits, rev_lookup(sc, trie_id(lp, G_TRIE_REV, k), s->data, len));
		if (f & GS_SADDR)
			or_bits(st->hits, addr_lookup(sc, trie_id(lp, G_TRIE_SADDR, k),
						      (struct g_sockinfo *)s->data, true));
		if (f & GS_DADDR)
			or_bits(st->hits, addr_lookup(sc, trie_id(lp, G_TRIE_DADDR, k),
						      (struct g_sockinfo *)s->data, false));
	}
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < G_MAX_IPREDS; i++) {
		if (i >= BOUND(p->npreds))
			break;
		struct g_ipred *q = &p->pred[at(i, G_MAX_IPREDS - 1)];
		struct g_slot *s = &st->slots[q->slot & G_SLOT_MASK];
		if (!(s->flags & G_SLOT_UNREADABLE) && ipred_holds(s, q)) {
			u32 bit = q->bit;
			st->hits[at(bit >> 6, G_WORDS - 1)] |= 1ULL << (bit & 63);
		}
	}
	stages.call(ctx, S_SELECT);
	return tail_missed(S_SELECT);
}

/* S_SELECT: each wanted hook's selector. At entry, return hooks keep theirs
 * for the return (the state waits in `pending`); the others act now. */
int g_select(void *ctx)
{
	struct g_scratch *sc = get_scratch();
	if (!sc)
		return 0;
	struct g_state *st = &sc->st;
	struct g_point *p = point_of(st);
	if (!p)
		return 0;
	/* Accumulated in map memory (see wanted_hooks). */
	st->acting = 0;
	st->waiting = 0;
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < G_POINT_HOOKS; i++) {
		if (i >= BOUND(p->nhooks))
			break;
		u32 pos = at(i, G_POINT_HOOKS - 1);
		st->sel[pos] = NO_SEL;
		if (!(st->wanted & (1u << i)))
			continue;
		u32 id = p->hooks[pos];
		struct g_hook *h = hooks.lookup(&id);
		if (!h)
			continue;
		u8 s = select_hook(st, h);
		st->sel[pos] = s;
		if (s == NO_SEL)
			continue;
		if ((h->flags & G_HOOK_RETURN) && !st->at_return)
			LAUNDER(st->waiting) |= 1u << i;
		else
			LAUNDER(st->acting) |= 1u << i;
	}
#if G_HAS_EXIT
	if (LAUNDER(st->waiting))
		defer(st);
#endif
	if (LAUNDER(st->acting)) {
		stages.call(ctx, S_ACT);
		return tail_missed(S_ACT);
	}
	return 0;
}

/* S_ACT: the actions of the first hook in `acting`, then the next one's
 * (a run each, so the verifier walks the actions once). The verdict (LSM,
 * override) is the first one a hook gave. */
int g_act(void *ctx)
{
	struct g_scratch *sc = get_scratch();
	if (!sc)
		return 0;
	struct g_state *st = &sc->st;
	struct g_point *p = point_of(st);
	u32 acting = st->acting;
	if (!p || !acting)
		return 0;
	/* The lowest bit's position (G_POINT_HOOKS is 16). */
	u32 low = acting & -acting;
	u32 pos = ((low & 0xaaaa) != 0) | ((low & 0xcccc) != 0) << 1 |
		  ((low & 0xf0f0) != 0) << 2 | ((low & 0xff00) != 0) << 3;
	acting &= acting - 1;
	st->acting = acting;
	u32 id = p->hooks[pos];
	struct g_hook *h = hooks.lookup(&id);
	if (h) {
		int v = act(ctx, sc, h, st->sel[pos]);
		if (!st->verdict)
			st->verdict = v;
	}
	if (acting) {
		stages.call(ctx, S_ACT);
		tail_missed(S_ACT);
	}
	int verdict = st->verdict;
#if G_PROG_TYPE == G_TYPE_LSM
	/* Newer kernels hold LSM programs to an errno range. */
	if (verdict < -4095)
		verdict = -4095;
	if (verdict > 0)
		verdict = 0;
#endif
	return verdict;
}

/* ---- entries ---------------------------------------------------------------------- */

#if G_PROG_TYPE == G_TYPE_TP
int g_sys_enter(void *ctx)
{
	u32 nr = *(u32 *)((char *)ctx + 8);
	u32 *point = sys_point.lookup(&nr);
	if (!point || !*point)
		return 0;
	return begin(ctx, CK_SYSCALL, *point);
}

int g_sys_exit(void *ctx)
{
	u32 nr = *(u32 *)((char *)ctx + 8);
	u32 *point = sys_point.lookup(&nr);
	if (!point || !*point)
		return 0;
	return finish(ctx, *point, *(s64 *)((char *)ctx + 16));
}

int g_tp(void *ctx)
{
	return begin(ctx, CK_TRACEPOINT, point_const());
}

/* Every syscall (a generated_syscalls list): raw_syscalls:sys_{enter,exit},
 * whose records are laid out as syscalls:sys_{enter,exit}_*'s. */
int g_sys_any(void *ctx)
{
	return begin(ctx, CK_SYSCALL, point_const());
}

int g_sys_any_exit(void *ctx)
{
	return finish(ctx, point_const(), *(s64 *)((char *)ctx + 16));
}
#elif G_PROG_TYPE == G_TYPE_KPROBE
int g_kprobe(struct pt_regs *ctx)
{
	return begin(ctx, CK_REGS, point_const());
}

int g_kretprobe(struct pt_regs *ctx)
{
	return finish(ctx, point_const(), PT_REGS_RC(ctx));
}

int g_usdt(struct pt_regs *ctx)
{
	return begin(ctx, CK_USDT, point_const());
}
#elif G_PROG_TYPE == G_TYPE_LSM
int g_lsm(unsigned long long *ctx)
{
	return begin(ctx, CK_ARRAY, point_const());
}
#elif G_PROG_TYPE == G_TYPE_RAWTP
int g_rawtp(unsigned long long *ctx)
{
	return begin(ctx, CK_ARRAY, point_const());
}
#endif
