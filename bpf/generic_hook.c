/* generic_hook.c - one program for policy hooks of one argument layout.
 *
 * Built per argument layout, never per policy: the layout (how each of up to
 * five arguments is read) comes from -D flags (tetrad/sensors/generic.py),
 * the selectors from maps. A program built for syscall tracepoints serves
 * every syscall with that layout and finds the hook by syscall number, so
 * policies on ten syscalls of one layout cost one compile. One syscall has
 * one hook per program (G_HOOKS_PER_KEY): a second policy on openat is a
 * second program, run on every openat call.
 *
 * Per call: find the hooks for this key -> read the arguments -> for each
 * hook, the first selector whose filters all match -> its actions (signal,
 * override, post). Nothing is reserved in the ring buffer before a selector
 * matched. Kinds (G_KIND): syscall entry, syscall exit (return values),
 * tracepoint, kprobe, kretprobe, LSM, uprobe.
 *
 * Arguments in user memory (strings, buffers, socket addresses) are read
 * with page faults disabled, so a read at syscall entry fails when the
 * caller placed the value on a page it never touched (issue 12). The kernel
 * faults that page in when it copies the value, so a syscall hook (G_RETRY)
 * defers such a call to its sys_exit: it reads those arguments again there,
 * then selects and acts. A value unreadable even then (or on a hook without
 * an exit) is marked G_SLOT_UNREADABLE, counted, and matches every operator
 * unless the policy says unreadable-args: no-match (G_HOOK_UNREADABLE_NOMATCH):
 * never a silent pass.
 *
 * Build flags: G_KIND, OBJ_ID, G_HAS_RETURN, G_RETRY, and per slot n (0..4)
 * ARGn_KIND (GA_*), ARGn_SRC (raw argument index, or tracepoint field
 * offset), ARGn_SIZE/ARGn_SIGNED (integers), ARGn_SIZESRC (raw index of the
 * length of a buffer/sockaddr, -1 for none), ARGn_RETCOPY; G_NARGS; for LSM
 * G_LSM_HOOK; the OFF_* struct offsets from BTF.
 */
#include <uapi/linux/ptrace.h>
#include "generic.h"
#include "shared_maps.h"
#include "path_walk.h"

#define G_KIND_SYSCALL 1
#define G_KIND_TRACEPOINT 3
#define G_KIND_KPROBE 4
#define G_KIND_LSM 5
#define G_KIND_UPROBE 6

#ifndef G_NARGS
#define G_NARGS 0
#endif
#ifndef G_RETRY
#define G_RETRY 0
#endif
/* Programs with an exit half: return values, or arguments read again. */
#define G_EXIT (G_HAS_RETURN || G_RETRY)
/* Loop bounds from the policy itself (tetrad/sensors/generic.py): the
 * verifier walks only as many selectors, matches, values and actions as the
 * policy has, so simple policies verify quickly. Arrays stay full size. */
#ifndef G_SEL_LIMIT
#define G_SEL_LIMIT G_MAX_SEL
#endif
#ifndef G_MATCH_LIMIT
#define G_MATCH_LIMIT G_MAX_MATCH
#endif
#ifndef G_VAL_LIMIT
#define G_VAL_LIMIT G_MAX_VALUES
#endif
#ifndef G_ACT_LIMIT
#define G_ACT_LIMIT G_MAX_ACTIONS
#endif
#ifndef G_PID_LIMIT
#define G_PID_LIMIT G_MAX_PIDS
#endif
#ifndef G_NEEDS_BINARY
#define G_NEEDS_BINARY 1
#endif
#ifndef G_BIN_POSTFIX
#define G_BIN_POSTFIX 1
#endif
#ifndef G_MAX_HOOKS
#define G_MAX_HOOKS 64
#endif
#ifndef G_CGROUP_ENTRIES
#define G_CGROUP_ENTRIES 16384
#endif
/* Demux keys (syscall numbers are below 512 on every architecture we build
 * for); user space checks a key against the same size (INDEX_SIZE). */
#ifndef G_INDEX_SIZE
#define G_INDEX_SIZE 512
#endif

TETRAD_EVENTS_EXTERN;
TETRAD_EXECVE_MAP_EXTERN;
TETRAD_SHED_EXTERN;

/* By demux key: an array lookup is inlined, a hash lookup is a call. */
BPF_ARRAY(hook_index, struct g_hook_list, G_INDEX_SIZE);
BPF_ARRAY(hooks, struct g_hook, G_MAX_HOOKS);
BPF_PERCPU_ARRAY(hook_stats, struct g_hook_stats, G_MAX_HOOKS);
BPF_HASH(str_eq, struct g_str_key, u8, 1024);
BPF_F_TABLE("lpm_trie", struct g_lpm_str_key, u8, str_prefix, 1024, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct g_lpm_str_key, u8, str_postfix, 1024, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct g_lpm_addr_key, u8, cidr, 1024, BPF_F_NO_PREALLOC);
BPF_TABLE("lru_hash", u64, u64, rate_limits, 8192);
/* Written by user space as cgroups appear (tetrad/policy/cgroup_scope.py);
 * not preallocated: most programs serve no workload-scoped hook. */
BPF_F_TABLE("hash", struct g_cgroup_key, u8, cgroup_sel, G_CGROUP_ENTRIES, BPF_F_NO_PREALLOC);

struct g_scratch {
	struct g_msg msg;
	u32 iter;
	struct g_str_key str_key;
	struct g_lpm_str_key lpm_key;
	struct g_lpm_addr_key addr_key;
	u64 raw[G_MAX_ARGS];
	/* Reversed copies for Postfix matching, made once per event. */
	char rev[G_MAX_ARGS][G_POSTFIX_MAX];
	u32 rev_len[G_MAX_ARGS];
	char bin[G_STR_MAX];            /* the process's binary, zero padded */
	char bin_rev[G_POSTFIX_MAX];
	u32 bin_len;
	u32 have_bin;
	u32 unreadable_nomatch;         /* the hook's G_HOOK_UNREADABLE_NOMATCH */
};
BPF_PERCPU_ARRAY(scratch, struct g_scratch, 1);
BPF_PERCPU_ARRAY(walk_heap, struct walk_scratch, 1);

