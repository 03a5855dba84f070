/* process.c - the process lifecycle sensor: exec, fork, exit, and the
 * credentials and namespaces of every process.
 *
 * Layout-independent by construction: everything that identifies a process
 * comes from tracepoint fields and BPF helpers, so it is right on any
 * kernel. The enrichments read kernel structs — the arguments (the new
 * image's argument area, mm->arg_start..arg_end), the binary's resolved
 * path and the cwd (walking dentries), the login uid, and the credentials
 * and namespace inode numbers (bpf/proc_state.h) — and they use byte
 * offsets that user space computes from the running kernel's own BTF
 * (tetrad.bpf.offsets.py passes them as -DOFF_*), never the offsets of
 * whatever headers happen to be installed. Without BTF, TETRAD_NO_BTF is set:
 * paths are left to user space (flag noCWDSupport) and argv is read from the
 * caller's memory at syscall entry instead (see "argv"); credentials and
 * namespaces are then not tracked (TETRAD_HAVE_STATE unset).
 *
 * Hooks:
 *   sched:sched_process_exec            exec record; execve_map[tgid] updated
 *   syscalls:sys_enter_execve/execveat  without BTF only: argv -> exec_args[tid]
 *   task:task_newtask                   fork: execve_map[child] from parent,
 *                                       clone record; its clone_flags tell
 *                                       threads from processes without
 *                                       reading task_struct (which
 *                                       sched_process_fork would need). A raw
 *                                       tracepoint where credentials are
 *                                       tracked: it hands over the child's
 *                                       task, whose new namespaces and
 *                                       credentials (CLONE_NEW*) are read
 *   syscalls:sys_exit_set*id, capset,   credentials/namespaces changed after
 *     prctl, unshare, setns             exec: execve_map[tgid].state and a
 *                                       state record (see "state"); attached
 *                                       only when user space asks
 *   syscalls:sys_enter_exit_group/exit  exit code
 *   signal:signal_generate/deliver      death by signal (see exit_by_signal)
 *   sched:sched_process_exit            exit record when the group is dead
 *   cgroup:cgroup_mkdir/rmdir           cgroup v2 directories made/removed
 *
 * Policy programs write their records into the same ring buffer and match
 * on the binary, namespaces and capabilities of the current process from
 * execve_map; they read `shed`: their references to these maps are pointed
 * at this sensor's when they are loaded (shared_maps.h).
 */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
#include "tetrad_events.h"
#include "execve_map.h"
#include "shared_maps.h"
#include "path_walk.h"
#include "proc_state.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 2048          /* 8 MiB with 4 KiB pages */
#endif

#define DATA_MASK 0x3fff            /* data offsets are masked into 16 KiB */
#define DATA_SIZE (DATA_MASK + 1 + TETRAD_PATH_MAX)
#define FILENAME_READ 256

#define CLONE_THREAD_FLAG 0x00010000

