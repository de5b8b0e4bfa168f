// connload: opens and closes TCP connections on loopback as fast as one core
// allows, for a fixed time, so the benchmark can measure what tracing every
// connection costs. Prints one JSON line:
//   {"connections":N,"seconds":S,"rate":R,"failed":F}
//
// Usage: connload --port P --seconds S [--addr 127.0.0.1|::1]
//                 [--cpu N] [--server-cpu N] [--server | --client]
//
// By default the process forks its own server. --server runs only the server
// (prints {"accepted":N,"seconds":S}), --client only the client, so the two
// sides can live in different processes or cgroups.
//
// Each connection goes through the whole TCP state machine on both ends, with
// the SERVER closing first: server accept(), close(); client connect(), reads
// EOF, close(). That keeps TIME_WAIT on the server side, whose 4-tuples hold
// no ephemeral port, so the client never runs out of ports (EADDRNOTAVAIL)
// however long it runs, without touching tcp_tw_reuse.
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

enum mode { MODE_BOTH, MODE_SERVER, MODE_CLIENT };

struct options {
  int port;
  const char *addr;
  double seconds;
  int cpu;        // -1: no pinning
  int server_cpu; // -1: no pinning
  enum mode mode;
};

static volatile sig_atomic_t stop;
static volatile sig_atomic_t alarms;

static void usage_exit(const char *why) {
  fprintf(stderr,
          "connload: %s\n"
          "usage: connload --port P --seconds S [--addr 127.0.0.1|::1] "
          "[--cpu N] [--server-cpu N] [--server | --client]\n",
          why);
  exit(2);
}

static long parse_long(const char *flag, const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "connload: %s wants an integer in [%ld, %ld], got '%s'\n", flag, min, max, s);
    exit(2);
  }
  return v;
}

static struct options parse_args(int argc, char **argv) {
  struct options o = {.port = 0, .addr = "127.0.0.1", .seconds = 0, .cpu = -1, .server_cpu = -1, .mode = MODE_BOTH};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--server")) { o.mode = MODE_SERVER; continue; }
    if (!strcmp(a, "--client")) { o.mode = MODE_CLIENT; continue; }
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
      fprintf(stderr, "connload: unknown option '%s'\n", a);
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
  fprintf(stderr, "connload: --addr '%s' is not an IPv4 or IPv6 address\n", addr);
  exit(2);
not_loopback:
  fprintf(stderr, "connload: --addr '%s' is not loopback; only 127.0.0.0/8 and ::1 are allowed\n", addr);
  exit(2);
}

static void pin(int cpu, const char *who) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) {
    fprintf(stderr, "connload: pinning the %s to CPU %d: %s (see nproc / taskset -p $$)\n", who, cpu, strerror(errno));
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
    static const char msg[] = "connload: still running after the deadline; exiting\n";
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
  if (fd < 0) { perror("connload: socket"); exit(1); }
  // The previous run left thousands of server-side TIME_WAIT sockets on this
  // port; without SO_REUSEADDR the next run could not bind for a minute.
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)sa, len) < 0) {
    fprintf(stderr, "connload: bind %s port %d: %s (is another process using the port? pick another --port)\n", addr,
            port, strerror(errno));
    exit(1);
  }
  if (listen(fd, SOMAXCONN) < 0) { perror("connload: listen"); exit(1); }
  return fd;
}

// Accept and close immediately: the server sends the first FIN, so it is the
// side that ends in TIME_WAIT.
static long serve(int lfd) {
  long accepted = 0;
  while (!stop) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) continue;
      perror("connload: accept");
      exit(1);
    }
    close(fd);
    accepted++;
  }
  return accepted;
}

struct client_result {
  long connections;
  long failed;
  double seconds;
};

// One connection: connect, wait for the server's FIN (read returns 0), close.
// Returns 0 on success or the errno of the step that failed.
static int one_connection(const struct sockaddr_storage *sa, socklen_t len) {
  int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int err = 0;
  if (connect(fd, (const struct sockaddr *)sa, len) < 0) {
    err = errno;
  } else {
    char b;
    ssize_t n = read(fd, &b, 1);
    if (n < 0) err = errno;
    else if (n > 0) err = EPROTO; // the server is not ours: it sent data
  }
  close(fd);
  return err;
}

static struct client_result run_client(const struct sockaddr_storage *sa, socklen_t len, double seconds) {
  struct client_result r = {0, 0, 0};
  int first_err = 0;
  double start = now(), deadline = start + seconds, t = start;
  while (!stop && (t = now()) < deadline) {
    int err = one_connection(sa, len);
    if (!err) { r.connections++; continue; }
    if (err == EINTR && stop) break; // interrupted by the deadline, not a failure
    if (!r.failed++) first_err = err;
  }
  r.seconds = now() - start;
  if (r.failed)
    fprintf(stderr, "connload: %ld connections failed, the first with: %s\n", r.failed, strerror(first_err));
  return r;
}

static void print_client(const struct client_result *r) {
  printf("{\"connections\":%ld,\"seconds\":%.3f,\"rate\":%.1f,\"failed\":%ld}\n", r->connections, r->seconds,
         r->seconds > 0 ? (double)r->connections / r->seconds : 0.0, r->failed);
}

int main(int argc, char **argv) {
  struct options o = parse_args(argc, argv);
  struct sockaddr_storage sa;
  socklen_t len = loopback_sockaddr(o.addr, o.port, &sa);
  // Writes to a connection the peer reset would otherwise kill us silently.
  signal(SIGPIPE, SIG_IGN);

  if (o.mode == MODE_CLIENT) {
    pin(o.cpu, "client");
    arm_deadline(o.seconds);
    struct client_result r = run_client(&sa, len, o.seconds);
    disarm_deadline();
    print_client(&r);
    return r.connections ? 0 : 1;
  }

  // Listen before forking so the client can connect from its first iteration.
  int lfd = listen_on(&sa, len, o.addr, o.port);

  if (o.mode == MODE_SERVER) {
    pin(o.server_cpu, "server");
    double start = now();
    arm_deadline(o.seconds);
    long accepted = serve(lfd);
    disarm_deadline();
    printf("{\"accepted\":%ld,\"seconds\":%.3f}\n", accepted, now() - start);
    return 0;
  }

  pid_t server = fork();
  if (server < 0) { perror("connload: fork"); return 1; }
  if (server == 0) {
    // Die with the parent, and in any case shortly after the deadline.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(1);
    pin(o.server_cpu, "server");
    arm_deadline(o.seconds + GRACE_SECONDS);
    serve(lfd);
    _exit(0);
  }
  close(lfd);
  pin(o.cpu, "client");
  arm_deadline(o.seconds);
  struct client_result r = run_client(&sa, len, o.seconds);
  kill(server, SIGTERM);
  waitpid(server, NULL, 0);
  disarm_deadline();
  print_client(&r);
  return r.connections ? 0 : 1;
}
