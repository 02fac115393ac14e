// util.c — fatal errors, checked allocation, clocks, fp16 conversion, safe output and input files.
#include "vdp.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// Formats a message into err (when given) and returns -1, so that `return errf(...)` reports and fails.
int errf(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static _Noreturn void die_status(int status, const char *fmt, va_list ap) {
  fputs("vdp: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  exit(status);
}

void vdp_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  die_status(1, fmt, ap);
}

void *vdp_malloc(size_t n, const char *what) {
  void *p = malloc(n ? n : 1);
  if (!p) vdp_die("out of memory allocating %zu bytes for %s", n, what);
  return p;
}

void *vdp_calloc(size_t n, size_t size, const char *what) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) vdp_die("out of memory allocating %zu x %zu bytes for %s", n, size, what);
  return p;
}

double vdp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// IEEE binary16: 1 sign, 5 exponent, 10 mantissa bits. Conversion through the bit patterns so the
// result does not depend on compiler support for _Float16.
float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) { man <<= 1; exp--; }
      bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
  if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  // rounds to >= 65520: inf
  if (absx < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (absx < 0x33000000u) return (uint16_t)sign;             // < 2^-25: rounds to 0
    // value = m * 2^(e-150) and the subnormal unit is 2^-24, so q = m >> (126 - e), rounded to even
    uint32_t e = absx >> 23, m = (absx & 0x7fffff) | 0x800000;
    int s = 126 - (int)e;  // 14..24
    uint32_t q = m >> s, rem = m & ((1u << s) - 1);
    uint32_t half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t q = ((absx - 0x38000000u) >> 13);  // rebias exponent 127 -> 15
  uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
  return (uint16_t)(sign | q);
}

float bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

// ---------------------------------------------------------------------------------------------------
// Usage errors: exit status 2 (runtime failures exit 1)
// ---------------------------------------------------------------------------------------------------
void vdp_usage_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  die_status(2, fmt, ap);
}

// ---------------------------------------------------------------------------------------------------
// Numbers on the command line
// ---------------------------------------------------------------------------------------------------
// Plain decimal only: [+-]digits[.digits][e[+-]digits]. strtod alone would also take leading spaces,
// hex floats (0x10), "inf" and "nan".
int vdp_is_decimal(const char *s, int allow_fraction) {
  const char *p = s;
  if (*p == '+' || *p == '-') p++;
  int digits = 0;
  while (*p >= '0' && *p <= '9') p++, digits++;
  if (allow_fraction && *p == '.') {
    p++;
    while (*p >= '0' && *p <= '9') p++, digits++;
  }
  if (!digits) return 0;
  if (allow_fraction && (*p == 'e' || *p == 'E')) {
    p++;
    if (*p == '+' || *p == '-') p++;
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') p++;
  }
  return *p == 0;
}

