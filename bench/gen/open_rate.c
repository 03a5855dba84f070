/* open_rate RATE SECONDS PATH - openat(PATH)+close at a steady RATE per
 * second for SECONDS; prints the number of calls made.
 * A steady load, unlike open_loop's burst: below what the daemon can take,
 * so any event lost is lost to something else (a stalled reader). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s RATE SECONDS PATH\n", argv[0]);
		return 2;
	}
	double rate = atof(argv[1]), seconds = atof(argv[2]);
	double t0 = now();
	long done = 0;
	for (;;) {
		double elapsed = now() - t0;
		if (elapsed >= seconds)
			break;
		long due = (long)(elapsed * rate);
		for (; done < due; done++) {
			int fd = openat(AT_FDCWD, argv[3], O_RDONLY);
			if (fd < 0) {
				perror(argv[3]);
				return 1;
			}
			close(fd);
		}
		usleep(1000);
	}
	printf("%ld\n", done);
	return 0;
}
