/* Attack programs of issue 12 §1: strings the kernel reads, on pages never
 * touched by this process before the system call.
 *
 * The strings live in a file mapped MAP_PRIVATE and read-only: mmap() does
 * not fault its pages in, and nothing here reads them, so the first access
 * is the kernel's own copy inside the call. A BPF program reading them at
 * syscall entry (with page faults disabled) fails with -EFAULT.
 *
 *   untouched open FILE [touch]    openat(path in FILE); prints "opened"
 *   untouched open-in DIR FILE     openat(DIR's descriptor, path in FILE, a
 *                                  path relative to DIR); prints "opened"
 *   untouched open-none            openat(a pointer to a PROT_NONE page): the
 *                                  kernel cannot read it either (EFAULT)
 *   untouched exec FILE PROG LEN...  execv(PROG, argv from FILE: strings of
 *                                  lengths LEN..., NUL separated); PROG "-":
 *                                  the program path is argv[0], from FILE too
 *   untouched exec-storm FILE PROG N LEN...  N times fork, then that execv in
 *                                  the child (which inherits the untouched
 *                                  mapping); prints the children that exited 0
 *
 * With "touch", the page is read before the call (the control that shows
 * the policy itself matches). Lengths come on the command line so that
 * nothing here reads the mapped page.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>

static char *map(const char *file, size_t *size)
{
	int fd = open(file, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(file);
		return NULL;
	}
	char *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("mmap");
		return NULL;
	}
	*size = st.st_size;
	return p;
}

int main(int argc, char **argv)
{
	size_t size;
	if (argc == 2 && !strcmp(argv[1], "open-none")) {
		char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (none == MAP_FAILED || openat(AT_FDCWD, none, O_RDONLY) < 0) {
			perror("openat");
			return 1;
		}
		puts("opened");
		return 0;
	}
	if (argc < 3)
		return 2;
	if (!strcmp(argv[1], "open-in") && argc > 3) {
		char *rel = map(argv[3], &size);
		int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
		if (!rel || dir < 0 || openat(dir, rel, O_RDONLY) < 0) {
			perror("openat");
			return 1;
		}
		puts("opened");
		return 0;
	}
	char *p = map(argv[2], &size);
	if (!p)
		return 2;
	if (!strcmp(argv[1], "open")) {
		if (argc > 3 && !strcmp(argv[3], "touch"))
			(void)*(volatile char *)p;
		int fd = openat(AT_FDCWD, p, O_RDONLY);
		if (fd < 0) {
			perror("openat");
			return 1;
		}
		puts("opened");
		return 0;
	}
	int storm = !strcmp(argv[1], "exec-storm");
	int first = storm ? 5 : 4;
	if ((storm || !strcmp(argv[1], "exec")) && argc > first) {
		char *args[64];
		size_t at = 0;
		int n = 0;
		for (int i = first; i < argc && n < 63; i++) {
			args[n++] = p + at;
			at += strtol(argv[i], NULL, 10) + 1;
		}
		args[n] = NULL;
		const char *prog = strcmp(argv[3], "-") ? argv[3] : args[0];
		if (!storm) {
			execv(prog, args);
			perror("execv");
			return 1;
		}
		long times = strtol(argv[4], NULL, 10), ok = 0;
		for (long i = 0; i < times; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				execv(prog, args);
				_exit(127);
			}
			int status;
			if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
			    !WEXITSTATUS(status))
				ok++;
		}
		printf("%ld\n", ok);
		return 0;
	}
	return 2;
}