// A whole decimal number (vdp_is_decimal) in [lo, hi] -> *out, 0; anything else -1 (*out untouched).
int vdp_parse_long(const char *s, long lo, long hi, long *out) {
  if (!s || !vdp_is_decimal(s, 0)) return -1;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int vdp_parse_double(const char *s, double lo, double hi, double *out) {
  if (!s || !vdp_is_decimal(s, 1)) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Output files: exclusive temporary beside the target, fsync, rename
// ---------------------------------------------------------------------------------------------------
// Every temporary this process created and has not yet renamed or removed. An exit (vdp_die included)
// or a SIGINT/SIGTERM/SIGHUP removes exactly these. The signal handler reads the slots without the
// lock: a slot holds either NULL or a complete string (set after strdup, cleared before free).
#define OUT_MAX_TEMPS 4096
static char *volatile out_temps[OUT_MAX_TEMPS];
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static int out_replace_default = 1;

void out_set_replace(int replace) { out_replace_default = replace; }
int out_replace(void) { return out_replace_default; }

// A child writing one of the temporaries (ffmpeg). It could create its output after the temporary was
// removed (ffmpeg opens the name itself), so it is killed and reaped first.
static volatile pid_t out_child;
void out_watch_child(int pid) { out_child = pid; }

static void created_cleanup(void);

void out_cleanup(void) {
  pid_t child = out_child;
  if (child > 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    out_child = 0;
  }
  for (int i = 0; i < OUT_MAX_TEMPS; i++)
    if (out_temps[i]) unlink(out_temps[i]);
  created_cleanup();
}

static void out_cleanup_signal(int sig) {
  out_cleanup();
  signal(sig, SIG_DFL);
  raise(sig);
}

void out_install_cleanup(void) {
  atexit(out_cleanup);
  int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = out_cleanup_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(sigs[i], &sa, NULL);
  }
  // Past a file-size limit (ulimit -f) write() then fails with EFBIG and the temporary is removed,
  // instead of SIGXFSZ killing the process and leaving it behind.
  signal(SIGXFSZ, SIG_IGN);
}

static int out_register(const char *tmp) {
  char *s = strdup(tmp);
  if (!s) return -1;
  pthread_mutex_lock(&out_lock);
  int slot = -1;
  for (int i = 0; i < OUT_MAX_TEMPS && slot < 0; i++)
    if (!out_temps[i]) slot = i;
  if (slot >= 0) out_temps[slot] = s;
  pthread_mutex_unlock(&out_lock);
  if (slot < 0) free(s);
  return slot;
}

static void out_unregister(int slot) {
  if (slot < 0) return;
  pthread_mutex_lock(&out_lock);
  char *s = out_temps[slot];
  out_temps[slot] = NULL;
  pthread_mutex_unlock(&out_lock);
  free(s);
}

const char *file_kind(unsigned m) {
  return S_ISREG(m) ? "a regular file" : S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)"
       : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket"
       : S_ISLNK(m) ? "a symbolic link" : "not a regular file";
}

// "dir/name" -> "dir" (or "." / "/").
static void dir_of(const char *path, char *dir, size_t n) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, n, ".");
  else if (slash == path) snprintf(dir, n, "/");
  else snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

// Creates DIR/.NAME.XXXXXXXX.tmp with O_EXCL (so never an existing file, never through a symlink).
static int out_create_temp(const char *path, char *tmp, size_t n, char *err, size_t errlen) {
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
  int dirlen = slash ? (int)(slash - path + 1) : 0;
  static unsigned counter;
  for (int attempt = 0; attempt < 100; attempt++) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
      r = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(vdp_now() * 1e9) ^ __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    // the base name is shortened so that the temporary's name stays within NAME_MAX
    if ((size_t)snprintf(tmp, n, "%.*s.%.200s.%08x.tmp", dirlen, path, base, (unsigned)(r & 0xffffffffu)) >= n)
      return errf(err, errlen, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0666);
    if (fd >= 0) return fd;
    if (errno != EEXIST) {
      char dir[4096];
      dir_of(path, dir, sizeof dir);
      return errf(err, errlen, "%s: cannot create a file in %s: %s", path, dir, strerror(errno));
    }
  }
  return errf(err, errlen, "%s: cannot find a free temporary name beside it", path);
}

// What may stand at the target's name: nothing, or (replace set) a writable regular file.
int target_check(const char *path, int replace, char *err, size_t errlen) {
  if (!*path) return errf(err, errlen, "empty output path");
  if (name_has_control(path))
    return errf(err, errlen, "output name '%s' holds a control character (a newline, tab or escape): refused, it would "
                "split the printed file list", path);
  size_t len = strlen(path);
  if (path[len - 1] == '/') return errf(err, errlen, "%s: names a directory, expected a file name", path);
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (S_ISLNK(st.st_mode))
      return errf(err, errlen, "%s: is a symbolic link; vdp does not write through or replace links (name the real file, or remove the link)", path);
    if (!S_ISREG(st.st_mode)) return errf(err, errlen, "%s: is %s, not replaced (name a regular file)", path, file_kind(st.st_mode));
    if (!replace) return errf(err, errlen, "%s: already exists, not replaced (give --overwrite to replace it)", path);
    // the mode bits too: root passes access(W_OK) for any file, but a read-only file is meant to stay
    if (!(st.st_mode & 0222) || access(path, W_OK))
      return errf(err, errlen, "%s: is read-only, not replaced (make it writable or choose another name)", path);
  } else if (errno != ENOENT) {
    return errf(err, errlen, "%s: %s", path, strerror(errno));
  }
  return 0;
}