struct exec_scratch {
	struct tetrad_msg_exec msg;
	char data[DATA_SIZE];
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_TABLE("hash", u32, struct tetrad_exec_entry, execve_map, EXECVE_MAP_ENTRIES);
/* Written by user space, read by policy programs (shared_maps.h). */
BPF_ARRAY(shed, u32, 1);
/* Not used here: owned here so that every policy program and enforcer
 * shares one (shared_maps.h). */
BPF_TABLE("lru_hash", u64, struct tetrad_enforce_note, enforce_notes, ENFORCE_NOTES);
BPF_PERCPU_ARRAY(exec_heap, struct exec_scratch, 1);
BPF_PERCPU_ARRAY(walk_heap, struct walk_scratch, 1);
/* Never written: the zero value new execve_map entries start from. */
BPF_PERCPU_ARRAY(zero_entry, struct tetrad_exec_entry, 1);
/* Records the ring buffer refused, by op code (user space sums the CPUs). */
BPF_PERCPU_ARRAY(ringbuf_drops, u64, 8);
/* execve_map updates that failed (map full). */
BPF_PERCPU_ARRAY(map_errors, u64, 1);

static __always_inline void count(void *table_lookup_result)
{
	u64 *n = table_lookup_result;
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void fill_header(struct tetrad_msg_header *h, u8 op, u16 size)
{
	h->op = op;
	h->pad0 = 0;
	h->size = size;
	h->cpu = bpf_get_smp_processor_id();
	h->ktime = bpf_ktime_get_ns();
}

/* ---- argv ------------------------------------------------------------------ *
 *
 * With BTF, sched_process_exec reads the arguments the kernel has copied into
 * the new image's argument area (what /proc/PID/cmdline shows): the kernel
 * has just written those pages, so they are present, and the new image has
 * run no code that could change them. Reading the caller's argv at syscall
 * entry instead fails for strings on pages the caller never touched (page
 * faults are disabled in BPF programs; issue 12) and races with other
 * threads of the caller. Policies that must act before the new image runs
 * (Sigkill on execve) hook the syscall themselves (bpf/generic_hook.c).
 *
 * Without BTF the argument area cannot be located, so argv is read from the
 * caller at entry, with those limits (flag errorArgs when a read fails).
 */
#ifdef TETRAD_NO_BTF
#define STASH_SIZE (TETRAD_ARGS_MAX + TETRAD_ARG_READ)

struct args_stash {
	__u32 len;
	__u32 flags;
	char buf[STASH_SIZE];
};

BPF_TABLE("lru_hash", u32, struct args_stash, exec_args, 1024);
BPF_PERCPU_ARRAY(args_heap, struct args_stash, 1);

static __always_inline int stash_args(const char *const *argv)
{
	u32 zero = 0;
	struct args_stash *st = args_heap.lookup(&zero);
	if (!st)
		return 0;
	u32 tid = (u32)bpf_get_current_pid_tgid();

	st->flags = 0;
	st->len = 0;
	for (int i = 0; i < TETRAD_MAX_ARGS; i++) {
		u32 off = LAUNDER(st->len);   /* see walk_path */
		const char *arg = NULL;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) < 0) {
			st->flags |= TETRAD_F_ERROR_ARGS;
			break;
		}
		if (!arg)
			break;
		if (off >= TETRAD_ARGS_MAX) {
			st->flags |= TETRAD_F_TRUNC_ARGS;
			break;
		}
		long n = bpf_probe_read_user_str(&st->buf[off & (TETRAD_ARGS_MAX - 1)],
						 TETRAD_ARG_READ, arg);
		if (n < 0) {
			st->flags |= TETRAD_F_ERROR_ARGS;
			break;
		}
		if (n == TETRAD_ARG_READ)
			st->flags |= TETRAD_F_TRUNC_ARGS;
		LAUNDER(st->len) = off + n;
	}
	if (st->len > TETRAD_ARGS_MAX) {
		st->len = TETRAD_ARGS_MAX;
		st->flags |= TETRAD_F_TRUNC_ARGS;
	}
	exec_args.update(&tid, st);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
	return stash_args((const char *const *)args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
	return stash_args((const char *const *)args->argv);
}
#else
/* The argument area of `mm` (the current, new image) into data[0...];
 * returns the bytes kept. */
static __always_inline u32 read_arg_area(char *data, void *mm, u32 *flags)
{
	unsigned long start = 0, end = 0;
	bpf_probe_read_kernel(&start, sizeof(start), (char *)mm + OFF_MM_ARG_START);
	bpf_probe_read_kernel(&end, sizeof(end), (char *)mm + OFF_MM_ARG_END);
	if (!mm || end < start) {
		*flags |= TETRAD_F_ERROR_ARGS;
		return 0;
	}
	u64 len = end - start;
	if (len > TETRAD_ARGS_MAX) {
		len = TETRAD_ARGS_MAX;
		*flags |= TETRAD_F_TRUNC_ARGS;
	}
	u32 n = len;
	BARRIER_VAR(n);
	n &= TETRAD_ARGS_MAX * 2 - 1;      /* a bound the verifier can see */
	if (n && bpf_probe_read_user(data, n, (void *)start) < 0) {
		*flags |= TETRAD_F_ERROR_ARGS;
		return 0;
	}
	if (len == TETRAD_ARGS_MAX && (*flags & TETRAD_F_TRUNC_ARGS))
		data[TETRAD_ARGS_MAX - 1] = 0;  /* keep the cut argument, terminated */
	return len;
}
#endif

/* ---- path walk with BTF-derived offsets ---------------------------------- */


/* ---- exec ----------------------------------------------------------------- */

TRACEPOINT_PROBE(sched, sched_process_exec)
{
	u32 zero = 0;
	struct exec_scratch *s = exec_heap.lookup(&zero);
	struct walk_scratch *w = walk_heap.lookup(&zero);
	if (!s || !w)
		return 0;

	u64 pid_tgid = bpf_get_current_pid_tgid();
	u64 uid_gid = bpf_get_current_uid_gid();
	u32 tgid = pid_tgid >> 32;
	struct tetrad_msg_exec *m = &s->msg;
	u32 off = 0;

	fill_header(&m->hdr, TETRAD_OP_EXEC, 0);
	m->pid = tgid;
	m->tid = (u32)pid_tgid;
	m->uid = (u32)uid_gid;
	m->gid = uid_gid >> 32;
	m->auid = (u32)-1;
	m->cgroup_id = bpf_get_current_cgroup_id();
	m->flags = TETRAD_F_EXECVE;

#ifdef TETRAD_NO_BTF
	u32 old_tid = args->old_pid;
	struct args_stash *st = exec_args.lookup(&old_tid);
	if (st) {
		u32 len = st->len;
		if (len > TETRAD_ARGS_MAX)
			len = TETRAD_ARGS_MAX;
		bpf_probe_read_kernel(s->data, len & (TETRAD_ARGS_MAX * 2 - 1), st->buf);
		m->flags |= st->flags;
		off = len;
		exec_args.delete(&old_tid);
	} else {
		m->flags |= TETRAD_F_MISS;
	}
	m->args_len = off;
#endif

#ifndef TETRAD_NO_BTF
	void *task = (void *)bpf_get_current_task();
	void *mm = read_ptr((char *)task + OFF_TASK_MM);
	off = read_arg_area(s->data, mm, &m->flags);
	m->args_len = off;
	void *fs = read_ptr((char *)task + OFF_TASK_FS);
	void *root_mnt = read_ptr((char *)fs + OFF_FS_ROOT + OFF_PATH_MNT);
	void *root_dentry = read_ptr((char *)fs + OFF_FS_ROOT + OFF_PATH_DENTRY);
	void *exe = read_ptr((char *)mm + OFF_MM_EXE_FILE);
	u32 len;

	if (exe) {
		len = walk_path(s->data, DATA_MASK, off, TETRAD_PATH_MAX, w,
				read_ptr((char *)exe + OFF_FILE_F_PATH + OFF_PATH_DENTRY),
				read_ptr((char *)exe + OFF_FILE_F_PATH + OFF_PATH_MNT),
				root_dentry, root_mnt, &m->flags, TETRAD_F_TRUNC_FILE);
	} else {
		len = 0;
		m->flags |= TETRAD_F_ERROR_FILE;
	}
	m->exe_len = len;
	off += len;

	len = walk_path(s->data, DATA_MASK, off, TETRAD_PATH_MAX, w,
			read_ptr((char *)fs + OFF_FS_PWD + OFF_PATH_DENTRY),
			read_ptr((char *)fs + OFF_FS_PWD + OFF_PATH_MNT),
			root_dentry, root_mnt, &m->flags, TETRAD_F_TRUNC_CWD);
	if (len == 1)
		m->flags |= TETRAD_F_ROOT_CWD;
	m->cwd_len = len;
	off += len;

#ifdef OFF_TASK_LOGINUID
	bpf_probe_read_kernel(&m->auid, sizeof(m->auid), (char *)task + OFF_TASK_LOGINUID);
#endif
#else
	m->exe_len = 0;
	m->cwd_len = 0;
	m->flags |= TETRAD_F_NO_CWD;
#endif

#ifdef TETRAD_HAVE_STATE
	read_proc_state((void *)bpf_get_current_task(), &m->state);
#else
	__builtin_memset(&m->state, 0, sizeof(m->state));
#endif

	unsigned short loc = args->data_loc_filename & 0xFFFF;
	long fl = bpf_probe_read_kernel_str(&s->data[off & DATA_MASK], FILENAME_READ,
					    (char *)args + loc);
	if (fl > 1) {
		m->filename_len = fl - 1;
		off += fl - 1;
	} else {
		m->filename_len = 0;
	}

	/* Update the kernel's view before emitting, so a policy program that
	 * runs for the new image already sees its binary. */
	struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
	if (!e) {
		struct tetrad_exec_entry *fresh = zero_entry.lookup(&zero);
		if (fresh)
			e = execve_map.lookup_or_try_init(&tgid, fresh);
		if (!e) {
			count(map_errors.lookup(&zero));
			__builtin_memset(&m->parent, 0, sizeof(m->parent));
			goto emit;
		}
	} else if (e->flags & TETRAD_F_CLONE && !(e->flags & TETRAD_F_EXECVE)) {
		m->flags |= TETRAD_F_CLONE;
	}
	m->parent = e->parent;
	e->key.pid = tgid;
	e->key.ktime = m->hdr.ktime;
	e->flags = m->flags;
	e->threads = 1;
	e->exit_how = 0;
	e->exit_code = 0;
	e->sig_candidate = 0;
	e->thread_code = 0;
	__builtin_memcpy(&e->exec_state, &m->state, sizeof(m->state));
	__builtin_memcpy(&e->state, &m->state, sizeof(m->state));
#ifndef TETRAD_NO_BTF
	{
		u32 blen = m->exe_len;
		if (blen > TETRAD_BINARY_MAX - 1)
			blen = TETRAD_BINARY_MAX - 1;
		bpf_probe_read_kernel(e->binary, blen & (TETRAD_BINARY_MAX - 1),
				      &s->data[m->args_len & DATA_MASK]);
		e->binary[blen & (TETRAD_BINARY_MAX - 1)] = 0;
		e->bin_len = blen;
	}
#endif

emit:;
	u32 size = sizeof(*m) + (off & DATA_MASK);
	m->hdr.size = size;
	if (events.ringbuf_output(m, size, TETRAD_RB_FLAGS) < 0) {
		u32 op = TETRAD_OP_EXEC;
		count(ringbuf_drops.lookup(&op));
	}
	return 0;
}

/* ---- fork ----------------------------------------------------------------- */

/* `task` is the child's task_struct where credentials are tracked (the raw
 * tracepoint's argument), else NULL. */
static __always_inline int on_fork(u32 child, u64 clone_flags, void *task)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tetrad_exec_entry *parent = execve_map.lookup(&tgid);
	if (!parent)
		return 0;   /* kernel threads, or a parent we never learned */

