// bulkload: one TCP connection over loopback, sender writes 256 KiB buffers
// as fast as it can for a fixed time, so the benchmark can check that tracing
// costs nothing per byte (only per connection). Prints one JSON line:
//   {"bytes":N,"seconds":S,"gbit_per_s":G}
//
// Usage: bulkload --port P --seconds S [--addr 127.0.0.1|::1]
//                 [--cpu N] [--server-cpu N]
//
// The process forks a receiver (the server) and sends from the parent. At the
// deadline the sender shuts down its write side and waits for the receiver's
// FIN, which the receiver sends only after reading every byte: so "bytes" is
// what the receiver actually got and "seconds" includes draining the buffers.
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

#define BUF_SIZE (256 * 1024)
// Longest run accepted, so a typo cannot start an hour-long load.
#define MAX_SECONDS 3600.0
// After the deadline, blocking calls get this long to return before the
// process gives up and exits on its own.
#define GRACE_SECONDS 2

struct options {
  int port;
  const char *addr;
  double seconds;
  int cpu;        // -1: no pinning
  int server_cpu; // -1: no pinning
};

static volatile sig_atomic_t stop;
static volatile sig_atomic_t alarms;
static char buf[BUF_SIZE];

static void usage_exit(const char *why) {
  fprintf(stderr,
          "bulkload: %s\n"
          "usage: bulkload --port P --seconds S [--addr 127.0.0.1|::1] [--cpu N] [--server-cpu N]\n",
          why);
  exit(2);
}

static long parse_long(const char *flag, const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "bulkload: %s wants an integer in [%ld, %ld], got '%s'\n", flag, min, max, s);
    exit(2);
  }
  return v;
}

static struct options parse_args(int argc, char **argv) {
  struct options o = {.port = 0, .addr = "127.0.0.1", .seconds = 0, .cpu = -1, .server_cpu = -1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage_exit("missing value after an option");
    const char *v = argv[++i];
    if (!strcmp(a, "--port")) o.port = (int)parse_long(a, v, 1, 65535);
    else if (!strcmp(a, "--addr")) o.addr = v;
    else if (!strcmp(a, "--cpu")) o.cpu = (int)parse_long(a, v, 0, CPU_SETSIZE - 1);
    else if (!strcmp(a, "--server-cpu")) o.server_cpu = (int)parse_long(a, v, 0, CPU_SETSIZE - 1);
    else if (!strcmp(a, "--seconds")) {
      char *end;
      o.seconds = strtod(v, &end);
      if (*v == '\0' || *end != '\0' || !(o.seconds > 0 && o.seconds <= MAX_SECONDS))
        usage_exit("--seconds wants a number in (0, 3600]");
    } else {
      fprintf(stderr, "bulkload: unknown option '%s'\n", a);
      usage_exit("see usage");
    }
  }
  if (!o.port) usage_exit("--port is required");
  if (!(o.seconds > 0)) usage_exit("--seconds is required");
  return o;
}

// Fills sa with addr:port, refusing anything that is not loopback: this tool
// floods its target and must never be pointed at another machine.
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
  fprintf(stderr, "bulkload: --addr '%s' is not an IPv4 or IPv6 address\n", addr);
  exit(2);
not_loopback:
  fprintf(stderr, "bulkload: --addr '%s' is not loopback; only 127.0.0.0/8 and ::1 are allowed\n", addr);
  exit(2);
}