int out_check(const char *path, int replace, char *err, size_t errlen) {
  if (target_check(path, replace, err, errlen)) return -1;
  // The folder must take a new file: create and remove a probe temporary (this also catches read-only
  // file systems, which access(W_OK) misses for root).
  char tmp[4096];
  int fd = out_create_temp(path, tmp, sizeof tmp, err, errlen);
  if (fd < 0) return -1;
  close(fd);
  unlink(tmp);
  return 0;
}

int out_begin(VdpOut *o, const char *path, int replace, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->slot = -1;
  o->replace = replace;
  if (target_check(path, replace, err, errlen)) return -1;
  if ((size_t)snprintf(o->path, sizeof o->path, "%s", path) >= sizeof o->path) return errf(err, errlen, "%s: path too long", path);
  int fd = out_create_temp(path, o->tmp, sizeof o->tmp, err, errlen);
  if (fd < 0) return -1;
  o->slot = out_register(o->tmp);
  if (o->slot < 0) {
    close(fd);
    unlink(o->tmp);
    return errf(err, errlen, "%s: too many temporary files at once", path);
  }
  o->fp = fdopen(fd, "wb");
  if (!o->fp) {
    close(fd);
    out_abort(o);
    return errf(err, errlen, "%s: out of memory", path);
  }
  return 0;
}

int out_close(VdpOut *o, char *err, size_t errlen) {
  if (!o->fp) return 0;
  int bad = fflush(o->fp) != 0 || ferror(o->fp);
  int e = errno;
  if (!bad && fsync(fileno(o->fp)) != 0) bad = 1, e = errno;
  if (fclose(o->fp) != 0 && !bad) bad = 1, e = errno;
  o->fp = NULL;
  if (bad) return errf(err, errlen, "cannot write %s: %s", o->path, strerror(e));
  return 0;
}

int out_rename(VdpOut *o, char *err, size_t errlen) {
  if (o->replace) {
    // replace a writable regular file only (checked at the start; again now, the run may have been long)
    if (target_check(o->path, 1, err, errlen)) return -1;
    if (rename(o->tmp, o->path) != 0) return errf(err, errlen, "cannot rename %s to %s: %s", o->tmp, o->path, strerror(errno));
  } else if (renameat2(AT_FDCWD, o->tmp, AT_FDCWD, o->path, RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) return errf(err, errlen, "%s: appeared during the run, not replaced (give --overwrite to replace it)", o->path);
    if (errno != EINVAL && errno != ENOSYS) return errf(err, errlen, "cannot rename %s to %s: %s", o->tmp, o->path, strerror(errno));
    // a file system without RENAME_NOREPLACE: link() refuses an existing name just as atomically
    if (link(o->tmp, o->path) != 0)
      return errf(err, errlen, errno == EEXIST ? "%s: appeared during the run, not replaced" : "cannot create %s: %s", o->path, strerror(errno));
    unlink(o->tmp);
  }
  out_unregister(o->slot);
  o->slot = -1;
  char dir[4096];  // make the new name durable too
  dir_of(o->path, dir, sizeof dir);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) fsync(dfd), close(dfd);
  return 0;
}

int out_commit(VdpOut *o, char *err, size_t errlen) {
  if (out_close(o, err, errlen) || out_rename(o, err, errlen)) {
    out_abort(o);
    return -1;
  }
  return 0;
}

void out_abort(VdpOut *o) {
  if (o->fp) fclose(o->fp);
  o->fp = NULL;
  if (o->slot >= 0) {
    unlink(o->tmp);
    out_unregister(o->slot);
    o->slot = -1;
  }
}

int out_write_file(const char *path, const void *data, size_t n, int replace, char *err, size_t errlen) {
  VdpOut o;
  if (out_begin(&o, path, replace, err, errlen)) return -1;
  if (n && fwrite(data, 1, n, o.fp) != n) {
    int e = errno;
    out_abort(&o);
    return errf(err, errlen, "cannot write %s: %s", path, strerror(e));
  }
  return out_commit(&o, err, errlen);
}

