/* enforcer.c - makes a syscall fail where a policy decided it should.
 *
 * A syscall hook runs on the syscall's entry tracepoint, which cannot change
 * what the call returns. When its selector says Override, or any hook says
 * NotifyEnforcer, the policy program leaves a note for the thread
 * (enforce_notes, shared_maps.h); this program, on the syscall's own
 * function, takes the note and returns its error instead of running the
 * syscall (after sending its signal, if any). It runs as a fmod_ret program
 * on the syscall function (e_fmodret), or where the kernel lacks those but
 * has kprobe override, as a kprobe (e_kprobe). One copy is loaded per
 * syscall, with the syscall's number patched in for POINT_MAGIC
 * (tetrad/sensors/bpfobject.py): a note for another syscall is left alone.
 *
 * The note is taken before the function body runs: no part of the syscall
 * happens. A note whose syscall never comes stays until the thread's next
 * enforced syscall of that number, or the LRU map forgets it.
 */
#include <uapi/linux/ptrace.h>
#include "shared_maps.h"

TETRAD_SHARED_MAPS;

#define POINT_MAGIC 0x7e7a5e0f7e7a5e0fULL

static __always_inline u32 this_syscall(void)
{
	u64 v;
	asm volatile("%0 = %1 ll" : "=r"(v) : "i"(POINT_MAGIC));
	return (u32)v;
}

/* The error to return, 0 for none. */
static __always_inline int take_note(void)
{
	u64 id = bpf_get_current_pid_tgid();
	struct tetrad_enforce_note *n = enforce_notes.lookup(&id);
	if (!n)
		return 0;
	u32 nr = n->nr;
	if (nr != TETRAD_ANY_SYSCALL && nr != this_syscall())
		return 0;
	int error = n->error;
	u32 sig = n->sig;
	enforce_notes.delete(&id);
	if (sig)
		bpf_send_signal(sig);
	return error;
}

int e_fmodret(unsigned long long *ctx)
{
	return take_note();
}

int e_kprobe(struct pt_regs *ctx)
{
	int error = take_note();
	if (error)
		bpf_override_return(ctx, (unsigned long)(long)error);
	return 0;
}
