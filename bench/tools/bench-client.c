// A benchmark client with no Node in it, so the client's own cost does not hide
// the proxies' (bench/mesh-vs-stunnel.ts builds it with cc and runs it in a pod).
// The server is testbed/fixtures/tcp-server.ts: it greets with one line, then echoes.
//   bench-client rr IP PORT COUNT WARMUP       64-byte round trips on one connection
//   bench-client connect IP PORT COUNT WARMUP  connect, first byte of the greeting, close
// Prints one JSON line: p50/p99 in microseconds (connect also failures and rate).
// Bounded: every socket has 5 s timeouts, the whole run 120 s.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static double pct(double* v, int n, double p) {
  if (n == 0) return -1;
  int i = (int)(p * n);
  return v[i >= n ? n - 1 : i];
}

static int dial(const struct sockaddr_in* to) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (const struct sockaddr*)to, sizeof(*to)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until the greeting's newline; 0 on success.
static int read_greeting(int fd) {
  char c;
  for (;;) {
    ssize_t n = read(fd, &c, 1);
    if (n != 1) return -1;
    if (c == '\n') return 0;
  }
}

static int rr(const struct sockaddr_in* to, int count, int warmup) {
  int fd = dial(to);
  if (fd < 0 || read_greeting(fd) != 0) {
    fprintf(stderr, "bench-client: cannot connect and read the greeting\n");
    return 1;
  }
  char out[64], in[64];
  memset(out, 'x', sizeof(out));
  double* samples = calloc((size_t)count, sizeof(double));
  for (int i = 0; i < warmup + count; i++) {
    double start = now_us();
    if (write(fd, out, sizeof(out)) != (ssize_t)sizeof(out)) return fprintf(stderr, "bench-client: write failed\n"), 1;
    size_t got = 0;
    while (got < sizeof(in)) {
      ssize_t n = read(fd, in + got, sizeof(in) - got);
      if (n <= 0) return fprintf(stderr, "bench-client: read failed\n"), 1;
      got += (size_t)n;
    }
    if (i >= warmup) samples[i - warmup] = now_us() - start;
  }
  close(fd);
  qsort(samples, (size_t)count, sizeof(double), cmp);
  printf("{\"count\":%d,\"p50Us\":%.1f,\"p99Us\":%.1f}\n", count, pct(samples, count, 0.5), pct(samples, count, 0.99));
  return 0;
}

static int conns(const struct sockaddr_in* to, int count, int warmup) {
  double* samples = calloc((size_t)count, sizeof(double));
  int ok = 0, failed = 0;
  double started = 0;
  for (int i = 0; i < warmup + count; i++) {
    if (i == warmup) started = now_us();
    double start = now_us();
    int fd = dial(to);
    char c;
    int good = fd >= 0 && read(fd, &c, 1) == 1;
    if (fd >= 0) close(fd);
    if (i < warmup) continue;
    if (good) samples[ok++] = now_us() - start;
    else failed++;
  }
  double seconds = (now_us() - started) / 1e6;
  qsort(samples, (size_t)ok, sizeof(double), cmp);
  printf("{\"count\":%d,\"failed\":%d,\"firstByteP50Us\":%.1f,\"firstByteP99Us\":%.1f,\"rate\":%.1f}\n", ok, failed,
         pct(samples, ok, 0.5), pct(samples, ok, 0.99), ok / seconds);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: bench-client rr|connect IP PORT COUNT WARMUP\n");
    return 2;
  }
  struct sockaddr_in to;
  memset(&to, 0, sizeof(to));
  to.sin_family = AF_INET;
  to.sin_port = htons((unsigned short)atoi(argv[3]));
  if (inet_pton(AF_INET, argv[2], &to.sin_addr) != 1) return fprintf(stderr, "bench-client: bad ip %s\n", argv[2]), 2;
  int count = atoi(argv[4]), warmup = atoi(argv[5]);
  if (count < 1 || count > 1000000 || warmup < 0) return fprintf(stderr, "bench-client: bad count or warmup\n"), 2;
  signal(SIGPIPE, SIG_IGN);
  alarm(120);
  return strcmp(argv[1], "rr") == 0 ? rr(&to, count, warmup) : conns(&to, count, warmup);
}