// ---------------------------------------------------------------------------------------------------
// Input files: opened without blocking, then checked to be regular files
// ---------------------------------------------------------------------------------------------------
int open_regular(const char *path, uint64_t *size, char *err, size_t errlen) {
  // O_NONBLOCK: opening a FIFO for reading would wait for a writer forever; a device could block too.
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return errf(err, errlen, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return errf(err, errlen, "%s: is %s, not a regular file", path, file_kind(st.st_mode));
  }
  int fl = fcntl(fd, F_GETFL);  // ordinary blocking reads from here on
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  *size = (uint64_t)st.st_size;
  return fd;
}

// ---------------------------------------------------------------------------------------------------
// Flags given twice: a usage error, for every subcommand and every flag it will ever have
// ---------------------------------------------------------------------------------------------------
static int in_list(const char *s, const char *const *list) {
  for (int k = 0; list && list[k]; k++)
    if (!strcmp(s, list[k])) return 1;
  return 0;
}

void vdp_flags_once(const char *cmd, int argc, char **argv, const char *const *valued, const char *const *repeatable) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || !a[1] || (a[1] >= '0' && a[1] <= '9')) continue;  // a value, not a flag
    if (!in_list(a, repeatable)) {
      int j = 1;
      for (; j < i; j++) {
        if (!strcmp(argv[j], a)) break;
        if (in_list(argv[j], valued)) j++;  // skip its value
      }
      if (j < i)
        vdp_usage_die("%s: %s is given twice (it takes one value; the runs would silently use the last one)", cmd, a);
    }
    if (in_list(a, valued)) i++;
  }
}

// A name vdp writes: printed on stdout one per line, so no control characters (a newline would split
// the line, an escape sequence would reach the terminal).
int name_has_control(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7f) return 1;
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Files a failed run created (a --dump folder and its files): removed at exit unless the run succeeded
// ---------------------------------------------------------------------------------------------------
#define CREATED_MAX 4096
static char *volatile created[CREATED_MAX];
static volatile char created_dir[CREATED_MAX];  // 1: a folder (rmdir), 0: a file
static int created_n, created_kept;

void out_created(const char *path, int is_dir) {
  pthread_mutex_lock(&out_lock);
  if (created_n < CREATED_MAX) {
    char *s = strdup(path);
    if (s) created_dir[created_n] = (char)is_dir, created[created_n++] = s;
  }
  pthread_mutex_unlock(&out_lock);
}

void out_created_keep(void) { created_kept = 1; }

// Newest first, so a folder's files go before the folder. Async-signal-safe (unlink, rmdir).
static void created_cleanup(void) {
  if (created_kept) return;
  for (int i = created_n - 1; i >= 0; i--)
    if (created[i]) created_dir[i] ? rmdir(created[i]) : unlink(created[i]);
  created_kept = 1;
}