#if G_EXIT
/* Arguments read at entry wait here for the return value, or for a second
 * read (sel RETRY: then with the binary seen at entry). */
struct g_pending {
	struct g_msg msg;
	u64 raw[G_MAX_ARGS];
	u8 sel[G_HOOKS_PER_KEY];    /* selector chosen at entry, 0xff none */
#if G_RETRY
	u32 bin_len;
	u32 have_bin;
	char bin[G_STR_MAX];
	char bin_rev[G_POSTFIX_MAX];
#endif
};
#if G_RETRY
/* Not LRU: a deferred call must never be evicted by a flood of other
 * pending calls (that would be a silent pass). When the map is full the
 * call is decided at entry, its unreadable arguments marked. */
BPF_TABLE("hash", u32, struct g_pending, pending, 4096);
/* Deferred calls not yet decided, so that sys_exit of the many calls
 * nothing deferred costs an inlined array read, not a hash lookup. An entry
 * never taken (its task died in the call) leaves it high: exits then look. */
BPF_ARRAY(deferred_now, u64, 1);
#else
BPF_TABLE("lru_hash", u32, struct g_pending, pending, 2048);
#endif
BPF_PERCPU_ARRAY(pending_heap, struct g_pending, 1);
#endif

/* ---- raw argument values ------------------------------------------------- */

#if G_KIND == G_KIND_SYSCALL
/* What a BPF program gets at a syscall tracepoint (perf_call_bpf_enter/
 * exit): 8 bytes of header, the syscall number (the demux key), then each
 * argument in 8 bytes; sys_exit has the return value at 16. */
#define RAW(ctx, n) (*(u64 *)((char *)(ctx) + 16 + 8 * (n)))
#define DEMUX_KEY(ctx) (*(u32 *)((char *)(ctx) + 8))
#define CTX_T void
#elif G_KIND == G_KIND_TRACEPOINT
#define RAW(ctx, off) tp_field(ctx, off)
#define DEMUX_KEY(ctx) 0
#define CTX_T void
#elif G_KIND == G_KIND_LSM
#define RAW(ctx, n) ((ctx)[n])
#define DEMUX_KEY(ctx) 0
#define CTX_T unsigned long long
#else   /* kprobe, kretprobe, uprobe */
#define RAW(ctx, n) kparm(ctx, n)
#define DEMUX_KEY(ctx) 0
#define CTX_T struct pt_regs
static __always_inline u64 kparm(struct pt_regs *ctx, int n)
{
	switch (n) {
	case 0: return PT_REGS_PARM1(ctx);
	case 1: return PT_REGS_PARM2(ctx);
	case 2: return PT_REGS_PARM3(ctx);
	case 3: return PT_REGS_PARM4(ctx);
	case 4: return PT_REGS_PARM5(ctx);
	default: return PT_REGS_PARM6(ctx);
	}
}
#endif

#if G_KIND == G_KIND_TRACEPOINT
static __always_inline u64 tp_field(void *ctx, int off)
{
	u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (char *)ctx + off);
	return v;
}
#endif

/* ---- reading a slot -------------------------------------------------------- */

/* Reverse the last (at most G_POSTFIX_MAX) bytes of a string into dst.
 * The loop does not stop at len: every byte of dst is written, the ones past
 * len with bytes the LPM prefix length then ignores. A loop that breaks at
 * len leaves the verifier one path per length to explore after it, which
 * the 6.1 verifier gives up on (E2BIG) in programs as large as ours. Not
 * unrolled: 128 copies overflow the 512-byte stack with spills. */
static __always_inline u32 reverse_into(char *dst, char *src, u32 len)
{
	if (len > G_POSTFIX_MAX)
		len = G_POSTFIX_MAX;
	u32 last = len - 1;
	BARRIER_VAR(last);
#pragma clang loop unroll(disable)
	for (int i = 0; i < G_POSTFIX_MAX; i++)
		dst[i & (G_POSTFIX_MAX - 1)] = src[(last - i) & G_STR_MASK];
	return len;
}

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
static __always_inline void slot_path(struct g_slot *s, void *dentry, void *mnt)
{
	u32 zero = 0;
	struct walk_scratch *w = walk_heap.lookup(&zero);
	if (!w || !dentry || !mnt) {
		s->flags |= G_SLOT_ERROR;
		return;
	}
	void *root_dentry, *root_mnt;
	task_root((void *)bpf_get_current_task(), &root_dentry, &root_mnt);
	u32 flags = 0;
	s->len = walk_path(s->data, G_STR_MASK, 0, G_STR_MAX - 1, w, dentry, mnt,
			   root_dentry, root_mnt, &flags, G_SLOT_PATH_TRUNC) & G_STR_MASK;
	s->flags |= flags;
}

static __always_inline void slot_file(struct g_slot *s, void *file)
{
	if (!file) {
		s->flags |= G_SLOT_ERROR;
		return;
	}
	slot_path(s, read_ptr((char *)file + OFF_FILE_F_PATH + OFF_PATH_DENTRY),
		  read_ptr((char *)file + OFF_FILE_F_PATH + OFF_PATH_MNT));
}

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

