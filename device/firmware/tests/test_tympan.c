/* Host unit tests of the tympan C library: golden frames from the Python implementation,
 * COBS/CRC vectors, command dispatch, corruption handling. Exit status 0 when all pass. */
#include <stdio.h>
#include <string.h>

#include "golden.h"
#include "tympan.h"

static int failures, checks;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        checks++;                                                                          \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, __func__, \
                    #cond);                                                                \
        }                                                                                  \
    } while (0)

/* ------------------------------------------------------------------ a fake port and clock */

static uint8_t out[4096];
static size_t out_len;
static int fail_writes;
static uint64_t clock_us;

static int capture(void *user, const uint8_t *data, size_t len)
{
    (void)user;
    if (fail_writes) {
        return -1;
    }
    if (out_len + len <= sizeof out) {
        memcpy(out + out_len, data, len);
        out_len += len;
    }
    return 0;
}

/* Every reading advances the clock by 1 µs: the test can predict each timestamp. */
static uint64_t fake_now(void *user)
{
    (void)user;
    return clock_us++;
}

static tympan_command_t last_cmd;
static char last_args[8][2][64];
static int n_commands;

static uint8_t on_command(void *user, const tympan_command_t *cmd, char *text, size_t size)
{
    uint8_t k;
    (void)user;
    n_commands++;
    last_cmd = *cmd;
    for (k = 0; k < cmd->n_args && k < 8; k++) {
        strncpy(last_args[k][0], cmd->keys[k], 63);
        strncpy(last_args[k][1], cmd->values[k], 63);
    }
    if (cmd->id == TYMPAN_CMD_SET_VOLUME) {
        const char *v = tympan_cmd_arg(cmd, "volume_db");
        if (!v || strcmp(v, "loud") == 0 || strcmp(v, "-6") == 0) {
            strncpy(text, "volume_db: expected a number", size - 1);
            return TYMPAN_NACK_BAD_ARGUMENT;
        }
    }
    if (strcmp(cmd->name, "later") == 0) {
        return TYMPAN_DEFER;
    }
    return TYMPAN_ACK;
}

static const char *const caps[] = {"events", "ping"};

static void setup(tympan_ctx_t *ctx, uint64_t t0_us)
{
    tympan_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.write_bytes = capture;
    cfg.now_us = fake_now;
    cfg.on_command = on_command;
    cfg.firmware = "fw";
    cfg.firmware_version = "1.2";
    cfg.capabilities = caps;
    cfg.n_capabilities = 2;
    cfg.clock_hz = 1000000u;
    CHECK(tympan_init(ctx, &cfg) == TYMPAN_OK);
    out_len = 0;
    fail_writes = 0;
    clock_us = t0_us;
    n_commands = 0;
}

static int out_is(const char *golden, size_t len)
{
    if (out_len == len && memcmp(out, golden, len) == 0) {
        return 1;
    }
    {
        size_t i;
        fprintf(stderr, "  got %u bytes:", (unsigned)out_len);
        for (i = 0; i < out_len; i++) {
            fprintf(stderr, " %02x", out[i]);
        }
        fprintf(stderr, "\n  want %u bytes:", (unsigned)len);
        for (i = 0; i < len; i++) {
            fprintf(stderr, " %02x", (uint8_t)golden[i]);
        }
        fprintf(stderr, "\n");
    }
    return 0;
}

static void feed_str(tympan_ctx_t *ctx, const char *s, size_t len)
{
    tympan_feed(ctx, (const uint8_t *)s, len);
}

/* ------------------------------------------------------------------ tests */

static void test_crc(void)
{
    CHECK(tympan_crc16((const uint8_t *)"123456789", 9) == 0x29B1);
    CHECK(tympan_crc16(NULL, 0) == 0xFFFF);
}