// ---------------------------------------------------------------------------------------------------
// An output that is one of the run's inputs (the same file: device and inode, so hard links and any
// spelling of the path count)
// ---------------------------------------------------------------------------------------------------
int out_not_input(const char *out, const char *const *inputs, int n, char *err, size_t errlen) {
  struct stat so, si;
  if (stat(out, &so) != 0) return 0;  // nothing there yet: it cannot be an input
  for (int i = 0; i < n; i++)
    if (inputs[i] && stat(inputs[i], &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
      return errf(err, errlen, "%s: is the same file as the input %s%s; writing it would destroy what this run reads "
                  "(choose another output name)", out, inputs[i],
                  strcmp(out, inputs[i]) ? (so.st_nlink > 1 ? " (a hard link to it)" : " (another name for it)") : "");
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Memory this process may still use: the least of the kernel's MemAvailable, the room under its cgroup's
// limit (v2 memory.max, v1 memory.limit_in_bytes, at every level up to the root) and under RLIMIT_AS /
// RLIMIT_DATA. Page cache is reclaimable, so a cgroup's usage counts without it.
// ---------------------------------------------------------------------------------------------------
static int read_u64_field(const char *path, const char *key, uint64_t *v) {  // "key N" line, or the first number
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[256];
  int rc = -1;
  size_t kl = key ? strlen(key) : 0;
  while (rc && fgets(line, sizeof line, f)) {
    if (key && (strncmp(line, key, kl) || (line[kl] != ' ' && line[kl] != ':'))) continue;
    const char *p = line + kl + (key ? 1 : 0);
    while (*p == ' ' || *p == '\t') p++;
    if (!strncmp(p, "max", 3)) *v = UINT64_MAX, rc = 0;
    else if (*p >= '0' && *p <= '9') *v = strtoull(p, NULL, 10), rc = 0;
    if (!key) break;
  }
  fclose(f);
  return rc;
}

static void avail_take(VdpMemAvail *a, uint64_t room, const char *fmt, ...) {
  if (room >= a->bytes) return;
  a->bytes = room;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->what, sizeof a->what, fmt, ap);
  va_end(ap);
}

// An rlimit leaves room = its soft limit minus what the process already holds of it (a /proc/self/status
// field, KiB); fmt gets the limit in KiB and the held MiB.
static void rlimit_take(VdpMemAvail *a, int resource, const char *status_field, const char *fmt) {
  struct rlimit rl;
  if (getrlimit(resource, &rl) || rl.rlim_cur == RLIM_INFINITY) return;
  uint64_t held = 0;
  if (read_u64_field("/proc/self/status", status_field, &held)) held = 0;
  held *= 1024;
  avail_take(a, rl.rlim_cur > held ? rl.rlim_cur - held : 0, fmt, (unsigned long long)(rl.rlim_cur / 1024),
             held / 1048576.0);
}

// The cgroup part, with the /proc/self/cgroup text and the cgroup file system root given (the tests
// point them at made-up folders).
void vdp_mem_avail_cgroup(VdpMemAvail *a, const char *proc_cgroup, const char *fs_root) {
  FILE *f = fopen(proc_cgroup, "r");
  if (!f) return;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    int v2 = !strncmp(line, "0::", 3), v1 = 0;
    if (!v2) {  // v1: a controller list holding "memory"
      *c2 = 0;
      for (char *t = strtok(c1 + 1, ","); t && !v1; t = strtok(NULL, ",")) v1 = !strcmp(t, "memory");
    }
    if (!v1 && !v2) continue;
    char rel[1024];
    snprintf(rel, sizeof rel, "%s", c2 + 1);
    // from the process's own group up to the root: the tightest limit binds
    for (;;) {
      char dir[2200], p[2300];
      snprintf(dir, sizeof dir, "%s%s%s%s", fs_root, v2 ? "" : "/memory", *rel == '/' ? "" : "/", rel);
      uint64_t lim, usage, cache = 0;
      snprintf(p, sizeof p, "%s/%s", dir, v2 ? "memory.max" : "memory.limit_in_bytes");
      int have = read_u64_field(p, NULL, &lim) == 0 && lim < ((uint64_t)1 << 62);
      if (have) {
        snprintf(p, sizeof p, "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes");
        if (read_u64_field(p, NULL, &usage)) usage = 0;
        snprintf(p, sizeof p, "%s/memory.stat", dir);
        if (read_u64_field(p, v2 ? "file" : "total_cache", &cache)) cache = 0;
        uint64_t used = usage > cache ? usage - cache : 0;
        avail_take(a, lim > used ? lim - used : 0, "the cgroup limit of %.600s (%.1f GiB, %.1f GiB in use)", dir,
                   lim / 1073741824.0, used / 1073741824.0);
      }
      char *slash = strrchr(rel, '/');
      if (!slash || !rel[1]) break;
      if (slash == rel) rel[1] = 0;
      else *slash = 0;
    }
  }
  fclose(f);
}

void vdp_mem_avail(VdpMemAvail *a) {
  a->bytes = SIZE_MAX;
  snprintf(a->what, sizeof a->what, "no known limit");
  uint64_t kb;
  if (!read_u64_field("/proc/meminfo", "MemAvailable", &kb)) avail_take(a, kb * 1024, "MemAvailable (/proc/meminfo)");
  vdp_mem_avail_cgroup(a, "/proc/self/cgroup", "/sys/fs/cgroup");
  rlimit_take(a, RLIMIT_AS, "VmSize", "RLIMIT_AS (ulimit -v %llu KiB, %.1f MiB mapped already)");
  rlimit_take(a, RLIMIT_DATA, "VmData", "RLIMIT_DATA (ulimit -d %llu KiB, %.1f MiB in use)");
}
