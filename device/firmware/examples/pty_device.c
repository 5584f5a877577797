/*
 * pty_device: a tiny "device" built on the tympan C library, speaking the protocol on a
 * pseudo-terminal. It stands in for real firmware in tests (tests/protocol/test_cross_c.py).
 *
 *   pty_device            open a pty, print the slave path as the first stdout line, send
 *                         BOOT + HELLO, then serve: PING -> PONG, HELLO -> HELLO, commands:
 *                           reset                 ACK, then BOOT("reset") + HELLO with seq 0
 *                           configure k=v ...     ACK; the key "fail" is NACKed bad_argument
 *                           start_session / stop_session   ACK + session_start / session_end
 *                           set_volume volume_db=X        ACK if X is a number, else NACK
 *                           burst count=N t0_us=T  ACK, then N scripted EVENTs (see burst())
 *                           log text=...          ACK, then a LOG with that text
 *                           anything else         NACK unknown_command
 *   pty_device --dump     write a fixed list of frames to stdout, one hex line per frame
 *                         (the Python test encodes the same list and compares bytes)
 *
 * Runs until killed (SIGTERM). POSIX only; the library it uses is plain C99.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "tympan.h"

static int port_fd = -1;
static tympan_ctx_t link_ctx;
static int pending_reset;
static long pending_burst = -1;
static unsigned long long burst_t0_us;
static char pending_log[256];
static int has_pending_log;

static uint64_t mono_us(void *user)
{
    struct timespec ts;
    (void)user;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int write_all(void *user, const uint8_t *data, size_t len)
{
    (void)user;
    while (len > 0) {
        ssize_t n = write(port_fd, data, len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_hex_line(void *user, const uint8_t *data, size_t len)
{
    size_t i;
    (void)user;
    for (i = 0; i < len; i++) {
        printf("%02x", data[i]);
    }
    printf("\n");
    return 0;
}

static int is_number(const char *s)
{
    char *end;
    if (!s || !*s) {
        return 0;
    }
    strtod(s, &end);
    return *end == '\0';
}

static uint8_t on_command(void *user, const tympan_command_t *cmd, char *text, size_t size)
{
    (void)user;
    switch (cmd->id) {
    case TYMPAN_CMD_RESET:
        pending_reset = 1; /* after the ACK has gone out */
        return TYMPAN_ACK;
    case TYMPAN_CMD_CONFIGURE:
        if (tympan_cmd_arg(cmd, "fail")) {
            snprintf(text, size, "configure: key 'fail' refused");
            return TYMPAN_NACK_BAD_ARGUMENT;
        }
        return TYMPAN_ACK;
    case TYMPAN_CMD_START_SESSION:
    case TYMPAN_CMD_STOP_SESSION:
        return TYMPAN_ACK;
    case TYMPAN_CMD_SET_VOLUME:
        if (!is_number(tympan_cmd_arg(cmd, "volume_db"))) {
            snprintf(text, size, "set_volume: volume_db must be a number");
            return TYMPAN_NACK_BAD_ARGUMENT;
        }
        return TYMPAN_ACK;
    default:
        break;
    }
    if (strcmp(cmd->name, "burst") == 0) {
        const char *count = tympan_cmd_arg(cmd, "count");
        const char *t0 = tympan_cmd_arg(cmd, "t0_us");
        if (!count || !t0) {
            snprintf(text, size, "burst: needs count and t0_us");
            return TYMPAN_NACK_BAD_ARGUMENT;
        }
        pending_burst = strtol(count, NULL, 10);
        burst_t0_us = strtoull(t0, NULL, 10);
        return TYMPAN_ACK;
    }
    if (strcmp(cmd->name, "log") == 0) {
        const char *t = tympan_cmd_arg(cmd, "text");
        snprintf(pending_log, sizeof pending_log, "%s", t ? t : "");
        has_pending_log = 1;
        return TYMPAN_ACK;
    }
    snprintf(text, size, "unknown command '%s'", cmd->name);
    return TYMPAN_NACK_UNKNOWN_COMMAND;
}

