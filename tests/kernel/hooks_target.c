/* hooks_target.c - the probed program of tests/kernel/test_hooks.py.
 *
 *   hooks_target A B S
 *
 * fires USDT probe tetrad:args (A, B, S, A + B, 42), then tetrad:gated
 * (A * 3 as a short, -7) only when its semaphore is set (a tracer
 * attached), calls tetrad_add(A, B), tetrad_sub(A, B) and
 * tetrad_greet(S) (which returns "hello S"), and prints
 * "gated=N sum diff greeting". Built twice by the test, -O0 (arguments in memory
 * below %rbp) and -O2 (in registers), so both kinds of USDT argument are
 * read. */
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>

unsigned short tetrad_args_semaphore __attribute__((unused, section(".probes")));
unsigned short tetrad_gated_semaphore __attribute__((unused, section(".probes")));

__attribute__((noinline)) long tetrad_add(long a, long b)
{
	asm volatile("");
	return a + b;
}

__attribute__((noinline)) long tetrad_sub(long a, long b)
{
	asm volatile("");
	return a - b;
}

__attribute__((noinline)) const char *tetrad_greet(const char *who)
{
	static char greeting[128];
	snprintf(greeting, sizeof(greeting), "hello %s", who);
	return greeting;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	long a = strtol(argv[1], 0, 0);
	int b = (int)strtol(argv[2], 0, 0);
	const char *s = argv[3];
	short c = (short)(a * 3);
	int gated = tetrad_gated_semaphore != 0;

	STAP_PROBE5(tetrad, args, a, b, s, a + b, 42);
	if (gated)
		STAP_PROBE2(tetrad, gated, c, -7);
	printf("gated=%d %ld %ld %s\n", gated, tetrad_add(a, b), tetrad_sub(a, b), tetrad_greet(s));
	return 0;
}