static void test_cobs_vectors(void)
{
    uint8_t in[300], enc[310], dec[300];
    size_t n, i;
    long m;
    static const uint8_t v1[] = {0x11, 0x22, 0x00, 0x33};
    static const uint8_t e1[] = {0x03, 0x11, 0x22, 0x02, 0x33};
    n = tympan_cobs_encode(v1, sizeof v1, enc);
    CHECK(n == sizeof e1 && memcmp(enc, e1, n) == 0);
    CHECK(tympan_cobs_decode(enc, n, dec, sizeof dec) == (long)sizeof v1);
    CHECK(memcmp(dec, v1, sizeof v1) == 0);
    /* 254 non-zero bytes: one 0xFF block, then a 0x01 code. */
    for (i = 0; i < 254; i++) {
        in[i] = (uint8_t)(i + 1);
    }
    n = tympan_cobs_encode(in, 254, enc);
    CHECK(n == 256 && enc[0] == 0xFF && enc[255] == 0x01);
    CHECK(tympan_cobs_decode(enc, n, dec, sizeof dec) == 254 && memcmp(dec, in, 254) == 0);
    /* Round trips of every length 0..300 with zeros sprinkled in; never a 0x00 out. */
    for (n = 0; n <= 300; n++) {
        size_t e;
        for (i = 0; i < n; i++) {
            in[i] = (uint8_t)((i * 37u + n) % 7u == 0 ? 0 : i * 13u + 1u);
        }
        e = tympan_cobs_encode(in, n, enc);
        CHECK(e <= TYMPAN_COBS_MAX(n));
        CHECK(memchr(enc, 0, e) == NULL);
        m = tympan_cobs_decode(enc, e, dec, sizeof dec);
        CHECK(m == (long)n && memcmp(dec, in, n) == 0);
    }
    /* Malformed: a 0x00 inside, a block running past the end, output too small. */
    {
        static const uint8_t z[] = {0x03, 0x11, 0x00};
        static const uint8_t t[] = {0x05, 0x11};
        CHECK(tympan_cobs_decode(z, sizeof z, dec, sizeof dec) == -1);
        CHECK(tympan_cobs_decode(t, sizeof t, dec, sizeof dec) == -1);
        CHECK(tympan_cobs_decode(e1, sizeof e1, dec, 2) == -1);
    }
}

static void test_boot_and_hello_match_python(void)
{
    tympan_ctx_t ctx;
    setup(&ctx, 0);
    CHECK(tympan_boot(&ctx, "power_on") == TYMPAN_OK);
    CHECK(out_is(GOLD_BOOT_HELLO, GOLD_BOOT_HELLO_LEN));
    /* A host HELLO gets our HELLO back (with the next seq, 2). */
    out_len = 0;
    feed_str(&ctx, GOLD_HELLO_REQ, GOLD_HELLO_REQ_LEN);
    CHECK(out_len > 0 && out[out_len - 1] == 0);
    CHECK(ctx.tx_seq == 3 && ctx.stats.frames_rx == 1);
}

static void test_ping_gets_pong_with_device_times(void)
{
    tympan_ctx_t ctx;
    size_t i;
    setup(&ctx, 2); /* delimiter seen at t=2 (rx), PONG built at t=3 (tx) */
    /* Byte by byte, as a UART interrupt would deliver it. */
    for (i = 0; i < GOLD_PING_LEN; i++) {
        tympan_feed(&ctx, (const uint8_t *)GOLD_PING + i, 1);
    }
    CHECK(out_is(GOLD_PONG, GOLD_PONG_LEN));
}

static void test_event_matches_python(void)
{
    tympan_ctx_t ctx;
    tympan_field_t f[7];
    setup(&ctx, 0);
    ctx.tx_seq = 7;
    f[0] = tympan_int("turn", 1);
    f[1] = tympan_float("ms", 12.5);
    f[2] = tympan_null("none");
    f[3] = tympan_bool("ok", true);
    f[4] = tympan_bool("no", false);
    f[5] = tympan_int("big", -((int64_t)1 << 40));
    f[6] = tympan_str("txt", "h\xc3\xa9");
    CHECK(tympan_emit_event(&ctx, TYMPAN_EV_TURN_SUMMARY, 1000, f, 7) == TYMPAN_OK);
    CHECK(out_is(GOLD_EVENT, GOLD_EVENT_LEN));
    out_len = 0;
    ctx.tx_seq = 1;
    CHECK(tympan_send_ack(&ctx, 513) == TYMPAN_OK);
    CHECK(out_is(GOLD_ACK, GOLD_ACK_LEN));
    out_len = 0;
    ctx.tx_seq = 0;
    CHECK(tympan_log(&ctx, TYMPAN_LOG_WARNING, "low battery") == TYMPAN_OK);
    CHECK(out_is(GOLD_LOG, GOLD_LOG_LEN));
}