static void pin(int cpu, const char *who) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) {
    fprintf(stderr, "bulkload: pinning the %s to CPU %d: %s (see nproc / taskset -p $$)\n", who, cpu, strerror(errno));
    exit(1);
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// First SIGALRM (at the deadline) asks the loops to stop and, being installed
// without SA_RESTART, interrupts a blocked write with EINTR. If the timer
// fires again GRACE_SECONDS later, something is stuck: exit regardless.
static void on_alarm(int sig) {
  (void)sig;
  stop = 1;
  if (++alarms > 1) {
    static const char msg[] = "bulkload: still running after the deadline; exiting\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
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

static int listen_on(const struct sockaddr_storage *sa, socklen_t len, const char *addr, int port) {
  int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { perror("bulkload: socket"); exit(1); }
  // A previous run (or connload) may have left TIME_WAIT sockets on the port.
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)sa, len) < 0) {
    fprintf(stderr, "bulkload: bind %s port %d: %s (is another process using the port? pick another --port)\n", addr,
            port, strerror(errno));
    exit(1);
  }
  if (listen(fd, 1) < 0) { perror("bulkload: listen"); exit(1); }
  return fd;
}

// Receiver: read everything until the sender's FIN, then close, which tells
// the sender that every byte has been consumed.
static void receive(int lfd) {
  int fd;
  while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
    if (errno != EINTR && errno != ECONNABORTED) { perror("bulkload: accept"); _exit(1); }
  close(lfd);
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0 && errno != EINTR) { perror("bulkload: receiver read"); _exit(1); }
  }
  close(fd);
}

// Sender: write until the deadline, then half-close and wait for the
// receiver's FIN. Returns the bytes written, or -1 after printing why.
static long long send_for(const struct sockaddr_storage *sa, socklen_t len, double seconds, double *elapsed) {
  int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { perror("bulkload: socket"); return -1; }
  if (connect(fd, (const struct sockaddr *)sa, len) < 0) { perror("bulkload: connect"); close(fd); return -1; }
  long long bytes = 0;
  double start = now(), deadline = start + seconds;
  arm_deadline(seconds);
  while (!stop && now() < deadline) {
    ssize_t n = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
    if (n > 0) { bytes += n; continue; }
    if (n < 0 && errno == EINTR) continue;
    perror("bulkload: send");
    close(fd);
    return -1;
  }
  // Draining must not be cut short by the grace timer meant for stuck calls:
  // give it its own bound.
  disarm_deadline();
  arm_deadline(GRACE_SECONDS);
  stop = 0;
  alarms = 0;
  shutdown(fd, SHUT_WR);
  char b;
  ssize_t n;
  while ((n = read(fd, &b, 1)) < 0 && errno == EINTR && !stop) {}
  *elapsed = now() - start;
  disarm_deadline();
  close(fd);
  if (n != 0) {
    fprintf(stderr, "bulkload: waiting for the receiver to finish: %s\n", n < 0 ? strerror(errno) : "unexpected data");
    return -1;
  }
  return bytes;
}

int main(int argc, char **argv) {
  struct options o = parse_args(argc, argv);
  struct sockaddr_storage sa;
  socklen_t len = loopback_sockaddr(o.addr, o.port, &sa);
  signal(SIGPIPE, SIG_IGN);
  memset(buf, 'x', sizeof buf);

  // Listen before forking so the sender's connect cannot race the receiver.
  int lfd = listen_on(&sa, len, o.addr, o.port);
  pid_t receiver = fork();
  if (receiver < 0) { perror("bulkload: fork"); return 1; }
  if (receiver == 0) {
    // Die with the parent, and in any case shortly after the deadline.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(1);
    pin(o.server_cpu, "receiver");
    arm_deadline(o.seconds + 2 * GRACE_SECONDS);
    receive(lfd);
    _exit(0);
  }
  close(lfd);
  pin(o.cpu, "sender");
  double elapsed = 0;
  long long bytes = send_for(&sa, len, o.seconds, &elapsed);
  if (bytes < 0) kill(receiver, SIGKILL);
  int status = 0;
  waitpid(receiver, &status, 0);
  if (bytes < 0) return 1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bulkload: the receiver failed (status 0x%x)\n", status);
    return 1;
  }
  printf("{\"bytes\":%lld,\"seconds\":%.3f,\"gbit_per_s\":%.3f}\n", bytes, elapsed,
         elapsed > 0 ? (double)bytes * 8 / elapsed / 1e9 : 0.0);
  return 0;
}
