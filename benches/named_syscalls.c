/* The system calls of a named create + close, without Python, against
 * SharedMemory's, the records as they were made before, and a record that
 * would cost less, a symbolic link (docs/named-blocks.md, "Costs"). CPU
 * time per call, median of 7 rounds.
 *
 *   cc -O2 -o /tmp/named_syscalls benches/named_syscalls.c && /tmp/named_syscalls
 *
 * The sequences are copied from `strace` of the real thing; the segment
 * reference and sizes are typical values, not read back. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static const char REF[] = "107675677 9a1cf5cf52ef5996 4026531839 4096";
/* The same kind of reference as a modification time (segment.rs). */
#define MTIME_SEC 0x5000000cd5e9d3ffLL
#define MTIME_NSEC 39453269L
static int counter;

static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fresh_name(char *buf) { sprintf(buf, "/dev/shm/syscalls-%d-%d", getpid(), counter++); }

static void lock(int fd, int cmd, int type) {
    struct flock fl = {0};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_len = 1;
    fcntl(fd, cmd, &fl);
}

/* What SharedMemory(create=True, size=4096) + close() + unlink() asks of
 * the kernel, without its resource tracker's pipe writes. */
static void shared_memory(void) {
    char name[64];
    struct stat st;
    fresh_name(name);
    int fd = open(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    ftruncate(fd, 4096);
    fstat(fd, &st);
    fstat(fd, &st);
    int dup_fd = dup(fd);
    void *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    munmap(p, 4096);
    close(dup_fd);
    close(fd);
    unlink(name);
}

static char *segment(int *id_out) {
    int id = shmget(IPC_PRIVATE, 8192 - 77, IPC_CREAT | IPC_EXCL | SHM_NORESERVE | 0600);
    char *p = shmat(id, 0, 0);
    shmctl(id, IPC_RMID, 0);
    madvise(p, 8192, MADV_DONTDUMP);
    *id_out = id;
    return p;
}

/* A record's close: the exclusive lock that says "last holder", the
 * st_nlink check, the name's removal, then the segment's last detach. */
static void close_record(int fd, const char *name, char *p) {
    struct stat st;
    lock(fd, F_OFD_SETLK, F_WRLCK);
    fstat(fd, &st);
    unlink(name);
    close(fd);
    munmap(p, 8192);
}

/* A named block before 2026-12-05: look, O_TMPFILE record, segment,
 * publish, close. */
static void tmpfile_record(void) {
    char name[64];
    fresh_name(name);
    if (open(name, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC) >= 0)
        abort();
    int fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    int id;
    char *p = segment(&id);
    fsetxattr(fd, "user.mmapfile.shm", REF, sizeof REF - 1, 0);
    fchmod(fd, 0600);
    lock(fd, F_OFD_SETLKW, F_RDLCK);
    linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH);
    getpid();
    getpid();
    geteuid();
    close_record(fd, name, p);
}

/* A named block now: the record created in place (`O_CREAT | O_EXCL`, which
 * is the look), held at once, checked still linked (an opener may have found
 * it unheld and removed it), finished by the segment's reference, written
 * as the record's modification time. With `xattr`, the reference written as
 * an extended attribute instead, as before. */
static void in_place(int xattr) {
    char name[64];
    struct stat st;
    fresh_name(name);
    int fd = open(name, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0600);
    lock(fd, F_OFD_SETLKW, F_RDLCK);
    fstat(fd, &st);
    int id;
    char *p = segment(&id);
    if (xattr) {
        fsetxattr(fd, "user.mmapfile.shm", REF, sizeof REF - 1, 0);
    } else {
        struct timespec times[2] = {{0, UTIME_OMIT}, {MTIME_SEC, MTIME_NSEC}};
        futimens(fd, times);
    }
    close_record(fd, name, p);
}

static void named_block(void) { in_place(0); }
static void xattr_record(void) { in_place(1); }

/* The name as a symbolic link holding the reference; liveness would come
 * from the segment (IPC_STAT) instead of locks. With `look`, first the
 * `readlink` that `mmapfile(None, name, size)` needs to open an existing
 * block rather than make a segment for nothing. */
static void symlink_named(int look) {
    char name[64], target[128];
    struct shmid_ds ds;
    fresh_name(name);
    if (look && readlink(name, target, sizeof target) >= 0)
        abort();
    int id;
    char *p = segment(&id);
    symlink(REF, name);
    shmctl(id, IPC_STAT, &ds);
    unlink(name);
    munmap(p, 8192);
}

static void symlink_record(void) { symlink_named(0); }
static void symlink_record_with_look(void) { symlink_named(1); }

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_us(void (*f)(void)) {
    enum { CALLS = 5000, ROUNDS = 7 };
    double r[ROUNDS];
    for (int k = 0; k < ROUNDS; k++) {
        double c = cpu();
        for (int i = 0; i < CALLS; i++)
            f();
        r[k] = (cpu() - c) / CALLS * 1e6;
    }
    qsort(r, ROUNDS, sizeof r[0], by_value);
    return r[ROUNDS / 2];
}

int main(void) {
    printf("SharedMemory's system calls   %6.2f us\n", median_us(shared_memory));
    printf("named block now               %6.2f us\n", median_us(named_block));
    printf("  reference as an attribute   %6.2f us\n", median_us(xattr_record));
    printf("  before (O_TMPFILE + linkat) %6.2f us\n", median_us(tmpfile_record));
    printf("segment + symlink record      %6.2f us\n", median_us(symlink_record));
    printf("  the same, with the look     %6.2f us\n", median_us(symlink_record_with_look));
    return 0;
}