static void test_commands(void)
{
    tympan_ctx_t ctx;
    setup(&ctx, 0);
    feed_str(&ctx, GOLD_CMD, GOLD_CMD_LEN); /* set_volume volume_db=-6: handler NACKs */
    CHECK(n_commands == 1 && last_cmd.id == TYMPAN_CMD_SET_VOLUME && last_cmd.seq == 42);
    CHECK(strcmp(last_cmd.name, "set_volume") == 0 && last_cmd.n_args == 1);
    CHECK(strcmp(last_args[0][0], "volume_db") == 0 && strcmp(last_args[0][1], "-6") == 0);
    CHECK(out_is(GOLD_NACK, GOLD_NACK_LEN));

    out_len = 0;
    feed_str(&ctx, GOLD_CMD_NAMED, GOLD_CMD_NAMED_LEN); /* "blink" n=3: ACK */
    CHECK(n_commands == 2 && last_cmd.id == TYMPAN_CMD_NAMED && last_cmd.seq == 43);
    CHECK(strcmp(last_cmd.name, "blink") == 0 && strcmp(last_args[0][1], "3") == 0);
    {
        /* ACK(43) with the device's seq 1 */
        tympan_ctx_t ref;
        size_t got = out_len;
        uint8_t saved[64];
        memcpy(saved, out, got);
        setup(&ref, 0);
        ref.tx_seq = 1;
        tympan_send_ack(&ref, 43);
        CHECK(got == out_len && memcmp(saved, out, got) == 0);
    }
}

static void test_version_mismatch_is_nacked(void)
{
    tympan_ctx_t ctx;
    setup(&ctx, 0);
    feed_str(&ctx, GOLD_CMD_V2, GOLD_CMD_V2_LEN);
    CHECK(n_commands == 0 && ctx.stats.frame_errors == 1);
    CHECK(out_is(GOLD_NACK_V2, GOLD_NACK_V2_LEN));
}

static void test_corruption_and_resync(void)
{
    tympan_ctx_t ctx;
    char bad[64];
    uint8_t junk[600];
    size_t k;
    setup(&ctx, 0);
    /* Every single-byte flip of a CMD frame is rejected; no command runs. */
    for (k = 0; k + 1 < GOLD_CMD_LEN; k++) {
        unsigned bit;
        for (bit = 0; bit < 8; bit++) {
            memcpy(bad, GOLD_CMD, GOLD_CMD_LEN);
            bad[k] = (char)(bad[k] ^ (1 << bit));
            feed_str(&ctx, bad, GOLD_CMD_LEN);
            tympan_feed(&ctx, (const uint8_t *)"", 1); /* a 0x00 ends any split-up frame */
        }
    }
    CHECK(n_commands == 0);
    CHECK(ctx.stats.crc_errors + ctx.stats.frame_errors > 0);
    /* An over-long run without 0x00 is skipped; the next frame works. */
    memset(junk, 0x55, sizeof junk);
    tympan_feed(&ctx, junk, sizeof junk);
    CHECK(ctx.stats.oversize == 1);
    out_len = 0;
    feed_str(&ctx, GOLD_CMD_NAMED, GOLD_CMD_NAMED_LEN);
    CHECK(ctx.stats.oversize == 1 && n_commands == 0); /* still skipping: no 0x00 yet */
    tympan_feed(&ctx, (const uint8_t *)"", 1);
    feed_str(&ctx, GOLD_CMD_NAMED, GOLD_CMD_NAMED_LEN);
    CHECK(n_commands == 1 && strcmp(last_cmd.name, "blink") == 0);
}