static __always_inline void slot_sock(struct g_slot *s, void *sk)
{
	struct g_sockinfo *si = (struct g_sockinfo *)s->data;
	if (!sk) {
		s->flags |= G_SLOT_ERROR;
		return;
	}
	bpf_probe_read_kernel(&si->family, 2, (char *)sk + OFF_SOCK_FAMILY);
	bpf_probe_read_kernel(&si->type, 2, (char *)sk + OFF_SOCK_TYPE);
	bpf_probe_read_kernel(&si->protocol, 2, (char *)sk + OFF_SOCK_PROTOCOL);
	bpf_probe_read_kernel(&si->state, 1, (char *)sk + OFF_SOCK_STATE);
	bpf_probe_read_kernel(&si->sport, 2, (char *)sk + OFF_SOCK_NUM);
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
#endif

/* struct sockaddr from user memory: both ends of the slot get its address,
 * so S* and D* operators both match it (connect names the peer, bind the
 * local end). */
static __always_inline void slot_usockaddr(struct g_slot *s, void *uaddr, s64 len)
{
	struct g_sockinfo *si = (struct g_sockinfo *)s->data;
	u16 port = 0;
	if (!uaddr || bpf_probe_read_user(&si->family, 2, uaddr) < 0) {
		s->flags |= G_SLOT_ERROR;
		return;
	}
	s->ival = len;
	if (si->family == 2 /* AF_INET */) {
		bpf_probe_read_user(&port, 2, (char *)uaddr + 2);
		bpf_probe_read_user(si->daddr, 4, (char *)uaddr + 4);
		__builtin_memcpy(si->saddr, si->daddr, 4);
	} else if (si->family == 10 /* AF_INET6 */) {
		bpf_probe_read_user(&port, 2, (char *)uaddr + 2);
		bpf_probe_read_user(si->daddr, 16, (char *)uaddr + 8);
		__builtin_memcpy(si->saddr, si->daddr, 16);
	}
	si->dport = si->sport = (port >> 8) | (port << 8);
	s->len = sizeof(*si);
}

static __always_inline void read_slot(CTX_T *ctx, struct g_slot *s, u64 *raw, int kind,
				      int src, int size, int is_signed, int sizesrc)
{
	u64 v = RAW(ctx, src);
	*raw = v;
	s->flags = 0;
	s->len = 0;
	s->ival = 0;
	if (kind == GA_INT) {
		s->ival = extend(v, size, is_signed);
		return;
	}
	/* Strings are not zero padded: every reader goes by len (str_match
	 * pads its own key for Equal), and skipping the 256-byte clear is a
	 * good part of what a hooked call costs when nothing matches. */
	if (kind == GA_USTR || kind == GA_KSTR || kind == GA_DATALOC) {
		long n;
		if (kind == GA_USTR)
			n = bpf_probe_read_user_str(s->data, G_STR_MAX, (void *)v);
		else if (kind == GA_KSTR)
			n = bpf_probe_read_kernel_str(s->data, G_STR_MAX, (void *)v);
		else
			n = bpf_probe_read_kernel_str(s->data, G_STR_MAX,
						      (char *)ctx + ((u32)v & 0xffff));
		if (n < 0) {
			s->flags |= G_SLOT_ERROR;
		} else if (n > 0) {
			s->len = (n - 1) & G_STR_MASK;
			if (n == G_STR_MAX)
				s->flags |= G_SLOT_TRUNC;
		}
		return;
	}
	__builtin_memset(s->data, 0, G_STR_MAX);
	if (kind == GA_UBUF) {
		s64 want = sizesrc >= 0 ? (s64)RAW(ctx, sizesrc) : G_STR_MAX;
		u32 n = want < 0 ? 0 : (want > G_STR_MAX ? G_STR_MAX : want);
		s->ival = want;
		if (want > G_STR_MAX)
			s->flags |= G_SLOT_TRUNC;
		if (n && bpf_probe_read_user(s->data, n & (G_STR_MAX * 2 - 1), (void *)v) < 0)
			s->flags |= G_SLOT_ERROR;
		else
			s->len = n;
		return;
	}
	if (kind == GA_USOCKADDR) {
		slot_usockaddr(s, (void *)v, sizesrc >= 0 ? (s64)RAW(ctx, sizesrc) : 0);
		return;
	}
#ifndef TETRAD_NO_BTF
	if (kind == GA_FD) {
		s->ival = (s32)v;
		slot_file(s, fd_file((s32)v));
	} else if (kind == GA_FILE) {
		slot_file(s, (void *)v);
	} else if (kind == GA_PATH) {
		slot_path(s, read_ptr((char *)v + OFF_PATH_DENTRY), read_ptr((char *)v + OFF_PATH_MNT));
	} else if (kind == GA_BINPRM) {
		slot_file(s, read_ptr((char *)v + OFF_BINPRM_FILE));
	} else if (kind == GA_SOCK) {
		slot_sock(s, (void *)v);
	}
#endif
}

#define READ_SLOT(n)                                                          \
	read_slot(ctx, &msg->slots[n], &sc->raw[n], ARG##n##_KIND, ARG##n##_SRC,  \
		  ARG##n##_SIZE, ARG##n##_SIGNED, ARG##n##_SIZESRC);               \
	if (ARG##n##_REVERSE)                                                  \
		sc->rev_len[n] = reverse_into(sc->rev[n], msg->slots[n].data,       \
					      msg->slots[n].len & G_STR_MASK)

static __always_inline void read_slots(CTX_T *ctx, struct g_scratch *sc)
{
	struct g_msg *msg = &sc->msg;
	msg->nslots = G_NARGS;
#if G_NARGS > 0
	READ_SLOT(0);
#endif
#if G_NARGS > 1
	READ_SLOT(1);
#endif
#if G_NARGS > 2
	READ_SLOT(2);
#endif
#if G_NARGS > 3
	READ_SLOT(3);
#endif
#if G_NARGS > 4
	READ_SLOT(4);
#endif
}

/* ---- user memory that could not be read ------------------------------------ */

/* Slots whose value is in user memory and read at entry (a returnCopy
 * buffer is read at return anyway). */
#define USER_SLOT(n) (ARG##n##_KIND == GA_USTR || ARG##n##_KIND == GA_USOCKADDR || \
		      (ARG##n##_KIND == GA_UBUF && !ARG##n##_RETCOPY))
/* A NULL pointer is no value to read, not an unreadable one. */
#define FAILED(n) (USER_SLOT(n) && (sc->msg.slots[n].flags & G_SLOT_ERROR) && sc->raw[n] \
		   ? 1u << (n) : 0u)

/* Bit n set: slot n is in user memory and its read failed. */
static __always_inline u32 user_failures(struct g_scratch *sc)
{
	u32 failed = 0;
#if G_NARGS > 0
	failed |= FAILED(0);
#endif
#if G_NARGS > 1
	failed |= FAILED(1);
#endif
#if G_NARGS > 2
	failed |= FAILED(2);
#endif
#if G_NARGS > 3
	failed |= FAILED(3);
#endif
#if G_NARGS > 4
	failed |= FAILED(4);
#endif
	return failed;
}

#if G_RETRY
/* Reads a user-memory slot again (at sys_exit); whether it could. */
static __always_inline bool reread_slot(struct g_slot *s, u64 v, int kind)
{
	if (kind == GA_USTR) {
		long n = bpf_probe_read_user_str(s->data, G_STR_MAX, (void *)v);
		if (n < 0)
			return false;
		s->flags = n == G_STR_MAX ? G_SLOT_TRUNC : 0;
		s->len = n > 0 ? (n - 1) & G_STR_MASK : 0;
		return true;
	}
	if (kind == GA_UBUF) {
		s64 want = s->ival;
		u32 n = want < 0 ? 0 : (want > G_STR_MAX ? G_STR_MAX : want);
		if (n && bpf_probe_read_user(s->data, n & (G_STR_MAX * 2 - 1), (void *)v) < 0)
			return false;
		s->flags &= ~G_SLOT_ERROR;
		s->len = n;
		return true;
	}
	s->flags = 0;       /* a sockaddr: its length argument is gone at exit */
	slot_usockaddr(s, (void *)v, 0);
	return !(s->flags & G_SLOT_ERROR);
}

/* Reads the failed slots again; the scratch's reversed copies are stale
 * (other calls ran on this CPU meanwhile), so they are all made again.
 * Returns the slots still unreadable. */
#define REREAD(n)                                                                 \
	if (failed & (1u << (n)) && reread_slot(&sc->msg.slots[n], raw[n], ARG##n##_KIND)) \
		failed &= ~(1u << (n));                                           \
	if (ARG##n##_REVERSE)                                                     \
		sc->rev_len[n] = reverse_into(sc->rev[n], sc->msg.slots[n].data,    \
					      sc->msg.slots[n].len & G_STR_MASK)

static __always_inline u32 reread_slots(struct g_scratch *sc, u64 *raw, u32 failed)
{
#if G_NARGS > 0
	REREAD(0);
#endif
#if G_NARGS > 1
	REREAD(1);
#endif
#if G_NARGS > 2
	REREAD(2);
#endif
#if G_NARGS > 3
	REREAD(3);
#endif
#if G_NARGS > 4
	REREAD(4);
#endif
	return failed;
}
#endif

/* ---- selectors ------------------------------------------------------------- */

/* Loop index i masked for an array of mask+1 entries, hidden from the
 * compiler first: it cannot then turn indexing into a running pointer
 * (which loses the bound), and the verifier sees an index within the
 * array. */
static __always_inline u32 at(u32 i, u32 mask)
{
	BARRIER_VAR(i);
	return i & mask;
}

/* Whether x satisfies op against any value (ranges: (lo, hi) pairs).
 * Unrolled to the policy's own bound, so every index is a constant. */
static __always_inline bool int_match(u8 op, u8 nvals, s64 *vals, s64 x)
{
#pragma unroll
	for (int i = 0; i < G_VAL_LIMIT; i++) {
		if (i < nvals) {
			s64 v = vals[i];
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
				if (!(i & 1) && x >= v && x <= vals[(i + 1) & (G_MAX_VALUES - 1)])
					return true;
			} else if (x == v) {
				return true;
			}
		}
	}
	return false;
}

static __always_inline bool str_match(struct g_scratch *sc, struct g_match *m, struct g_slot *s)
{
	u32 len = s->len & G_STR_MASK;
	if (m->op == G_OP_STR_EQ || m->op == G_OP_STR_NE) {
		sc->str_key.id = m->id;
		__builtin_memset(sc->str_key.data, 0, G_STR_MAX);
		if (s->flags & G_SLOT_TRUNC)
			len = G_STR_MAX;
		bpf_probe_read_kernel(sc->str_key.data, len & (G_STR_MAX * 2 - 1), s->data);
		return str_eq.lookup(&sc->str_key) != NULL;
	}
	sc->lpm_key.id = m->id;
	if (m->op == G_OP_PREFIX || m->op == G_OP_NOTPREFIX) {
		sc->lpm_key.prefixlen = 32 + 8 * (len > G_LPM_STR ? G_LPM_STR : len);
		__builtin_memcpy(sc->lpm_key.data, s->data, G_LPM_STR);
		return str_prefix.lookup(&sc->lpm_key) != NULL;
	}
	/* Postfix: the reversed string (made by reverse_slot) against
	 * reversed values. */
	u32 slot = m->slot;
	if (slot >= G_MAX_ARGS)
		return false;
	sc->lpm_key.prefixlen = 32 + 8 * (sc->rev_len[slot] & (G_POSTFIX_MAX * 2 - 1));
	__builtin_memset(sc->lpm_key.data, 0, G_LPM_STR);
	__builtin_memcpy(sc->lpm_key.data, sc->rev[slot], G_POSTFIX_MAX);
	return str_postfix.lookup(&sc->lpm_key) != NULL;
}


static __always_inline bool addr_match(struct g_scratch *sc, struct g_match *m,
				       struct g_sockinfo *si, bool source)
{
	struct g_lpm_addr_key *k = &sc->addr_key;
	k->id = m->id;
	k->family = si->family;
	if (si->family == 10) {
		k->prefixlen = 32 + 8 + 128;
		__builtin_memcpy(k->addr, source ? si->saddr : si->daddr, 16);
	} else {
		k->prefixlen = 32 + 8 + 32;
		__builtin_memcpy(k->addr, source ? si->saddr : si->daddr, 4);
	}
	return cidr.lookup(k) != NULL;
}

/* Does match `m` hold for the record? */
static __always_inline bool eval_match(struct g_scratch *sc, struct g_match *m)
{
	u8 op = m->op;
	u8 idx = m->slot;
	s64 x;
	u8 iop = G_OP_EQ;
	bool negate = false;

	if (idx == G_RETURN_SLOT) {
		x = sc->msg.retval;
		iop = op;
		negate = op == G_OP_NE || op == G_OP_NOTINRANGE;
		if (op == G_OP_NOTINRANGE)
			iop = G_OP_INRANGE;
		return int_match(iop, m->nvals, m->vals, x) != negate;
	}
	if (idx >= G_MAX_ARGS)
		return false;
	struct g_slot *s = &sc->msg.slots[idx];
	struct g_sockinfo *si = (struct g_sockinfo *)s->data;
	if (s->flags & G_SLOT_UNREADABLE)
		return !sc->unreadable_nomatch;     /* unknown: any operator */
	switch (op) {
	case G_OP_STR_EQ:
	case G_OP_PREFIX:
	case G_OP_POSTFIX:
		return str_match(sc, m, s);
	case G_OP_STR_NE:
	case G_OP_NOTPREFIX:
	case G_OP_NOTPOSTFIX:
		return !str_match(sc, m, s);
	case G_OP_SADDR:
	case G_OP_NOTSADDR:
		return addr_match(sc, m, si, true) != (op == G_OP_NOTSADDR);
	case G_OP_DADDR:
	case G_OP_NOTDADDR:
		return addr_match(sc, m, si, false) != (op == G_OP_NOTDADDR);
	case G_OP_SPORT:
	case G_OP_NOTSPORT:
		x = si->sport;
		iop = G_OP_INRANGE;
		negate = op == G_OP_NOTSPORT;
		break;
	case G_OP_DPORT:
	case G_OP_NOTDPORT:
		x = si->dport;
		iop = G_OP_INRANGE;
		negate = op == G_OP_NOTDPORT;
		break;
	case G_OP_PROTOCOL:
		x = si->protocol;
		break;
	case G_OP_FAMILY:
		x = si->family;
		break;
	case G_OP_NE:
		x = s->ival;
		negate = true;
		break;
	case G_OP_NOTINRANGE:
		x = s->ival;
		iop = G_OP_INRANGE;
		negate = true;
		break;
	default:
		x = s->ival;
		iop = op;
	}
	return int_match(iop, m->nvals, m->vals, x) != negate;
}

/* The pid a matchPIDs entry compares: the tgid, or with isNamespacePID the
 * pid in the task's own pid namespace (task->thread_pid->numbers[level]). */
static __always_inline u32 selector_pid(struct g_selector *sel, u32 tgid)
{
#ifndef TETRAD_NO_BTF
	if (sel->ns_pid) {
		void *pid = read_ptr((char *)bpf_get_current_task() + OFF_TASK_THREAD_PID);
		u32 level = 0, nr = 0;
		bpf_probe_read_kernel(&level, sizeof(level), (char *)pid + OFF_PID_LEVEL);
		bpf_probe_read_kernel(&nr, sizeof(nr),
				      (char *)pid + OFF_PID_NUMBERS + (level & 31) * SIZEOF_UPID);
		return nr;
	}
#endif
	return tgid;
}

static __always_inline bool pid_in(struct g_selector *sel, u32 pid)
{
#pragma unroll
	for (int i = 0; i < G_PID_LIMIT; i++) {
		if (i < sel->npids && sel->pids[i] == pid)
			return true;
	}
	return false;
}

#define G_ANCESTORS 8

static __always_inline bool pids_match(struct g_selector *sel, u32 tgid)
{
	if (!sel->pid_op)
		return true;
	bool in = pid_in(sel, selector_pid(sel, tgid));
	if (!in && sel->follow_forks && !sel->ns_pid) {
		/* followForks: a descendant of a listed pid matches too. */
		u32 pid = tgid;
		for (int i = 0; i < G_ANCESTORS; i++) {
			struct tetrad_exec_entry *e = execve_map.lookup(&pid);
			if (!e || !e->parent.pid)
				break;
			pid = e->parent.pid;
			if (pid_in(sel, pid)) {
				in = true;
				break;
			}
		}
	}
	return sel->pid_op == G_SET_IN ? in : !in;
}

/* The process's binary from execve_map, NUL terminated, and reversed. */
static __always_inline void load_binary(struct g_scratch *sc, u32 tgid)
{
	struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
	sc->msg.proc_ktime = e ? e->key.ktime : 0;
#if G_BIN_POSTFIX
	__builtin_memset(sc->bin_rev, 0, G_POSTFIX_MAX);
#endif
	sc->have_bin = e != NULL;
	sc->bin_len = 0;
	if (!e)
		return;
	u32 len = e->bin_len & G_STR_MASK;
	bpf_probe_read_kernel(sc->bin, len, e->binary);
	sc->bin[len & G_STR_MASK] = 0;      /* In/NotIn match up to this NUL */
	sc->bin_len = len;
#if G_BIN_POSTFIX
	reverse_into(sc->bin_rev, sc->bin, len);
#endif
}

static __always_inline bool binary_match(struct g_scratch *sc, struct g_selector *sel)
{
	bool hit;
	if (!sel->bin_op)
		return true;
	if (!sc->have_bin)
		return sel->bin_op == G_SET_NOTIN || sel->bin_op == G_SET_NOTPREFIX ||
		       sel->bin_op == G_SET_NOTPOSTFIX;
	u32 len = sc->bin_len & G_STR_MASK;
	switch (sel->bin_op) {
	case G_SET_IN:
	case G_SET_NOTIN:
		/* Exact match: the values are in the trie with their NUL. */
		sc->lpm_key.id = sel->bin_id;
		sc->lpm_key.prefixlen = 32 + 8 * (len + 1 > G_LPM_STR ? G_LPM_STR : len + 1);
		__builtin_memcpy(sc->lpm_key.data, sc->bin, G_LPM_STR);
		hit = str_prefix.lookup(&sc->lpm_key) != NULL;
		return sel->bin_op == G_SET_IN ? hit : !hit;
	case G_SET_PREFIX:
	case G_SET_NOTPREFIX:
		sc->lpm_key.id = sel->bin_id;
		sc->lpm_key.prefixlen = 32 + 8 * (len > G_LPM_STR ? G_LPM_STR : len);
		__builtin_memcpy(sc->lpm_key.data, sc->bin, G_LPM_STR);
		hit = str_prefix.lookup(&sc->lpm_key) != NULL;
		return sel->bin_op == G_SET_PREFIX ? hit : !hit;
	default:
		sc->lpm_key.id = sel->bin_id;
		sc->lpm_key.prefixlen = 32 + 8 * (len > G_POSTFIX_MAX ? G_POSTFIX_MAX : len);
		__builtin_memset(sc->lpm_key.data, 0, G_LPM_STR);
		__builtin_memcpy(sc->lpm_key.data, sc->bin_rev, G_POSTFIX_MAX);
		hit = str_postfix.lookup(&sc->lpm_key) != NULL;
		return sel->bin_op == G_SET_POSTFIX ? hit : !hit;
	}
}

/* Index of the first selector whose entry filters all match, or -1. A hook
 * without selectors matches everything (Tetragon: no selector => Post):
 * NO_SELECTORS. */
#define NO_SELECTORS 0xfe
#define NO_MATCH 0xff

static __always_inline int select_entry(struct g_scratch *sc, struct g_hook *h, u32 tgid)
{
	u32 nsel = h->nsel;
	if (nsel == 0)
		return NO_SELECTORS;
	int found = -1;
	/* Fully unrolled (no break/continue, which stop clang unrolling):
	 * every index is a constant, which is what the verifier handles best. */
#pragma unroll
	for (int s = 0; s < G_SEL_LIMIT; s++) {
		if (found < 0 && s < nsel) {
			struct g_selector *sel = &h->sel[s];
			if (pids_match(sel, tgid) && binary_match(sc, sel)) {
				/* Not unrolled: one copy of eval_match per selector
				 * keeps the program small enough for 16-bit jumps. */
				u32 nmatch = sel->nmatch;
				int i;
				for (i = 0; i < G_MATCH_LIMIT; i++) {
					if (i >= nmatch)
						break;
					if (!eval_match(sc, &sel->match[at(i, G_MAX_MATCH - 1)]))
						break;
				}
				if (i >= nmatch || i == G_MATCH_LIMIT)
					found = s;
			}
		}
	}
	return found;
}

/* ---- actions ---------------------------------------------------------------- */

static __always_inline struct g_hook_stats *stats_of(u32 hook_id)
{
	return hook_stats.lookup(&hook_id);
}

static __always_inline bool rate_limited(struct g_scratch *sc, u32 hook_id, u32 sel, u32 seconds)
{
	/* Key: hook, selector, process and the first bytes of each argument. */
	u64 h = 14695981039346656037ULL ^ ((u64)hook_id << 40 | (u64)sel << 32 | sc->msg.pid);
	for (int i = 0; i < G_MAX_ARGS; i++) {
		h = (h ^ (u64)sc->msg.slots[i].ival) * 1099511628211ULL;
		u64 head = 0;
		__builtin_memcpy(&head, sc->msg.slots[i].data, 8);
		h = (h ^ head) * 1099511628211ULL;
	}
	u64 now = bpf_ktime_get_ns();
	u64 *last = rate_limits.lookup(&h);
	if (last && now - *last < (u64)seconds * 1000000000ULL)
		return true;
	rate_limits.update(&h, &now);
	return false;
}

static __always_inline void post(struct g_scratch *sc)
{
	struct g_msg *msg = &sc->msg;
	u32 zero = 0;
	u32 *shedding = shed.lookup(&zero);
	if (shedding && *shedding) {
		struct g_hook_stats *st = stats_of(msg->hook_id);
		if (st)
			__sync_fetch_and_add(&st->shed, 1);
		return;
	}
	msg->hdr.op = TETRAD_OP_GENERIC;
	/* Only the slots this hook has: a one-argument record is a quarter of
	 * a full one, so four times as many fit in the ring buffer. */
	u32 size = offsetof(struct g_msg, slots) + G_NARGS * sizeof(struct g_slot);
	msg->hdr.size = size;
	msg->hdr.cpu = bpf_get_smp_processor_id();
	msg->hdr.ktime = bpf_ktime_get_ns();
	struct g_hook_stats *st = stats_of(msg->hook_id);
	if (events.ringbuf_output(msg, size, TETRAD_RB_FLAGS) < 0) {
		if (st)
			__sync_fetch_and_add(&st->dropped, 1);
	} else if (st) {
		__sync_fetch_and_add(&st->posted, 1);
	}
}

/* Runs the actions of a chosen selector; returns the LSM/override verdict
 * (0 or a negative errno). */
static __always_inline int run_actions(void *ctx, struct g_scratch *sc, struct g_hook *h,
				       struct g_action *acts, u8 nact, u32 sel)
{
	bool monitor = h->flags & G_HOOK_MONITOR;
	bool do_post = true, limited = false;
	int verdict = 0;
	u8 shown = G_ACT_POST;

#pragma unroll
	for (int i = 0; i < G_ACT_LIMIT; i++) {
		if (i >= nact)
			continue;
		struct g_action *a = &acts[i];
		switch (a->action) {
		case G_ACT_NOPOST:
			do_post = false;
			break;
		case G_ACT_POST:
			if (a->rate_limit_s && rate_limited(sc, h->id, sel, a->rate_limit_s)) {
				do_post = false;
				limited = true;
			}
			break;
		case G_ACT_SIGKILL:
		case G_ACT_SIGNAL:
			shown = a->action;
			if (!monitor)
				bpf_send_signal(a->action == G_ACT_SIGKILL ? 9 : a->arg);
			break;
		case G_ACT_OVERRIDE:
			shown = a->action;
			if (!monitor) {
				verdict = a->arg;
#if G_KIND == G_KIND_KPROBE && defined(G_OVERRIDE_RETURN)
				bpf_override_return(ctx, a->arg);
#endif
			}
			break;
		default:    /* FollowFD/UnfollowFD: fds resolve from the fd table */
			break;
		}
	}
	struct g_hook_stats *st = stats_of(h->id);
	if (st) {
		if (shown != G_ACT_POST) {
			if (monitor)
				__sync_fetch_and_add(&st->monitored, 1);
			else
				__sync_fetch_and_add(&st->enforced, 1);
		}
		if (limited)
			__sync_fetch_and_add(&st->rate_limited, 1);
	}
	if (do_post) {
		sc->msg.hook_id = h->id;
		sc->msg.selector = sel;
		sc->msg.action = shown;
		if (monitor && shown != G_ACT_POST)
			sc->msg.flags |= G_MSG_MONITOR;
		else
			sc->msg.flags &= ~G_MSG_MONITOR;
		post(sc);
	}
	return verdict;
}

static __always_inline void fill_common(struct g_scratch *sc, u32 tgid, u32 tid)
{
	sc->msg.obj_id = OBJ_ID;
	sc->msg.pid = tgid;
	sc->msg.tid = tid;
	sc->msg.retval = 0;
	sc->msg.flags = 0;
#if G_NEEDS_BINARY
	load_binary(sc, tgid);
#endif
}

/* The slots in `failed` are unknown from here on (see eval_match). */
static __always_inline void mark_unreadable(struct g_scratch *sc, struct g_hook *h, u32 failed)
{
	if (!failed)
		return;
	u32 n = 0;
#pragma unroll
	for (int i = 0; i < G_MAX_ARGS; i++) {
		if (failed & (1u << i)) {
			sc->msg.slots[i].flags |= G_SLOT_UNREADABLE;
			n++;
		}
	}
	struct g_hook_stats *st = stats_of(h->id);
	if (st)
		__sync_fetch_and_add(&st->unreadable, n);
}

#if G_EXIT
#define RETRY 0xfd

/* Keeps the call for its exit; false when the map is full. */
static __always_inline bool defer(struct g_scratch *sc, u8 sel, u32 tid)
{
	u32 zero = 0;
	struct g_pending *p = pending_heap.lookup(&zero);
	if (!p)
		return false;
	p->sel[0] = sel;
	/* Too big for an inline copy: the helper copies map memory. */
	bpf_probe_read_kernel(&p->msg, sizeof(p->msg), &sc->msg);
	bpf_probe_read_kernel(p->raw, sizeof(p->raw), sc->raw);
#if G_RETRY
	if (sel == RETRY) {
		p->bin_len = sc->bin_len;
		p->have_bin = sc->have_bin;
		bpf_probe_read_kernel(p->bin, sizeof(p->bin), sc->bin);
		bpf_probe_read_kernel(p->bin_rev, sizeof(p->bin_rev), sc->bin_rev);
	}
#endif
	if (pending.update(&tid, p) < 0)
		return false;
#if G_RETRY
	if (sel == RETRY) {
		u64 *n = deferred_now.lookup(&zero);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
#endif
	return true;
}
#endif

/* ---- entry points ------------------------------------------------------------ */

/* The hook for this call (one per demux key), if active. */
static __always_inline struct g_hook *find_hook(CTX_T *ctx)
{
	u32 key = DEMUX_KEY(ctx);
	struct g_hook_list *list = hook_index.lookup(&key);
	if (!list || !list->n)
		return NULL;
	u32 id = list->ids[0];
	struct g_hook *h = hooks.lookup(&id);
	if (!h || !(h->flags & G_HOOK_ACTIVE))
		return NULL;
	return h;
}

/* Whether some selector accepts the caller (matchPIDs, matchBinaries).
 * When none does, the call is left alone before any argument is read: the
 * cheap filters run first. */
static __always_inline bool caller_wanted(struct g_scratch *sc, struct g_hook *h, u32 tgid)
{
	u32 nsel = h->nsel;
	if (nsel == 0)
		return true;
#pragma unroll
	for (int s = 0; s < G_SEL_LIMIT; s++) {
		if (s < nsel && pids_match(&h->sel[s], tgid) && binary_match(sc, &h->sel[s]))
			return true;
	}
	return false;
}

/* Whether a workload-scoped hook (containerSelector/hostSelector) runs for
 * the current task: its cgroup is one user space selected for this hook. */
static __always_inline bool in_scope(struct g_hook *h)
{
	if (!(h->flags & G_HOOK_CGROUPS))
		return true;
	struct g_cgroup_key key = {};
	key.cgroup_id = bpf_get_current_cgroup_id();
	key.hook_id = h->id;
	return cgroup_sel.lookup(&key) != NULL;
}

/* Entry of a hooked call: select and act (or, for a hook with a return
 * value, remember the arguments and the selector chosen). */
static __always_inline int on_entry(CTX_T *ctx)
{
	struct g_hook *h = find_hook(ctx);
	if (!h || !in_scope(h))
		return 0;
	u32 zero = 0;
	struct g_scratch *sc = scratch.lookup(&zero);
	if (!sc)
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tgid = pid_tgid >> 32;
	fill_common(sc, tgid, (u32)pid_tgid);
	if (!caller_wanted(sc, h, tgid))
		return 0;
	read_slots(ctx, sc);
	u32 failed = user_failures(sc);
#if G_RETRY
	if (failed && defer(sc, RETRY, (u32)pid_tgid)) {
		struct g_hook_stats *st = stats_of(h->id);
		if (st)
			__sync_fetch_and_add(&st->deferred, 1);
		return 0;           /* decided at sys_exit */
	}
#endif
	mark_unreadable(sc, h, failed);
	sc->unreadable_nomatch = h->flags & G_HOOK_UNREADABLE_NOMATCH;
	int s = select_entry(sc, h, tgid);
	if (s < 0)
		return 0;
#if !G_NEEDS_BINARY
	/* Which process: only once something matched (a hash lookup fewer
	 * on every call that matches nothing); load_binary already looked. */
	struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
	sc->msg.proc_ktime = e ? e->key.ktime : 0;
#endif

#if G_HAS_RETURN
	defer(sc, s, (u32)pid_tgid);
	return 0;
#else
	if (s == NO_SELECTORS)
		return run_actions(ctx, sc, h, NULL, 0, 0);
	struct g_selector *sel = &h->sel[at(s, G_MAX_SEL - 1)];
	return run_actions(ctx, sc, h, sel->act, sel->nact, s);
#endif
}

#if G_EXIT
/* Return of a hooked call: the return value, return-time buffers, then
 * matchReturnArgs and the actions of the selector chosen at entry; or, for
 * a call deferred at entry (RETRY), the second read of its user-memory
 * arguments, then selection and actions as at entry. The call has run:
 * a signal sent now is delivered before it returns to user code. */
static __always_inline int on_return(void *ctx, s64 retval)
{
	u32 zero = 0;
#if !G_HAS_RETURN
	u64 *deferred = deferred_now.lookup(&zero);
	if (!deferred || !*deferred)
		return 0;
#endif
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct g_pending *p = pending.lookup(&tid);
	if (!p)
		return 0;
	struct g_scratch *sc = scratch.lookup(&zero);
	if (!sc) {
		pending.delete(&tid);
		return 0;
	}
	bpf_probe_read_kernel(&sc->msg, sizeof(sc->msg), &p->msg);
	u8 sel_of[G_HOOKS_PER_KEY];
	__builtin_memcpy(sel_of, p->sel, sizeof(sel_of));
	u64 raw[G_MAX_ARGS];
	__builtin_memcpy(raw, p->raw, sizeof(raw));
#if G_RETRY
	if (sel_of[0] == RETRY) {
		u64 *n = deferred_now.lookup(&zero);
		if (n)
			__sync_fetch_and_add(n, -1);
		sc->bin_len = p->bin_len;
		sc->have_bin = p->have_bin;
		bpf_probe_read_kernel(sc->bin, sizeof(sc->bin), p->bin);
		bpf_probe_read_kernel(sc->bin_rev, sizeof(sc->bin_rev), p->bin_rev);
	}
#endif
	pending.delete(&tid);
	sc->msg.retval = retval;
#if G_HAS_RETURN
	sc->msg.flags |= G_MSG_RETURN;

#define RETCOPY(n)                                                                  \
	if (ARG##n##_RETCOPY) {                                                     \
		struct g_slot *s = &sc->msg.slots[n];                               \
		u32 len = retval < 0 ? 0 : (retval > G_STR_MAX ? G_STR_MAX : retval); \
		s->ival = retval;                                                   \
		s->len = len;                                                       \
		s->flags = retval > G_STR_MAX ? G_SLOT_TRUNC : 0;                   \
		if (len && bpf_probe_read_user(s->data, len & (G_STR_MAX * 2 - 1), (void *)raw[n]) < 0) \
			s->flags |= G_SLOT_ERROR;                                   \
	}
#if G_NARGS > 0
	RETCOPY(0)
#endif
#if G_NARGS > 1
	RETCOPY(1)
#endif
#if G_NARGS > 2
	RETCOPY(2)
#endif
#if G_NARGS > 3
	RETCOPY(3)
#endif
#if G_NARGS > 4
	RETCOPY(4)
#endif
#endif

	struct g_hook *h = find_hook(ctx);
	if (!h)
		return 0;
	u8 s = sel_of[0];
#if G_RETRY
	if (s == RETRY) {
		mark_unreadable(sc, h, reread_slots(sc, raw, user_failures(sc)));
		sc->unreadable_nomatch = h->flags & G_HOOK_UNREADABLE_NOMATCH;
		int found = select_entry(sc, h, sc->msg.pid);
		if (found < 0)
			return 0;
		s = found;
#if !G_NEEDS_BINARY
		/* As on_entry does once something matched. */
		u32 tgid = sc->msg.pid;
		struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
		sc->msg.proc_ktime = e ? e->key.ktime : 0;
#endif
	}
#endif
	if (s == NO_MATCH)
		return 0;
	if (s == NO_SELECTORS) {
		run_actions(ctx, sc, h, NULL, 0, 0);
		return 0;
	}
	struct g_selector *sel = &h->sel[at(s, G_MAX_SEL - 1)];
#if G_HAS_RETURN
	if (sel->has_ret && !eval_match(sc, &sel->ret_match))
		return 0;
	if (sel->nret_act) {
		run_actions(ctx, sc, h, sel->ret_act, sel->nret_act, s);
		return 0;
	}
#endif
	run_actions(ctx, sc, h, sel->act, sel->nact, s);
	return 0;
}
#endif

#if G_KIND == G_KIND_SYSCALL
int g_enter(void *ctx)
{
	return on_entry(ctx);
}
#if G_EXIT
int g_exit(void *ctx)
{
	return on_return(ctx, *(s64 *)((char *)ctx + 16));
}
#endif
#elif G_KIND == G_KIND_TRACEPOINT
int g_enter(void *ctx)
{
	return on_entry(ctx);
}
#elif G_KIND == G_KIND_LSM
#define G_CAT(a, b) a##b
#define G_LSM_FN(hook) G_CAT(lsm__, hook)
int G_LSM_FN(G_LSM_HOOK)(unsigned long long *ctx)
{
	return on_entry(ctx);
}
#else
int g_enter(struct pt_regs *ctx)
{
	return on_entry(ctx);
}
#if G_HAS_RETURN
int g_exit(struct pt_regs *ctx)
{
	return on_return(ctx, PT_REGS_RC(ctx));
}
#endif
#endif