	if (clone_flags & CLONE_THREAD_FLAG) {
#ifndef TETRAD_HAVE_GROUP_DEAD
		__sync_fetch_and_add(&parent->threads, 1);
#endif
		return 0;
	}

	if (execve_map.update(&child, parent) < 0) {
		u32 zero = 0;
		count(map_errors.lookup(&zero));
		return 0;
	}
	struct tetrad_exec_entry *c = execve_map.lookup(&child);
	if (!c)
		return 0;
	c->parent = c->key;
	c->key.pid = child;
	c->key.ktime = bpf_ktime_get_ns();
	c->flags = TETRAD_F_CLONE | (c->flags & ~(TETRAD_F_EXECVE | TETRAD_F_PROCFS));
	c->threads = 1;
	c->exit_how = 0;
	c->exit_code = 0;
	c->sig_candidate = 0;
	c->thread_code = 0;
	/* The child runs its parent's image: exec_state stays the parent's,
	 * so a child made with CLONE_NEW* differs from it as it would after
	 * unshare(). `state` is the child's own. */
#ifdef TETRAD_HAVE_STATE
	read_proc_state(task, &c->state);
#endif

	struct tetrad_msg_clone *m = events.ringbuf_reserve(sizeof(struct tetrad_msg_clone));
	if (!m) {
		u32 op = TETRAD_OP_CLONE;
		count(ringbuf_drops.lookup(&op));
		return 0;
	}
	fill_header(&m->hdr, TETRAD_OP_CLONE, sizeof(*m));
	c->key.ktime = m->hdr.ktime;
	m->proc = c->key;
	m->parent = c->parent;
	m->flags = c->flags;
	m->pad = 0;
	__builtin_memcpy(&m->state, &c->state, sizeof(m->state));
	events.ringbuf_submit(m, TETRAD_RB_FLAGS);
	return 0;
}

