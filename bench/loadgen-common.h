// loadgen-common.h: what the loopback load generators (connload, bulkload)
// share: option parsing, the loopback-only address check, CPU pinning, the
// deadline timer and the listening socket. Everything is static, so each
// program includes this header once and carries its own copy.
//
// Call loadgen_init() first thing in main(): every message printed from here
// starts with the program name given there.
#ifndef LOADGEN_COMMON_H
#define LOADGEN_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// Longest run accepted, so a typo cannot start an hour-long load.
#define MAX_SECONDS 3600.0
// After the deadline, blocking calls get this long to return before the
// process gives up and exits on its own.
#define GRACE_SECONDS 2

// Options every load generator takes.
struct loadgen_options {
  int port;
  const char *addr;
  double seconds;
  int cpu;        // -1: no pinning
  int server_cpu; // -1: no pinning
};

static volatile sig_atomic_t stop;
static volatile sig_atomic_t alarms;

static const char *prog = "loadgen";
static const char *usage_line = "";
// Prebuilt so the signal handler can print it with a single write().
static char stuck_msg[128];
static size_t stuck_len;

// prog: the name that prefixes every message; usage: the "usage: ..." line
// (without its newline) printed after an option error.
static void loadgen_init(const char *name, const char *usage) {
  prog = name;
  usage_line = usage;
  int n = snprintf(stuck_msg, sizeof stuck_msg, "%s: still running after the deadline; exiting\n", name);
  stuck_len = n < 0 ? 0 : (size_t)n < sizeof stuck_msg ? (size_t)n : sizeof stuck_msg - 1;
}

static void usage_exit(const char *why) {
  fprintf(stderr, "%s: %s\n%s\n", prog, why, usage_line);
  exit(2);
}

// perror() with the program name in front.
static void fail(const char *what) {
  fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
}

static long parse_long(const char *flag, const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "%s: %s wants an integer in [%ld, %ld], got '%s'\n", prog, flag, min, max, s);
    exit(2);
  }
  return v;
}

// Parses the common options into o. flag, when not NULL, is offered every
// argument first: it returns nonzero if it took it as an option without a
// value (a program-specific switch); ctx is passed through to it.
static void parse_args(int argc, char **argv, struct loadgen_options *o, int (*flag)(const char *arg, void *ctx),
                       void *ctx) {
  *o = (struct loadgen_options){.port = 0, .addr = "127.0.0.1", .seconds = 0, .cpu = -1, .server_cpu = -1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (flag && flag(a, ctx)) continue;
    if (i + 1 >= argc) usage_exit("missing value after an option");
    const char *v = argv[++i];
    if (!strcmp(a, "--port")) o->port = (int)parse_long(a, v, 1, 65535);
    else if (!strcmp(a, "--addr")) o->addr = v;
    else if (!strcmp(a, "--cpu")) o->cpu = (int)parse_long(a, v, 0, CPU_SETSIZE - 1);
    else if (!strcmp(a, "--server-cpu")) o->server_cpu = (int)parse_long(a, v, 0, CPU_SETSIZE - 1);
    else if (!strcmp(a, "--seconds")) {
      char *end;
      o->seconds = strtod(v, &end);
      if (*v == '\0' || *end != '\0' || !(o->seconds > 0 && o->seconds <= MAX_SECONDS))
        usage_exit("--seconds wants a number in (0, 3600]");
    } else {
      fprintf(stderr, "%s: unknown option '%s'\n", prog, a);
      usage_exit("see usage");
    }
  }
  if (!o->port) usage_exit("--port is required");
  if (!(o->seconds > 0)) usage_exit("--seconds is required");
}

// Fills sa with addr:port, refusing anything that is not loopback: these tools
// flood their target and must never be pointed at another machine.
static socklen_t loopback_sockaddr(const char *addr, int port, struct sockaddr_storage *sa) {
  memset(sa, 0, sizeof *sa);
  struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
  if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
    if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127) goto not_loopback;
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    return sizeof *in4;
  }
  if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) goto not_loopback;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    return sizeof *in6;
  }
  fprintf(stderr, "%s: --addr '%s' is not an IPv4 or IPv6 address\n", prog, addr);
  exit(2);
not_loopback:
  fprintf(stderr, "%s: --addr '%s' is not loopback; only 127.0.0.0/8 and ::1 are allowed\n", prog, addr);
  exit(2);
}

static void pin(int cpu, const char *who) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) {
    fprintf(stderr, "%s: pinning the %s to CPU %d: %s (see nproc / taskset -p $$)\n", prog, who, cpu,
            strerror(errno));
    exit(1);
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// First SIGALRM (at the deadline) asks the loops to stop and, being installed
// without SA_RESTART, interrupts any blocking call with EINTR. If the timer
// fires again GRACE_SECONDS later, something is stuck: exit regardless.
static void on_alarm(int sig) {
  (void)sig;
  stop = 1;
  if (++alarms > 1) {
    ssize_t ignored = write(2, stuck_msg, stuck_len);
    (void)ignored;
    _exit(3);
  }
}

static void arm_deadline(double seconds) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {
      .it_value = {.tv_sec = (time_t)seconds, .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)},
      .it_interval = {.tv_sec = GRACE_SECONDS, .tv_usec = 0},
  };
  if (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0) it.it_value.tv_usec = 1;
  setitimer(ITIMER_REAL, &it, NULL);
}

static void disarm_deadline(void) {
  struct itimerval off;
  memset(&off, 0, sizeof off);
  setitimer(ITIMER_REAL, &off, NULL);
}

static int listen_on(const struct sockaddr_storage *sa, socklen_t len, const char *addr, int port, int backlog) {
  int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { fail("socket"); exit(1); }
  // A previous run (of connload especially) leaves server-side TIME_WAIT
  // sockets on the port; without SO_REUSEADDR the next run could not bind
  // for a minute.
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)sa, len) < 0) {
    fprintf(stderr, "%s: bind %s port %d: %s (is another process using the port? pick another --port)\n", prog,
            addr, port, strerror(errno));
    exit(1);
  }
  if (listen(fd, backlog) < 0) { fail("listen"); exit(1); }
  return fd;
}

#endif