static const char *const caps[] = {"events", "commands", "ping"};

static void start_link(int (*writer)(void *, const uint8_t *, size_t))
{
    tympan_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.write_bytes = writer;
    cfg.now_us = mono_us;
    cfg.on_command = on_command;
    cfg.firmware = "tympan-c-example";
    cfg.firmware_version = "1.0.0";
    cfg.capabilities = caps;
    cfg.n_capabilities = 3;
    cfg.clock_hz = 1000000u;
    tympan_init(&link_ctx, &cfg);
}

/* Event i of a burst: the same list tests/protocol/test_cross_c.py builds in Python. */
static void burst_event(long i, uint64_t t_us)
{
    static const char *const texts[] = {"Sure", "I can help with that.", "h\xc3\xa9llo", ""};
    static const char *const states[] = {"listening", "user_speaking", "thinking", "speaking"};
    tympan_field_t f[5];
    switch (i % 4) {
    case 0:
        f[0] = tympan_int("turn", i);
        f[1] = tympan_str("text", texts[(i / 4) % 4]);
        f[2] = tympan_int("tokens", i % 7);
        f[3] = tympan_str("reason", "clause");
        tympan_emit_event(&link_ctx, TYMPAN_EV_TTS_CHUNK, t_us, f, 4);
        break;
    case 1:
        f[0] = tympan_str("state", states[(i / 4) % 4]);
        tympan_emit_event(&link_ctx, TYMPAN_EV_STATE, t_us, f, 1);
        break;
    case 2:
        f[0] = tympan_str("queue", "tts");
        f[1] = tympan_int("depth", i % 5);
        f[2] = (i % 8 == 2) ? tympan_null("bound") : tympan_int("bound", 8);
        tympan_emit_event(&link_ctx, TYMPAN_EV_QUEUE_DEPTH, t_us, f, 3);
        break;
    default:
        f[0] = tympan_int("turn", i);
        f[1] = tympan_float("output_s", (double)i * 0.25);
        f[2] = tympan_bool("merged_with_previous", i % 2 == 0);
        f[3] = tympan_int("audio_dropped_ms", (int64_t)i * 3000000000LL);
        tympan_emit_event(&link_ctx, TYMPAN_EV_CANCEL_DONE, t_us, f, 4);
        break;
    }
}