#ifdef TETRAD_HAVE_STATE
/* task_newtask(struct task_struct *task, unsigned long clone_flags) */
RAW_TRACEPOINT_PROBE(task_newtask)
{
	void *task = (void *)ctx->args[0];
	u32 child = 0;
	bpf_probe_read_kernel(&child, sizeof(child), (char *)task + OFF_TASK_PID);
	return on_fork(child, ctx->args[1], task);
}
#else
TRACEPOINT_PROBE(task, task_newtask)
{
	return on_fork(args->pid, args->clone_flags, NULL);
}
#endif

/* ---- state ------------------------------------------------------------------ *
 *
 * execve_map[tgid].state follows credentials and namespaces that change after
 * exec while user space has follow_state attached: at the exit of each
 * syscall that can change them, the calling thread's values are read again;
 * when they differ from what the entry holds, the entry is updated and a
 * state record tells user space (the process's later events carry the new
 * values). Without it, `state` is as at the last exec or fork. A fork reads
 * the child's own (clone flags CLONE_NEW*), an exec starts over (setuid
 * binaries, file capabilities, the time namespace for children becoming
 * the task's).
 *
 * What following misses (execve_map.state stays as last seen until the next
 * exec or the next of these syscalls in the process):
 *   - 32-bit compat syscalls (x86 int 0x80, ia32 setuid32, ...): syscall
 *     tracepoints do not fire for them;
 *   - changes not made by these syscalls: credentials another task's
 *     keyctl(KEYCTL_SESSION_TO_PARENT) installs, LSM-specific changes;
 *   - per-thread differences: credentials belong to threads; the entry holds
 *     those of the thread that changed last (glibc changes all threads);
 *   - failed reads (a kernel page that cannot be read): the entry keeps
 *     its previous values.
 * Fields that are not tracked at all: supplementary groups, the bounding
 * and ambient capability sets.
 */
