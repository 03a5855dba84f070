/* open_flood N PATH - openat(PATH) N times as fast as it can, whether or
 * not the open succeeds (an unprivileged user's open of /etc/shadow fails
 * with EACCES, but its syscall entry is traced all the same); prints N. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s N PATH\n", argv[0]);
		return 2;
	}
	long n = atol(argv[1]);
	for (long i = 0; i < n; i++) {
		int fd = openat(AT_FDCWD, argv[2], O_RDONLY);
		if (fd >= 0)
			close(fd);
	}
	printf("%ld\n", n);
	return 0;
}