static void test_limits(void)
{
    tympan_ctx_t ctx;
    tympan_field_t f[3];
    char big[400];
    uint16_t seq;
    setup(&ctx, 0);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    f[0] = tympan_str("a", big);
    f[1] = tympan_str("b", big);
    f[2] = tympan_str("c", big);
    seq = ctx.tx_seq;
    CHECK(tympan_emit_event(&ctx, TYMPAN_EV_LLM_DONE, 1, f, 3) == TYMPAN_ERR_TOO_BIG);
    CHECK(out_len == 0 && ctx.tx_seq == seq);
    /* One string of 400 bytes is cut to 255; "é" (2 bytes) is never split. */
    CHECK(tympan_emit_event(&ctx, TYMPAN_EV_LLM_DONE, 1, f, 1) == TYMPAN_OK);
    {
        uint8_t dec[600];
        long n = tympan_cobs_decode(out, out_len - 1, dec, sizeof dec);
        /* header 4 + type 1 + t 8 + n 1 + key (1+1) + tag 1 + len 1 + 255 + crc 2 */
        CHECK(n == 4 + 1 + 8 + 1 + 2 + 1 + 1 + 255 + 2);
    }
    {
        char accents[401];
        size_t i;
        uint8_t dec[600];
        long n;
        for (i = 0; i < 400; i += 2) {
            accents[i] = (char)0xC3;
            accents[i + 1] = (char)0xA9;
        }
        accents[400] = '\0';
        out_len = 0;
        f[0] = tympan_str("a", accents);
        CHECK(tympan_emit_event(&ctx, TYMPAN_EV_LLM_DONE, 1, f, 1) == TYMPAN_OK);
        n = tympan_cobs_decode(out, out_len - 1, dec, sizeof dec);
        CHECK(n > 20 && dec[4 + 1 + 8 + 1 + 2 + 1] == 254);
    }
    CHECK(tympan_emit_event(&ctx, 0, 1, NULL, 0) == TYMPAN_ERR_ARG);
    fail_writes = 1;
    CHECK(tympan_log(&ctx, TYMPAN_LOG_INFO, "x") == TYMPAN_ERR_WRITE);
    CHECK(ctx.stats.tx_errors == 1);
    {
        tympan_config_t none;
        memset(&none, 0, sizeof none);
        CHECK(tympan_init(&ctx, &none) == TYMPAN_ERR_ARG);
    }
}

static void test_defer_sends_nothing_until_asked(void)
{
    tympan_ctx_t ctx;
    static const char hdr[] = "later";
    uint8_t payload[16], raw[32], wire[40];
    size_t n = 0, w;
    uint16_t crc;
    setup(&ctx, 0);
    /* Build CMD "later" (by name) with the library's own building blocks. */
    raw[0] = 1;
    raw[1] = TYMPAN_MSG_CMD;
    raw[2] = 9;
    raw[3] = 0;
    payload[n++] = 0;
    payload[n++] = 5;
    memcpy(payload + n, hdr, 5);
    n += 5;
    payload[n++] = 0;
    memcpy(raw + 4, payload, n);
    crc = tympan_crc16(raw, 4 + n);
    raw[4 + n] = (uint8_t)crc;
    raw[5 + n] = (uint8_t)(crc >> 8);
    w = tympan_cobs_encode(raw, 6 + n, wire);
    wire[w++] = 0;
    tympan_feed(&ctx, wire, w);
    CHECK(n_commands == 1 && strcmp(last_cmd.name, "later") == 0 && out_len == 0);
    CHECK(tympan_send_ack(&ctx, last_cmd.seq) == TYMPAN_OK && out_len > 0);
}

