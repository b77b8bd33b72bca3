/* Test fixture for fuse-tests/security.rs, built statically and put into a test image:
 * tries each named privileged operation once, changing nothing on the host, and prints
 * "<op> ok" or "<op> <ERRNO NAME>". Never run it on the host: "mount" really mounts. Denied by seccomp or a missing capability means EPERM;
 * a call that gets past both fails for another reason (EINVAL) or succeeds. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long try_op(const char *op) {
    if (!strcmp(op, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the session keyring */
        return syscall(SYS_keyctl, 0, -3, 0);
    if (!strcmp(op, "unshare-user"))
        return unshare(CLONE_NEWUSER);
    if (!strcmp(op, "mount"))
        return mount("none", "/tmp", "tmpfs", 0, "size=1m");
    if (!strcmp(op, "clock_settime")) { /* the monotonic clock can't be set: EINVAL */
        struct timespec ts = {0, 0};
        return clock_settime(CLOCK_MONOTONIC, &ts);
    }
    if (!strcmp(op, "adjtimex")) { /* sets the frequency to the value it has */
        struct timex tx = {0};
        if (adjtimex(&tx) < 0)
            return -1;
        tx.modes = ADJ_FREQUENCY;
        return adjtimex(&tx);
    }
    if (!strcmp(op, "init_module")) /* an empty image: EINVAL or ENOEXEC */
        return syscall(SYS_init_module, "", 0, "");
    if (!strcmp(op, "swapon"))
        return syscall(SYS_swapon, "/nonexistent", 0);
    if (!strcmp(op, "open_by_handle_at")) { /* the shocker pattern (of a tmpfs: /dev) */
        struct { struct file_handle h; unsigned char b[MAX_HANDLE_SZ]; } fh;
        int mnt = 0;
        fh.h.handle_bytes = MAX_HANDLE_SZ;
        if (name_to_handle_at(AT_FDCWD, "/dev", &fh.h, &mnt, 0) < 0)
            return -1;
        return open_by_handle_at(AT_FDCWD, &fh.h, O_RDONLY);
    }
    if (!strcmp(op, "unshare-mount"))
        return unshare(CLONE_NEWNS);
    if (!strcmp(op, "mount-cgroup")) /* a v1 hierarchy of its own, for its release_agent */
        return mount("cgroup", "/tmp", "cgroup", 0, "rdma");
    errno = ENOSYS;
    return -1;
}

/* Each operation runs in a child of its own, so one that changes the process (a new user
 * namespace) can't change what the next one finds. */
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(try_op(argv[i]) < 0 ? errno : 0);
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
            return 1;
        int err = WEXITSTATUS(status);
        printf("%s %s\n", argv[i], err ? strerrorname_np(err) : "ok");
    }
    return 0;
}
