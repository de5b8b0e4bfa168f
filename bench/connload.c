// connload: opens and closes TCP connections on loopback as fast as one core
// allows, for a fixed time, so the benchmark can measure what tracing every
// connection costs. Prints one JSON line:
//   {"connections":N,"seconds":S,"rate":R,"failed":F}
//
// Usage: connload --port P --seconds S [--addr 127.0.0.1|::1]
//                 [--cpu N] [--server-cpu N] [--server | --client] [--http] [--rate N]
//
// --rate N: at most N connections a second, evenly paced (the soak's steady churn); by
// default as fast as the core allows.
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
//
// --http: the client sends one small HTTP/1.1 request with a traceparent header
// right after connecting, and the server reads it before closing, so payload
// inspection (inspect.traceparent, inspect.protocols) has something to read.
// Both sides must be given it (in the default mode, the one process is).
#include "loadgen-common.h"

enum mode { MODE_BOTH, MODE_SERVER, MODE_CLIENT };

static int http_mode;
static double rate_limit; // connections per second; 0: unlimited
static int rate_pending;  // the next argument is --rate's value
static const char HTTP_REQUEST[] =
    "GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: connload\r\n"
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";

// Accept and close immediately: the server sends the first FIN, so it is the
// side that ends in TIME_WAIT.
static long serve(int lfd) {
  long accepted = 0;
  while (!stop) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) continue;
      fail("accept");
      exit(1);
    }
    if (http_mode) {
      // the request arrives in one segment on loopback: one read takes it
      char req[512];
      if (read(fd, req, sizeof req) < 0 && errno == EINTR && stop) { close(fd); break; }
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
  } else if (http_mode && write(fd, HTTP_REQUEST, sizeof HTTP_REQUEST - 1) < 0) {
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
    if (rate_limit > 0) {
      // paced from the start, so a slow connection is made up for rather than lost
      double due = start + (double)(r.connections + r.failed) / rate_limit;
      if (due > t) {
        struct timespec ts = {(time_t)(due - t), (long)((due - t - (double)(time_t)(due - t)) * 1e9)};
        nanosleep(&ts, NULL);
        continue;
      }
    }
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

static int mode_flag(const char *arg, void *ctx) {
  enum mode *mode = ctx;
  if (rate_pending) {
    rate_pending = 0;
    rate_limit = (double)parse_long("--rate", arg, 1, 10000000);
    return 1;
  }
  if (!strcmp(arg, "--rate")) { rate_pending = 1; return 1; }
  if (!strcmp(arg, "--server")) { *mode = MODE_SERVER; return 1; }
  if (!strcmp(arg, "--client")) { *mode = MODE_CLIENT; return 1; }
  if (!strcmp(arg, "--http")) { http_mode = 1; return 1; }
  return 0;
}

int main(int argc, char **argv) {
  loadgen_init("connload", "usage: connload --port P --seconds S [--addr 127.0.0.1|::1] "
                           "[--cpu N] [--server-cpu N] [--server | --client] [--http] [--rate N]");
  struct loadgen_options o;
  enum mode mode = MODE_BOTH;
  parse_args(argc, argv, &o, mode_flag, &mode);
  struct sockaddr_storage sa;
  socklen_t len = loopback_sockaddr(o.addr, o.port, &sa);
  // Writes to a connection the peer reset would otherwise kill us silently.
  signal(SIGPIPE, SIG_IGN);

  if (mode == MODE_CLIENT) {
    pin(o.cpu, "client");
    arm_deadline(o.seconds);
    struct client_result r = run_client(&sa, len, o.seconds);
    disarm_deadline();
    print_client(&r);
    return r.connections ? 0 : 1;
  }

  // Listen before forking so the client can connect from its first iteration.
  int lfd = listen_on(&sa, len, o.addr, o.port, SOMAXCONN);

  if (mode == MODE_SERVER) {
    pin(o.server_cpu, "server");
    double start = now();
    arm_deadline(o.seconds);
    long accepted = serve(lfd);
    disarm_deadline();
    printf("{\"accepted\":%ld,\"seconds\":%.3f}\n", accepted, now() - start);
    return 0;
  }

  pid_t server = fork();
  if (server < 0) { fail("fork"); return 1; }
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
