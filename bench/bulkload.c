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
#include "loadgen-common.h"

#define BUF_SIZE (256 * 1024)

static char buf[BUF_SIZE];

// Receiver: read everything until the sender's FIN, then close, which tells
// the sender that every byte has been consumed.
static void receive(int lfd) {
  int fd;
  while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
    if (errno != EINTR && errno != ECONNABORTED) { fail("accept"); _exit(1); }
  close(lfd);
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0 && errno != EINTR) { fail("receiver read"); _exit(1); }
  }
  close(fd);
}

// Sender: write until the deadline, then half-close and wait for the
// receiver's FIN. Returns the bytes written, or -1 after printing why.
static long long send_for(const struct sockaddr_storage *sa, socklen_t len, double seconds, double *elapsed) {
  int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { fail("socket"); return -1; }
  if (connect(fd, (const struct sockaddr *)sa, len) < 0) { fail("connect"); close(fd); return -1; }
  long long bytes = 0;
  double start = now(), deadline = start + seconds;
  arm_deadline(seconds);
  while (!stop && now() < deadline) {
    ssize_t n = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
    if (n > 0) { bytes += n; continue; }
    if (n < 0 && errno == EINTR) continue;
    fail("send");
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
  loadgen_init("bulkload", "usage: bulkload --port P --seconds S [--addr 127.0.0.1|::1] [--cpu N] [--server-cpu N]");
  struct loadgen_options o;
  parse_args(argc, argv, &o, NULL, NULL);
  struct sockaddr_storage sa;
  socklen_t len = loopback_sockaddr(o.addr, o.port, &sa);
  signal(SIGPIPE, SIG_IGN);
  memset(buf, 'x', sizeof buf);

  // Listen before forking so the sender's connect cannot race the receiver.
  int lfd = listen_on(&sa, len, o.addr, o.port, 1);
  pid_t receiver = fork();
  if (receiver < 0) { fail("fork"); return 1; }
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
