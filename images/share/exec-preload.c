/* xpcargo's exec preload: compiled for one foreign glibc target in its image layer, with that target's cross gcc,
 * and preloaded (qemu's QEMU_SET_ENV) into the target's programs that run under qemu-user. When such a program starts
 * another program that is an ELF executable of the emulator's machine (a test running env!("CARGO_BIN_EXE_<name>")),
 * it starts the emulator with that program instead, as binfmt_misc would: the kernel alone cannot run it, and
 * registering the emulator in binfmt_misc needs a user namespace that Docker's default seccomp profile refuses.
 * Anything else (a host program, a script, a missing file) goes to the real call unchanged.
 *
 * The layer's build defines: XPCARGO_EMULATOR (/usr/bin/qemu-<arch>), XPCARGO_EMULATOR_ARGS (the runner's options,
 * as string literals separated by commas: -L <the target's sysroot>, and -cpu where the target has one), XPCARGO_SELF
 * (this library's path), XPCARGO_CLASS, XPCARGO_DATA and XPCARGO_MACHINE (the ELF header's EI_CLASS, EI_DATA and
 * e_machine of the emulator's programs). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

typedef int execve_fn(const char *, char *const[], char *const[]);
typedef int spawn_fn(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                     char *const[], char *const[]);

/* Looked up once, before main: a child between fork and exec must not take the dynamic loader's lock. */
static execve_fn *real_execve;
static execve_fn *real_execvpe;
static spawn_fn *real_spawn;
static spawn_fn *real_spawnp;

static const char preload_name[] = "LD_PRELOAD=";
static char *const emulator_args[] = {XPCARGO_EMULATOR_ARGS};
#define EMULATOR_ARGS (sizeof emulator_args / sizeof emulator_args[0])

/* The program is then as the test started it: qemu put this library into LD_PRELOAD, and the environment that the
 * program sees and passes on does not show it. A foreign child gets it back through qemu's -E. `environ` itself is
 * changed, not through unsetenv: a program may define its own (bash does, and it does nothing before bash's main). */
static void hide_self(void) {
    for (char **entry = environ; entry != NULL && *entry != NULL;) {
        if (strncmp(*entry, preload_name, sizeof preload_name - 1) != 0) {
            entry++;
            continue;
        }
        const char *word = *entry + sizeof preload_name - 1;
        char *kept = malloc(strlen(*entry) + 1);
        if (kept == NULL)
            return;
        strcpy(kept, preload_name);
        size_t used = sizeof preload_name - 1, start = used;
        while (*word) {
            size_t size = strcspn(word, ": ");
            if (size > 0 && !(size == strlen(XPCARGO_SELF) && strncmp(word, XPCARGO_SELF, size) == 0)) {
                if (used > start)
                    kept[used++] = ':';
                memcpy(kept + used, word, size);
                used += size;
            }
            word += size;
            if (*word)
                word++;
        }
        kept[used] = '\0';
        if (used > start) {
            *entry++ = kept;
            continue;
        }
        free(kept);
        for (char **rest = entry; *rest != NULL; rest++)
            rest[0] = rest[1];
    }
}

__attribute__((constructor)) static void start(void) {
    real_execve = (execve_fn *)dlsym(RTLD_NEXT, "execve");
    real_execvpe = (execve_fn *)dlsym(RTLD_NEXT, "execvpe");
    real_spawn = (spawn_fn *)dlsym(RTLD_NEXT, "posix_spawn");
    real_spawnp = (spawn_fn *)dlsym(RTLD_NEXT, "posix_spawnp");
    hide_self();
}

/* Whether `path` is an executable (ET_EXEC, ET_DYN) of the emulator's machine. */
static int foreign(const char *path) {
    int saved = errno;
    unsigned char header[20];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd < 0 ? -1 : read(fd, header, sizeof header);
    if (fd >= 0)
        close(fd);
    errno = saved;
    if (got != (ssize_t)sizeof header || memcmp(header, "\177ELF", 4) != 0 || header[4] != XPCARGO_CLASS ||
        header[5] != XPCARGO_DATA)
        return 0;
    unsigned type = XPCARGO_DATA == 1 ? header[16] | header[17] << 8 : header[16] << 8 | header[17];
    unsigned machine = XPCARGO_DATA == 1 ? header[18] | header[19] << 8 : header[18] << 8 | header[19];
    return (type == 2 || type == 3) && machine == XPCARGO_MACHINE;
}

/* The path execvp would run for `file` (PATH searched when it has no slash) in `found`, or `file` itself. */
static const char *resolve(const char *file, char *found, size_t size) {
    if (strchr(file, '/') != NULL || *file == '\0')
        return file;
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/bin:/usr/bin";
    while (1) {
        size_t length = strcspn(path, ":");
        const char *dir = length ? path : ".";
        size_t dir_length = length ? length : 1;
        if (dir_length + strlen(file) + 2 <= size) {
            memcpy(found, dir, dir_length);
            found[dir_length] = '/';
            strcpy(found + dir_length + 1, file);
            if (access(found, X_OK) == 0)
                return found;
        }
        if (path[length] == '\0')
            return file;
        path += length + 1;
    }
}

