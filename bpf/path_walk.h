/* path_walk.h - d_path() for BPF programs that may not call it.
 *
 * bpf_d_path() is only allowed in a few hook types; tracepoints and kprobes
 * must walk dentries themselves. Struct fields are read at byte offsets
 * from the running kernel's BTF (-DOFF_*, tetrad.bpf.offsets.py), so
 * the walk is right even when the installed headers are for another kernel.
 * Used by the process sensor (binary, cwd) and policy programs (file, path,
 * fd arguments). Without BTF (TETRAD_NO_BTF) nothing here is defined.
 */
#ifndef TETRAD_PATH_WALK_H
#define TETRAD_PATH_WALK_H

#include "tetrad_events.h"

#define TETRAD_DEPTH_MASK 63            /* >= TETRAD_PATH_DEPTH - 1 */

/* Reads through map memory the compiler may not cache in a register, so the
 * verifier sees an unknown value and prunes a loop to one state per
 * iteration instead of one per (iteration, counter value) pair. */
#define LAUNDER(lvalue) (*(volatile typeof(lvalue) *)&(lvalue))

/* Hides a value's range from the compiler, so that a bound we state for
 * the verifier (a mask, a loop's constant limit) is not optimized away as
 * redundant (libbpf's barrier_var). */
#define BARRIER_VAR(var) asm volatile("" : "+r"(var))

static __always_inline void *read_ptr(void *addr)
{
	void *p = NULL;
	bpf_probe_read_kernel(&p, sizeof(p), addr);
	return p;
}

/* Per-CPU scratch for one walk: component name pointers, leaf first. */
struct walk_scratch {
	__u64 names[TETRAD_DEPTH_MASK + 1];
	__u32 n;
	__u32 pos;
};

#ifndef TETRAD_NO_BTF
/* Writes the path of (dentry, vfsmount) relative to the task's root into
 * data[base...] (offsets masked with `mask`, at most `limit` bytes), like
 * d_path(): components are collected leaf first, then written root first.
 * Sets `trunc_flag` in *flags when the path is cut. Returns the bytes
 * written (no NUL); nothing is written past data[base + limit]. */
static __always_inline u32 walk_path(char *data, u32 mask, u32 base, u32 limit,
				     struct walk_scratch *w, void *dentry, void *vfsmnt,
				     void *root_dentry, void *root_mnt,
				     u32 *flags, u32 trunc_flag)
{
	void *mnt = (char *)vfsmnt - OFF_MOUNT_MNT;

	w->n = 0;
	w->pos = 0;
	for (int i = 0; i < TETRAD_PATH_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt)
			goto collected;
		void *mnt_root = read_ptr((char *)vfsmnt + OFF_VFSMOUNT_MNT_ROOT);
		void *parent = read_ptr((char *)dentry + OFF_DENTRY_D_PARENT);
		if (dentry == mnt_root || dentry == parent) {
			void *mnt_parent = read_ptr((char *)mnt + OFF_MOUNT_MNT_PARENT);
			if (dentry != mnt_root || mnt_parent == mnt)
				goto collected;  /* global root, or a pseudo fs */
			dentry = read_ptr((char *)mnt + OFF_MOUNT_MNT_MOUNTPOINT);
			mnt = mnt_parent;
			vfsmnt = (char *)mnt + OFF_MOUNT_MNT;
			continue;
		}
		u32 n = LAUNDER(w->n);
		w->names[n & TETRAD_DEPTH_MASK] =
			(u64)read_ptr((char *)dentry + OFF_DENTRY_D_NAME + OFF_QSTR_NAME);
		LAUNDER(w->n) = n + 1;
		dentry = parent;
	}
	*flags |= trunc_flag;
collected:
	for (int j = 0; j < TETRAD_PATH_DEPTH; j++) {
		u32 n = LAUNDER(w->n);
		u32 pos = LAUNDER(w->pos);
		if (j >= n)
			break;
		if (pos + 2 > limit) {          /* room for '/' and one byte */
			*flags |= trunc_flag;
			break;
		}
		data[(base + pos) & mask] = '/';
		pos++;
		u32 room = limit - pos;
		if (room > TETRAD_NAME_READ)
			room = TETRAD_NAME_READ;
		BARRIER_VAR(room);
		room &= TETRAD_NAME_READ * 2 - 1;   /* a bound the verifier can see */
		long r = bpf_probe_read_kernel_str(&data[(base + pos) & mask], room,
						   (void *)w->names[(n - 1 - j) & TETRAD_DEPTH_MASK]);
		if (r > 1)
			pos += r - 1;
		LAUNDER(w->pos) = pos;
		if (r == room && room < TETRAD_NAME_READ) {   /* the name did not fit */
			*flags |= trunc_flag;
			break;
		}
	}
	if (LAUNDER(w->pos) == 0) {
		data[base & mask] = '/';
		LAUNDER(w->pos) = 1;
	}
	return LAUNDER(w->pos);
}

/* The current task's root (fs->root), where walks stop like d_path(). */
static __always_inline void task_root(void *task, void **dentry, void **mnt)
{
	void *fs = read_ptr((char *)task + OFF_TASK_FS);
	*mnt = read_ptr((char *)fs + OFF_FS_ROOT + OFF_PATH_MNT);
	*dentry = read_ptr((char *)fs + OFF_FS_ROOT + OFF_PATH_DENTRY);
}
#endif

#endif