#ifdef TETRAD_HAVE_STATE
BPF_PERCPU_ARRAY(state_heap, struct tetrad_proc_state, 1);

static __always_inline bool same_state(struct tetrad_proc_state *a, struct tetrad_proc_state *b)
{
	u64 *x = (u64 *)a, *y = (u64 *)b;
	u64 diff = 0;
#pragma unroll
	for (int i = 0; i < sizeof(*a) / 8; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

static __always_inline int refresh_state(int syscall)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tgid = pid_tgid >> 32;
	u32 zero = 0;
	struct tetrad_exec_entry *e = execve_map.lookup(&tgid);
	struct tetrad_proc_state *s = state_heap.lookup(&zero);
	if (!e || !s)
		return 0;
	read_proc_state((void *)bpf_get_current_task(), s);
	if (same_state(s, &e->state))
		return 0;
	__builtin_memcpy(&e->state, s, sizeof(*s));

	struct tetrad_msg_state *m = events.ringbuf_reserve(sizeof(struct tetrad_msg_state));
	if (!m) {
		u32 op = TETRAD_OP_STATE;
		count(ringbuf_drops.lookup(&op));
		return 0;
	}
	fill_header(&m->hdr, TETRAD_OP_STATE, sizeof(*m));
	m->proc = e->key;
	m->tid = (u32)pid_tgid;
	m->syscall = syscall;
	__builtin_memcpy(&m->state, s, sizeof(*s));
	events.ringbuf_submit(m, TETRAD_RB_FLAGS);
	return 0;
}

/* Attached by user space, on demand, to syscalls:sys_exit_* of the
 * syscalls above (tetrad/sensors/process.py, STATE_SYSCALLS): a syscall
 * tracepoint costs every syscall of the system a little once one is in
 * use. All sys_exit_* records start alike; where their fields are comes
 * from tracefs (-DSYS_EXIT_NR). A failed call changed nothing and is
 * found equal. */
#ifdef SYS_EXIT_NR
int follow_state(void *ctx)
{
	return refresh_state(*(int *)((char *)ctx + SYS_EXIT_NR));
}
#endif
#endif

/* ---- exit status ---------------------------------------------------------- */

static __always_inline struct tetrad_exec_entry *current_entry(void)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	return execve_map.lookup(&tgid);
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit_group)
{
	struct tetrad_exec_entry *e = current_entry();
	if (e && !e->exit_how) {
		e->exit_how = TETRAD_EXIT_CODE;
		e->exit_code = args->error_code & 0xff;
	}
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit)
{
	struct tetrad_exec_entry *e = current_entry();
	if (e)
		e->thread_code = 0x100 | (args->error_code & 0xff);
	return 0;
}

/* Signals whose default action ends the process (not ignore/stop/continue). */
static __always_inline bool default_fatal(int sig)
{
	switch (sig) {
	case 17: /* SIGCHLD */
	case 18: /* SIGCONT */
	case 19: /* SIGSTOP */
	case 20: /* SIGTSTP */
	case 21: /* SIGTTIN */
	case 22: /* SIGTTOU */
	case 23: /* SIGURG */
	case 28: /* SIGWINCH */
		return false;
	}
	return sig > 0 && sig < 65;
}

/* A fatal signal sent to a process (process-directed signals name the
 * leader, whose pid is the tgid). The kernel may turn it straight into a
 * group exit that each thread then "delivers" as SIGKILL, so remember the
 * real signal here. */