static int dump(void)
{
    tympan_field_t f[6];
    start_link(write_hex_line);
    {
        /* BOOT with a fixed clock: build it with tympan_send_frame (tympan_boot reads now). */
        uint8_t p[8 + 1 + 8] = {12, 0, 0, 0, 0, 0, 0, 0, 8, 'p', 'o', 'w', 'e', 'r', '_', 'o', 'n'};
        tympan_send_frame(&link_ctx, TYMPAN_MSG_BOOT, p, sizeof p);
    }
    tympan_send_hello(&link_ctx);
    f[0] = tympan_int("input_rate_hz", 16000);
    tympan_emit_event(&link_ctx, TYMPAN_EV_SESSION_START, 1000, f, 1);
    f[0] = tympan_int("turn", 1);
    f[1] = tympan_float("input_s", 1.5);
    tympan_emit_event(&link_ctx, TYMPAN_EV_VAD_SPEECH_START, 1500000, f, 2);
    f[0] = tympan_int("turn", 1);
    f[1] = tympan_str("text", "Sure, h\xc3\xa9llo!");
    f[2] = tympan_int("tokens", 3);
    f[3] = tympan_str("reason", "clause");
    tympan_emit_event(&link_ctx, TYMPAN_EV_TTS_CHUNK, 2000000, f, 4);
    f[0] = tympan_str("queue", "tts");
    f[1] = tympan_int("depth", 2);
    f[2] = tympan_null("bound");
    tympan_emit_event(&link_ctx, TYMPAN_EV_QUEUE_DEPTH, 2000001, f, 3);
    f[0] = tympan_int("turn", 2);
    f[1] = tympan_bool("partial", false);
    f[2] = tympan_bool("speculative", true);
    f[3] = tympan_int("big", -((int64_t)1 << 40));
    tympan_emit_event(&link_ctx, TYMPAN_EV_LLM_REQUEST, (uint64_t)1 << 40, f, 4);
    f[0] = tympan_int("turn", 2);
    f[1] = tympan_bool("merged_with_previous", false);
    f[2] = tympan_float("output_s", -0.25);
    tympan_emit_event(&link_ctx, TYMPAN_EV_CANCEL_DONE, (uint64_t)1 << 63, f, 3);
    tympan_send_ack(&link_ctx, 65535);
    tympan_send_nack(&link_ctx, 7, TYMPAN_NACK_BAD_ARGUMENT, "bad volume_db: 'loud'");
    {
        char xs[255];
        memset(xs, 'x', 254);
        xs[254] = '\0';
        tympan_log(&link_ctx, TYMPAN_LOG_WARNING, xs);
    }
    {
        char ys[254];
        memset(ys, 'y', 253);
        ys[253] = '\0';
        f[0] = tympan_str("text", ys);
        tympan_emit_event(&link_ctx, TYMPAN_EV_LLM_DONE, 7, f, 1);
    }
    f[0] = tympan_int("n", 1);
    tympan_emit_event(&link_ctx, 200, 5, f, 1);
    return 0;
}

static int open_pty(char *path, size_t size, int *slave_fd)
{
    struct termios tio;
    const char *name;
    int fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (fd < 0 || grantpt(fd) != 0 || unlockpt(fd) != 0 || !(name = ptsname(fd))) {
        perror("pty_device: posix_openpt");
        return -1;
    }
    snprintf(path, size, "%s", name);
    /* Keep the slave open ourselves: data written before the host opens it is not lost to
     * echo, and the master never sees EIO when the host closes and reopens. */
    *slave_fd = open(path, O_RDWR | O_NOCTTY);
    if (*slave_fd < 0 || tcgetattr(*slave_fd, &tio) != 0) {
        perror("pty_device: open slave");
        return -1;
    }
    cfmakeraw(&tio);
    tcsetattr(*slave_fd, TCSANOW, &tio);
    return fd;
}

static void serve(void)
{
    uint8_t buf[512];
    for (;;) {
        struct pollfd p;
        ssize_t n;
        p.fd = port_fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, 1000) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        if (!(p.revents & POLLIN)) {
            continue;
        }
        n = read(port_fd, buf, sizeof buf);
        if (n <= 0) {
            continue;
        }
        tympan_feed(&link_ctx, buf, (size_t)n);
        if (pending_reset) {
            pending_reset = 0;
            start_link(write_all); /* a reboot: seq back to 0 */
            tympan_boot(&link_ctx, "reset");
        }
        if (has_pending_log) {
            has_pending_log = 0;
            tympan_log(&link_ctx, TYMPAN_LOG_INFO, pending_log);
        }
        if (pending_burst >= 0) {
            long i, count = pending_burst;
            pending_burst = -1;
            for (i = 0; i < count; i++) {
                burst_event(i, burst_t0_us + (uint64_t)i * 10u);
            }
        }
    }
}

int main(int argc, char **argv)
{
    char path[256];
    int slave_fd = -1;
    if (argc > 1 && strcmp(argv[1], "--dump") == 0) {
        return dump();
    }
    signal(SIGPIPE, SIG_IGN);
    port_fd = open_pty(path, sizeof path, &slave_fd);
    if (port_fd < 0) {
        return 1;
    }
    printf("%s\n", path);
    fflush(stdout);
    start_link(write_all);
    tympan_boot(&link_ctx, "power_on");
    serve();
    close(slave_fd);
    return 0;
}