static size_t count(char *const list[]) {
    size_t n = 0;
    while (list != NULL && list[n] != NULL)
        n++;
    return n;
}

/* The emulator's argv and environment for running `path`: qemu-<arch> <the runner's options> -0 <argv[0]> -E
 * LD_PRELOAD=<this library>[:<the program's own preload>] <path> <argv[1]...>, and `envp` without LD_PRELOAD, which
 * the host's loader would try (and fail) to load into qemu itself. */
#define EMULATED(path, argv, envp, then)                                                                             \
    do {                                                                                                             \
        size_t argc = count(argv), envc = count(envp);                                                               \
        const char *theirs = NULL;                                                                                   \
        char *env[envc + 1];                                                                                         \
        size_t kept = 0;                                                                                             \
        for (size_t i = 0; i < envc; i++) {                                                                          \
            if (strncmp(envp[i], preload_name, sizeof preload_name - 1) == 0)                                        \
                theirs = envp[i] + sizeof preload_name - 1;                                                          \
            else                                                                                                     \
                env[kept++] = envp[i];                                                                               \
        }                                                                                                            \
        env[kept] = NULL;                                                                                            \
        /* qemu splits -E at commas. */                                                                              \
        if (theirs != NULL && (*theirs == '\0' || strchr(theirs, ',') != NULL))                                      \
            theirs = NULL;                                                                                           \
        char preload[sizeof preload_name + sizeof XPCARGO_SELF + (theirs ? strlen(theirs) + 1 : 0)];                \
        strcpy(preload, preload_name);                                                                               \
        strcat(preload, XPCARGO_SELF);                                                                               \
        if (theirs != NULL) {                                                                                        \
            strcat(preload, ":");                                                                                    \
            strcat(preload, theirs);                                                                                 \
        }                                                                                                            \
        char *args[argc + EMULATOR_ARGS + 7];                                                                        \
        size_t n = 0;                                                                                                \
        args[n++] = (char *)XPCARGO_EMULATOR;                                                                        \
        for (size_t i = 0; i < EMULATOR_ARGS; i++)                                                                   \
            args[n++] = emulator_args[i];                                                                            \
        args[n++] = (char *)"-0";                                                                                    \
        args[n++] = argc > 0 ? argv[0] : (char *)(path);                                                             \
        args[n++] = (char *)"-E";                                                                                    \
        args[n++] = preload;                                                                                         \
        args[n++] = (char *)(path);                                                                                  \
        for (size_t i = 1; i < argc; i++)                                                                            \
            args[n++] = argv[i];                                                                                     \
        args[n] = NULL;                                                                                              \
        then;                                                                                                        \
    } while (0)

int execve(const char *path, char *const argv[], char *const envp[]) {
    if (foreign(path))
        EMULATED(path, argv, envp, return real_execve(XPCARGO_EMULATOR, args, env));
    return real_execve(path, argv, envp);
}

int execvpe(const char *file, char *const argv[], char *const envp[]) {
    char found[PATH_MAX];
    const char *path = resolve(file, found, sizeof found);
    if (foreign(path))
        EMULATED(path, argv, envp, return real_execve(XPCARGO_EMULATOR, args, env));
    return real_execvpe(file, argv, envp);
}

int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }

/* execl, execle and execlp: their arguments gathered into an argv (and execle's environment after its NULL). */
#define GATHERED(first, with_env, then)                                                                              \
    do {                                                                                                             \
        va_list list;                                                                                                \
        size_t argc = 1;                                                                                             \
        va_start(list, first);                                                                                       \
        while (va_arg(list, char *) != NULL)                                                                         \
            argc++;                                                                                                  \
        va_end(list);                                                                                                \
        char *argv[argc + 1];                                                                                        \
        argv[0] = (char *)(first);                                                                                   \
        va_start(list, first);                                                                                       \
        for (size_t i = 1; i <= argc; i++)                                                                           \
            argv[i] = va_arg(list, char *);                                                                          \
        char *const *envp = (with_env) ? va_arg(list, char *const *) : environ;                                      \
        va_end(list);                                                                                                \
        then;                                                                                                        \
    } while (0)

int execl(const char *path, const char *arg, ...) { GATHERED(arg, 0, return execve(path, argv, envp)); }

int execlp(const char *file, const char *arg, ...) { GATHERED(arg, 0, return execvpe(file, argv, envp)); }

int execle(const char *path, const char *arg, ...) { GATHERED(arg, 1, return execve(path, argv, envp)); }

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                const posix_spawnattr_t *attributes, char *const argv[], char *const envp[]) {
    if (foreign(path))
        EMULATED(path, argv, envp, return real_spawn(pid, XPCARGO_EMULATOR, actions, attributes, args, env));
    return real_spawn(pid, path, actions, attributes, argv, envp);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                 const posix_spawnattr_t *attributes, char *const argv[], char *const envp[]) {
    char found[PATH_MAX];
    const char *path = resolve(file, found, sizeof found);
    if (foreign(path))
        EMULATED(path, argv, envp, return real_spawn(pid, XPCARGO_EMULATOR, actions, attributes, args, env));
    return real_spawnp(pid, file, actions, attributes, argv, envp);
}