static void test_retry_is_answered_without_running_again(void)
{
    tympan_ctx_t ctx;
    setup(&ctx, 0);
    feed_str(&ctx, GOLD_CMD_NAMED, GOLD_CMD_NAMED_LEN);
    feed_str(&ctx, GOLD_CMD_NAMED, GOLD_CMD_NAMED_LEN); /* same seq 43: a host retry */
    CHECK(n_commands == 1 && ctx.stats.cmd_repeats == 1 && ctx.tx_seq == 2);
    feed_str(&ctx, GOLD_CMD, GOLD_CMD_LEN); /* NACKed; its retry gets the same NACK */
    out_len = 0;
    feed_str(&ctx, GOLD_CMD, GOLD_CMD_LEN);
    CHECK(n_commands == 2 && ctx.stats.cmd_repeats == 2);
    {
        tympan_ctx_t ref;
        uint8_t got[128];
        size_t got_len = out_len;
        memcpy(got, out, out_len);
        setup(&ref, 0);
        ref.tx_seq = 3;
        tympan_send_nack(&ref, 42, TYMPAN_NACK_BAD_ARGUMENT, "volume_db: expected a number");
        CHECK(got_len == out_len && memcmp(got, out, got_len) == 0);
    }
    /* Outside the window, or after a host HELLO, the same seq is a new command. */
    setup(&ctx, 0);
    feed_str(&ctx, GOLD_CMD_NAMED, GOLD_CMD_NAMED_LEN);
    clock_us += TYMPAN_REPEAT_WINDOW_US + 1;
    feed_str(&ctx, GOLD_CMD_NAMED, GOLD_CMD_NAMED_LEN);
    CHECK(n_commands == 2);
    feed_str(&ctx, GOLD_HELLO_REQ, GOLD_HELLO_REQ_LEN);
    feed_str(&ctx, GOLD_CMD_NAMED, GOLD_CMD_NAMED_LEN);
    CHECK(n_commands == 3 && ctx.stats.cmd_repeats == 0);
}

/* Pseudo-random bytes (and mutated valid frames) in random-size pieces: nothing crashes
 * (the Makefile also runs this under AddressSanitizer/UBSan), no corrupted CMD runs, and
 * the link still works afterwards. */
static void test_fuzz_feed(void)
{
    tympan_ctx_t ctx;
    uint32_t x = 12345u;
    uint8_t buf[700];
    long round;
    setup(&ctx, 0);
    for (round = 0; round < 4000; round++) {
        size_t n, i;
        x = x * 1664525u + 1013904223u;
        n = (x >> 8) % sizeof buf;
        if (round % 2) {
            for (i = 0; i < n; i++) {
                x = x * 1664525u + 1013904223u;
                buf[i] = (uint8_t)(x >> 24);
            }
        } else {
            /* a valid CMD with one or two bytes changed (never the delimiter) */
            n = GOLD_CMD_NAMED_LEN;
            memcpy(buf, GOLD_CMD_NAMED, n);
            for (i = 0; i < 1 + (x >> 30) % 2; i++) {
                x = x * 1664525u + 1013904223u;
                buf[(x >> 8) % (n - 1)] ^= (uint8_t)(1u + (x >> 24) % 255u);
            }
        }
        out_len = 0;
        tympan_feed(&ctx, buf, n);
    }
    tympan_feed(&ctx, (const uint8_t *)"", 1);
    CHECK(n_commands == 0);
    CHECK(ctx.stats.crc_errors + ctx.stats.frame_errors + ctx.stats.oversize > 1000);
    feed_str(&ctx, GOLD_CMD_NAMED, GOLD_CMD_NAMED_LEN);
    CHECK(n_commands == 1 && strcmp(last_cmd.name, "blink") == 0);
}

int main(void)
{
    test_crc();
    test_cobs_vectors();
    test_boot_and_hello_match_python();
    test_ping_gets_pong_with_device_times();
    test_event_matches_python();
    test_commands();
    test_version_mismatch_is_nacked();
    test_corruption_and_resync();
    test_limits();
    test_defer_sends_nothing_until_asked();
    test_retry_is_answered_without_running_again();
    test_fuzz_feed();
    printf("tympan C tests: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
