// A server process for the attribution tests: listens, accepts one connection with the
// system call asked for (accept or accept4), reads, says so, and never closes the
// connection itself: it waits for stdin to close, so the peer's reset ends the connection.
//
//   accept-server ADDRESS V6ONLY(0|1) accept|accept4
//   stdout: "port N", then "read N" once data arrived, then "reset" once the peer reset it
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void fail(const char *what)
{
	fprintf(stderr, "accept-server: %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int lfd, fd, one = 1;
	char buf[256];
	ssize_t n;

	if (argc != 4) {
		fprintf(stderr, "usage: accept-server ADDRESS V6ONLY accept|accept4\n");
		return 2;
	}
	if (strchr(argv[1], ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		int v6only = atoi(argv[2]);

		a->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, argv[1], &a->sin6_addr) != 1)
			fail("address");
		lfd = socket(AF_INET6, SOCK_STREAM, 0);
		if (lfd < 0 || setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)))
			fail("socket");
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		if (inet_pton(AF_INET, argv[1], &a->sin_addr) != 1)
			fail("address");
		lfd = socket(AF_INET, SOCK_STREAM, 0);
		if (lfd < 0)
			fail("socket");
		len = sizeof(*a);
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, 8))
		fail("listen");
	len = sizeof(ss);
	if (getsockname(lfd, (struct sockaddr *)&ss, &len))
		fail("getsockname");
	printf("port %d\n", ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							   : ((struct sockaddr_in *)&ss)->sin_port));
	fflush(stdout);

	fd = strcmp(argv[3], "accept") == 0 ? accept(lfd, NULL, NULL) : accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		fail(argv[3]);
	n = read(fd, buf, sizeof(buf));
	printf("read %zd\n", n);
	fflush(stdout);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	if (n < 0 && errno == ECONNRESET) {
		printf("reset\n");
		fflush(stdout);
	}
	/* the connection is never closed here before the test is done with it */
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}
