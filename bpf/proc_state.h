/* proc_state.h - a task's credentials and namespace inode numbers.
 *
 * No helper or tracepoint field gives these (bpf_get_current_uid_gid() has
 * only the real uid and gid), so they are read from the task's structs at
 * byte offsets from the running kernel's BTF (tetrad.bpf.offsets.py,
 * STATE_FIELDS), never from the installed headers. The offsets come as
 * -DOFF_* macros; TETRAD_HAVE_STATE says they all were found. Groups of
 * fields that sit close together are read with one bpf_probe_read_kernel()
 * each (the *_BLOCK_START/_LEN macros span them), which keeps a full read
 * to about fifteen helper calls.
 *
 * Credentials are the task's subjective ones (task->cred, what permission
 * checks use, as Tetragon reads them); they equal the objective ones
 * (real_cred, what /proc shows) at every place the process sensor reads
 * them. The pid namespace is the task's active one (what /proc/PID/ns/pid
 * names), from its struct pid, not nsproxy->pid_ns_for_children.
 *
 * Usable by any program that has the offsets: process.c, and policy programs
 * that want a task's values as they are at the hook rather than as the
 * process sensor last saw them (execve_map.h): read_state_creds() alone for
 * capabilities (~3 helper calls), read_state_ns() alone for namespaces
 * (~12), read_proc_state() for both.
 */
#ifndef TETRAD_PROC_STATE_H
#define TETRAD_PROC_STATE_H

#include "tetrad_events.h"

#ifdef TETRAD_HAVE_STATE

/* Field `off` of a block read from `start` into a u64 array. Copied, not
 * loaded through a cast: a field may sit at any multiple of its own
 * alignment (kernel_cap_t is u32[2] before 6.3), and older verifiers (6.1)
 * refuse a misaligned load from the stack. */
#define STATE_FIELD(buf, start, off, type) ({                               \
	type _field;                                                        \
	__builtin_memcpy(&_field, (char *)(buf) + ((off) - (start)), sizeof(_field)); \
	_field; })

static __always_inline u32 ns_inum(void *ns, u32 inum_off)
{
	u32 inum = 0;
	if (ns)
		bpf_probe_read_kernel(&inum, sizeof(inum), (char *)ns + inum_off);
	return inum;
}

static __always_inline void *block_ptr(u64 *buf, u32 start, u32 off)
{
	void *p = NULL;
	__builtin_memcpy(&p, (char *)buf + (off - start), sizeof(p));
	return p;
}

/* Credentials of `task` (a task_struct pointer) into *s: ids, securebits,
 * capabilities, the user namespace (also ns[TETRAD_NS_USER]). Returns the
 * TETRAD_STATE_* bits read; fields it could not read are left as they were. */
static __always_inline u32 read_state_creds(void *task, struct tetrad_proc_state *s)
{
	u64 cred[(CRED_BLOCK_LEN + 7) / 8];
	u64 uns[(USERNS_BLOCK_LEN + 7) / 8];
	void *p = NULL;
	u32 known = 0;

	bpf_probe_read_kernel(&p, sizeof(p), (char *)task + OFF_TASK_CRED);
	if (!p || bpf_probe_read_kernel(cred, CRED_BLOCK_LEN, (char *)p + CRED_BLOCK_START) != 0)
		return 0;
	s->uid = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_UID, u32);
	s->gid = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_GID, u32);
	s->suid = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_SUID, u32);
	s->sgid = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_SGID, u32);
	s->euid = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_EUID, u32);
	s->egid = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_EGID, u32);
	s->fsuid = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_FSUID, u32);
	s->fsgid = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_FSGID, u32);
	s->securebits = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_SECUREBITS, u32);
	/* kernel_cap_t: one u64 since 6.3, u32[2] (low word first) before */
	s->caps[TETRAD_CAPS_PERMITTED] = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_CAP_PERMITTED, u64);
	s->caps[TETRAD_CAPS_EFFECTIVE] = STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_CAP_EFFECTIVE, u64);
	s->caps[TETRAD_CAPS_INHERITABLE] =
		STATE_FIELD(cred, CRED_BLOCK_START, OFF_CRED_CAP_INHERITABLE, u64);
	known = TETRAD_STATE_CREDS | TETRAD_STATE_SECUREBITS;
	void *userns = block_ptr(cred, CRED_BLOCK_START, OFF_CRED_USER_NS);
	if (userns && bpf_probe_read_kernel(uns, USERNS_BLOCK_LEN,
					    (char *)userns + USERNS_BLOCK_START) == 0) {
		s->user_ns_level = STATE_FIELD(uns, USERNS_BLOCK_START, OFF_USERNS_LEVEL, s32);
		s->user_ns_owner = STATE_FIELD(uns, USERNS_BLOCK_START, OFF_USERNS_OWNER, u32);
		s->user_ns_group = STATE_FIELD(uns, USERNS_BLOCK_START, OFF_USERNS_GROUP, u32);
		s->ns[TETRAD_NS_USER] = STATE_FIELD(uns, USERNS_BLOCK_START, OFF_USERNS_INUM, u32);
		known |= TETRAD_STATE_USER_NS;
	}
	return known;
}