TRACEPOINT_PROBE(signal, signal_generate)
{
	if (args->result != 0 || !default_fatal(args->sig))
		return 0;
	u32 pid = args->pid;
	struct tetrad_exec_entry *e = execve_map.lookup(&pid);
	if (e && !e->exit_how)
		e->sig_candidate = args->sig;
	return 0;
}

/* The current thread takes a signal: with a handler it survives; with the
 * default action of a fatal signal the whole process dies of it. */
TRACEPOINT_PROBE(signal, signal_deliver)
{
	struct tetrad_exec_entry *e = current_entry();
	if (!e || e->exit_how)
		return 0;
	int sig = args->sig;
	if (args->sa_handler != 0) {   /* SIG_DFL is 0 */
		if (e->sig_candidate == sig)
			e->sig_candidate = 0;
		return 0;
	}
	if (!default_fatal(sig))
		return 0;
	e->exit_how = TETRAD_EXIT_SIGNAL;
	e->exit_code = (sig == 9 && e->sig_candidate) ? e->sig_candidate : sig;
	return 0;
}

/* ---- exit ----------------------------------------------------------------- */

TRACEPOINT_PROBE(sched, sched_process_exit)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tgid = pid_tgid >> 32;
	u32 tid = (u32)pid_tgid;
	struct tetrad_exec_entry *e = execve_map.lookup(&tgid);

#ifdef TETRAD_NO_BTF
	exec_args.delete(&tid);
#endif
#ifdef TETRAD_HAVE_GROUP_DEAD
	if (!args->group_dead)
		return 0;
#else
	/* Count live tasks instead. The atomic's return value needs BPF
	 * atomics with fetch (-mcpu=v3), which bcc does not ask LLVM for, so
	 * read the counter back: two threads dying together may both see 0,
	 * and the delete below lets only one of them report. */
	if (e) {
		__sync_fetch_and_add(&e->threads, -1);
		if (e->threads > 0)
			return 0;
	} else if (tid != tgid) {
		return 0;
	}
#endif

	struct tetrad_msg_exit m = {};
	fill_header(&m.hdr, TETRAD_OP_EXIT, sizeof(m));
	m.pid = tgid;
	m.tid = tid;
	m.cgroup_id = bpf_get_current_cgroup_id();
	if (e) {
		m.proc = e->key;
		m.parent = e->parent;
		if (e->exit_how) {
			m.how = e->exit_how;
			m.code = e->exit_code;
		} else if (e->sig_candidate) {
			m.how = TETRAD_EXIT_SIGNAL;
			m.code = e->sig_candidate;
		} else if (e->thread_code & 0x100) {
			m.how = TETRAD_EXIT_CODE;
			m.code = e->thread_code & 0xff;
		}
		if (execve_map.delete(&tgid) < 0)
			return 0;   /* another dying thread reported it */
	} else {
		m.proc.pid = tgid;
	}
	if (events.ringbuf_output(&m, sizeof(m), TETRAD_RB_FLAGS) < 0) {
		u32 op = TETRAD_OP_EXIT;
		count(ringbuf_drops.lookup(&op));
	}
	return 0;
}

/* ---- cgroups ---------------------------------------------------------------- */

/* New and removed cgroup v2 directories (hierarchy id 0; v1 hierarchies of
 * hybrid hosts are left out: bpf_get_current_cgroup_id() reports v2 ids).
 * The tracepoint hands over the id and the path, so user space needs no
 * lookup and sees even a cgroup that is gone again. */
static __always_inline int cgroup_record(u8 op, int root, u64 id, int level, void *path)
{
	if (root != 0)
		return 0;
	struct tetrad_msg_cgroup *m = events.ringbuf_reserve(sizeof(struct tetrad_msg_cgroup));
	if (!m) {
		u32 key = op;
		count(ringbuf_drops.lookup(&key));
		return 0;
	}
	fill_header(&m->hdr, op, sizeof(*m));
	m->id = id;
	m->level = level;
	m->pad = 0;
	long n = bpf_probe_read_kernel_str(m->path, sizeof(m->path), path);
	m->path_len = n > 0 ? n - 1 : 0;
	events.ringbuf_submit(m, TETRAD_RB_FLAGS);
	return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
	return cgroup_record(TETRAD_OP_CGROUP_MKDIR, args->root, args->id, args->level,
			     (char *)args + (args->data_loc_path & 0xFFFF));
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
	return cgroup_record(TETRAD_OP_CGROUP_RMDIR, args->root, args->id, args->level,
			     (char *)args + (args->data_loc_path & 0xFFFF));
}