/* Namespace inode numbers of `task` but the user namespace's (which comes
 * with its credentials) into s->ns. Returns TETRAD_STATE_NS, or 0 when the
 * task has no namespaces any more (past exit_task_namespaces()). */
static __always_inline u32 read_state_ns(void *task, struct tetrad_proc_state *s)
{
	u64 nsp[(NSPROXY_BLOCK_LEN + 7) / 8];
	void *p = NULL;

	bpf_probe_read_kernel(&p, sizeof(p), (char *)task + OFF_TASK_NSPROXY);
	if (!p || bpf_probe_read_kernel(nsp, NSPROXY_BLOCK_LEN, (char *)p + NSPROXY_BLOCK_START) != 0)
		return 0;
	s->ns[TETRAD_NS_UTS] = ns_inum(block_ptr(nsp, NSPROXY_BLOCK_START, OFF_NSPROXY_UTS),
				       OFF_UTS_NS_INUM);
	s->ns[TETRAD_NS_IPC] = ns_inum(block_ptr(nsp, NSPROXY_BLOCK_START, OFF_NSPROXY_IPC),
				       OFF_IPC_NS_INUM);
	s->ns[TETRAD_NS_MNT] = ns_inum(block_ptr(nsp, NSPROXY_BLOCK_START, OFF_NSPROXY_MNT),
				       OFF_MNT_NS_INUM);
	s->ns[TETRAD_NS_PID_FOR_CHILDREN] =
		ns_inum(block_ptr(nsp, NSPROXY_BLOCK_START, OFF_NSPROXY_PID_FOR_CHILDREN),
			OFF_PID_NS_INUM);
	s->ns[TETRAD_NS_NET] = ns_inum(block_ptr(nsp, NSPROXY_BLOCK_START, OFF_NSPROXY_NET),
				       OFF_NET_NS_INUM);
#ifdef OFF_NSPROXY_TIME
	s->ns[TETRAD_NS_TIME] = ns_inum(block_ptr(nsp, NSPROXY_BLOCK_START, OFF_NSPROXY_TIME),
					OFF_TIME_NS_INUM);
	s->ns[TETRAD_NS_TIME_FOR_CHILDREN] =
		ns_inum(block_ptr(nsp, NSPROXY_BLOCK_START, OFF_NSPROXY_TIME_FOR_CHILDREN),
			OFF_TIME_NS_INUM);
#endif
#ifdef OFF_NSPROXY_CGROUP
	s->ns[TETRAD_NS_CGROUP] = ns_inum(block_ptr(nsp, NSPROXY_BLOCK_START, OFF_NSPROXY_CGROUP),
					  OFF_CGROUP_NS_INUM);
#endif
	/* task_active_pid_ns(): thread_pid->numbers[thread_pid->level].ns */
	void *pid = NULL;
	u32 level = 0;
	bpf_probe_read_kernel(&pid, sizeof(pid), (char *)task + OFF_TASK_THREAD_PID);
	if (pid && bpf_probe_read_kernel(&level, sizeof(level), (char *)pid + OFF_PID_LEVEL) == 0) {
		void *pidns = NULL;
		bpf_probe_read_kernel(&pidns, sizeof(pidns),
				      (char *)pid + OFF_PID_NUMBERS + (level & 31) * SIZEOF_UPID +
				      OFF_UPID_NS);
		s->ns[TETRAD_NS_PID] = ns_inum(pidns, OFF_PID_NS_INUM);
	}
	return TETRAD_STATE_NS;
}

/* All of it: *s from `task`; parts that cannot be read stay zero and are
 * left out of s->known. */
static __always_inline void read_proc_state(void *task, struct tetrad_proc_state *s)
{
	__builtin_memset(s, 0, sizeof(*s));
	u32 known = read_state_creds(task, s);
	known |= read_state_ns(task, s);
	s->known = known;
}

#endif /* TETRAD_HAVE_STATE */
#endif
