/*
 * tympan.h: the device side of the tympan serial protocol, version 1 (docs/protocol.md).
 *
 * Portable C99. No malloc, no stdio; uses only <stdint.h>, <stddef.h>, <stdbool.h> and
 * <string.h>. All state lives in one `tympan_ctx_t` that you allocate (static is fine).
 *
 * You supply two hooks in `tympan_config_t`:
 *   write_bytes(user, data, len)  send bytes to the host (UART, USB CDC, ...); return 0 when
 *                                 all `len` bytes were written or queued, nonzero on failure.
 *   now_us(user)                  a monotonic microsecond clock (64-bit, never goes back).
 * and optionally on_command (CMD handling) and lock/unlock (if several tasks call the
 * library: each frame is built in the context's buffer, so calls must not overlap).
 *
 * Typical use:
 *   static tympan_ctx_t link;
 *   tympan_init(&link, &config);
 *   tympan_boot(&link, "power_on");                       // 0x00, BOOT, HELLO
 *   ... in the UART receive path:   tympan_feed(&link, bytes, n);   // PING->PONG, CMD->ACK/NACK
 *   ... anywhere:                   tympan_field_t f[] = { tympan_int("turn", 1) };
 *                                   tympan_emit_event(&link, TYMPAN_EV_VAD_SPEECH_START,
 *                                                     tympan_now_us(&link), f, 1);
 */
#ifndef TYMPAN_H
#define TYMPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TYMPAN_PROTOCOL_VERSION 1

/* Largest decoded frame the library sends (header + payload + CRC). The host accepts 512. */
#ifndef TYMPAN_MAX_FRAME_BYTES
#define TYMPAN_MAX_FRAME_BYTES 512
#endif
/* Largest decoded frame the library receives. Host frames (CMD, PING, HELLO) are short. */
#ifndef TYMPAN_RX_MAX_FRAME_BYTES
#define TYMPAN_RX_MAX_FRAME_BYTES 256
#endif
/* A CMD whose seq equals the previous CMD's and arrives within this many µs is a host
 * retry (its ACK was lost): the library re-sends the same answer without calling
 * on_command again. */
#ifndef TYMPAN_REPEAT_WINDOW_US
#define TYMPAN_REPEAT_WINDOW_US 3000000u
#endif
/* Most arguments one CMD may carry; more are refused with NACK bad_argument. */
#ifndef TYMPAN_MAX_CMD_ARGS
#define TYMPAN_MAX_CMD_ARGS 8
#endif

/* Longest COBS encoding of n bytes (without the 0x00 delimiter). */
#define TYMPAN_COBS_MAX(n) ((n) + (n) / 254 + 1)

/* Message types (frame header byte 2). */
enum {
    TYMPAN_MSG_HELLO = 1,
    TYMPAN_MSG_PING = 2,
    TYMPAN_MSG_PONG = 3,
    TYMPAN_MSG_EVENT = 4,
    TYMPAN_MSG_CMD = 5,
    TYMPAN_MSG_ACK = 6,
    TYMPAN_MSG_NACK = 7,
    TYMPAN_MSG_LOG = 8,
    TYMPAN_MSG_BOOT = 9
};

/* EVENT types: the reference agent's telemetry vocabulary (docs/protocol.md). */
enum {
    TYMPAN_EV_SESSION_START = 1,
    TYMPAN_EV_SESSION_END = 2,
    TYMPAN_EV_VAD_SPEECH_START = 3,
    TYMPAN_EV_VAD_SPEECH_END = 4,
    TYMPAN_EV_ASR_PARTIAL = 5,
    TYMPAN_EV_ASR_FINAL = 6,
    TYMPAN_EV_LLM_REQUEST = 7,
    TYMPAN_EV_LLM_FIRST_TOKEN = 8,
    TYMPAN_EV_LLM_TOKEN = 9,
    TYMPAN_EV_LLM_DONE = 10,
    TYMPAN_EV_TTS_CHUNK = 11,
    TYMPAN_EV_TTS_FIRST_AUDIO = 12,
    TYMPAN_EV_PLAYBACK_START = 13,
    TYMPAN_EV_PLAYBACK_END = 14,
    TYMPAN_EV_PLAYBACK_UNDERRUN = 15,
    TYMPAN_EV_BARGE_IN = 16,
    TYMPAN_EV_CANCEL_DONE = 17,
    TYMPAN_EV_STATE = 18,
    TYMPAN_EV_QUEUE_DEPTH = 19,
    TYMPAN_EV_INPUT_OVERRUN = 20,
    TYMPAN_EV_LOOP_STALL = 21,
    TYMPAN_EV_TURN_SUMMARY = 22,
    TYMPAN_EV_SPECULATION = 23,
    TYMPAN_EV_EARCON = 24,
    TYMPAN_EV_VENDOR_FIRST = 128 /* 128..254: your own events */
};

/* CMD ids. TYMPAN_CMD_NAMED: the command's name travels as a string. */
enum {
    TYMPAN_CMD_NAMED = 0,
    TYMPAN_CMD_RESET = 1,
    TYMPAN_CMD_CONFIGURE = 2,
    TYMPAN_CMD_START_SESSION = 3,
    TYMPAN_CMD_STOP_SESSION = 4,
    TYMPAN_CMD_SET_VOLUME = 5
};

/* What on_command returns: TYMPAN_ACK, a NACK code, or TYMPAN_DEFER (you answer later
 * with tympan_send_ack / tympan_send_nack and the command's seq). */
enum {
    TYMPAN_ACK = 0,
    TYMPAN_NACK_UNKNOWN_COMMAND = 1,
    TYMPAN_NACK_BAD_ARGUMENT = 2,
    TYMPAN_NACK_BUSY = 3,
    TYMPAN_NACK_NOT_SUPPORTED = 4,
    TYMPAN_NACK_FAILED = 5,
    TYMPAN_NACK_VERSION_MISMATCH = 6,
    TYMPAN_NACK_BAD_FRAME = 7,
    TYMPAN_DEFER = 255
};

enum { TYMPAN_LOG_DEBUG = 10, TYMPAN_LOG_INFO = 20, TYMPAN_LOG_WARNING = 30, TYMPAN_LOG_ERROR = 40 };

/* Return values of the sending functions. */
enum {
    TYMPAN_OK = 0,
    TYMPAN_ERR_TOO_BIG = -1, /* the frame would exceed TYMPAN_MAX_FRAME_BYTES: nothing sent */
    TYMPAN_ERR_WRITE = -2,   /* write_bytes reported a failure */
    TYMPAN_ERR_ARG = -3      /* a NULL pointer or a value out of range */
};

/* EVENT field kinds (the wire tag is derived: bool -> 1/2, int -> i32 when it fits else i64). */
typedef enum {
    TYMPAN_FIELD_NULL = 0,
    TYMPAN_FIELD_BOOL = 1,
    TYMPAN_FIELD_INT = 3,
    TYMPAN_FIELD_FLOAT = 5,
    TYMPAN_FIELD_STR = 6
} tympan_field_kind_t;

/* One EVENT field. Build with tympan_int / tympan_float / tympan_str / tympan_bool / tympan_null.
 * Keys and strings longer than 255 bytes are cut (at a UTF-8 character boundary). */
typedef struct {
    const char *key;
    tympan_field_kind_t kind;
    union {
        bool b;
        int64_t i;
        double f;
        const char *s;
    } v;
} tympan_field_t;

/* A received CMD, valid only during the on_command call. Every string is NUL-terminated. */
typedef struct {
    uint16_t seq;       /* the CMD frame's seq: what ACK/NACK answer */
    uint8_t id;         /* TYMPAN_CMD_* (0: by name) */
    const char *name;   /* "reset", "configure", ..., the sent name, or "" for unknown ids */
    uint8_t n_args;
    const char *keys[TYMPAN_MAX_CMD_ARGS];
    const char *values[TYMPAN_MAX_CMD_ARGS];
} tympan_command_t;

typedef struct {
    /* Required hooks. */
    int (*write_bytes)(void *user, const uint8_t *data, size_t len);
    uint64_t (*now_us)(void *user);
    /* Optional: handle a CMD. Return TYMPAN_ACK, a TYMPAN_NACK_* code (optionally writing a
     * reason into nack_text, NUL-terminated, at most nack_text_size bytes), or TYMPAN_DEFER.
     * The ACK is sent after you return: for "reset", set a flag and restart afterwards. NULL
     * NACKs every command with not_supported. */
    uint8_t (*on_command)(void *user, const tympan_command_t *cmd, char *nack_text,
                          size_t nack_text_size);
    /* Optional: serialise calls from several tasks (both NULL: no locking). */
    void (*lock)(void *user);
    void (*unlock)(void *user);
    void *user; /* passed to every hook */
    /* What HELLO says. */
    const char *firmware;
    const char *firmware_version;
    const char *const *capabilities;
    uint8_t n_capabilities;
    uint32_t clock_hz; /* resolution of now_us: 1000000 for a true microsecond timer */
} tympan_config_t;

typedef struct {
    uint32_t frames_rx;    /* good frames received */
    uint32_t frames_tx;    /* frames handed to write_bytes */
    uint32_t crc_errors;   /* received frames with a bad CRC */
    uint32_t frame_errors; /* bad COBS, too short, other version, bad payload */
    uint32_t oversize;     /* runs longer than the receive buffer without a 0x00 */
    uint32_t tx_errors;    /* write_bytes failures */
    uint32_t cmd_repeats;  /* CMD retries answered again without running them */
} tympan_stats_t;

typedef struct {
    tympan_config_t cfg;
    tympan_stats_t stats;
    uint16_t tx_seq;
    uint16_t rx_len;
    bool rx_skipping;
    /* The last CMD answered, to answer a retry (same seq) the same way. */
    bool last_cmd_valid;
    uint16_t last_cmd_seq;
    uint8_t last_cmd_result;
    uint64_t last_cmd_t_us;
    char last_nack_text[64];
    uint8_t rx_buf[TYMPAN_COBS_MAX(TYMPAN_RX_MAX_FRAME_BYTES)];
    char cmd_text[TYMPAN_RX_MAX_FRAME_BYTES + 1];
    uint8_t tx_raw[TYMPAN_MAX_FRAME_BYTES];
    uint8_t tx_wire[TYMPAN_COBS_MAX(TYMPAN_MAX_FRAME_BYTES) + 1];
} tympan_ctx_t;

/* Set up a context (seq starts at 0). Returns TYMPAN_ERR_ARG without write_bytes/now_us. */
int tympan_init(tympan_ctx_t *ctx, const tympan_config_t *cfg);
/* Device start: a lone 0x00 (flushes the host's decoder), BOOT(reason, now), then HELLO. */
int tympan_boot(tympan_ctx_t *ctx, const char *reason);
int tympan_send_hello(tympan_ctx_t *ctx);
/* Feed received bytes (any split). Answers PING with PONG, HELLO with HELLO, CMD with
 * on_command + ACK/NACK (a retry of the last CMD gets the same answer again, see
 * TYMPAN_REPEAT_WINDOW_US). Never fails; bad frames are counted in ctx->stats.
 * Call it from one task only (it is not reentrant with itself). */
void tympan_feed(tympan_ctx_t *ctx, const uint8_t *data, size_t len);
/* Send one EVENT: type TYMPAN_EV_*, device time in microseconds, n fields. */
int tympan_emit_event(tympan_ctx_t *ctx, uint8_t event_type, uint64_t t_device_us,
                      const tympan_field_t *fields, size_t n_fields);
int tympan_log(tympan_ctx_t *ctx, uint8_t level, const char *text);
int tympan_send_ack(tympan_ctx_t *ctx, uint16_t cmd_seq);
int tympan_send_nack(tympan_ctx_t *ctx, uint16_t cmd_seq, uint8_t code, const char *text);
/* The value of argument `key` of a received CMD, or NULL. */
const char *tympan_cmd_arg(const tympan_command_t *cmd, const char *key);
uint64_t tympan_now_us(tympan_ctx_t *ctx);

/* Field constructors. */
tympan_field_t tympan_int(const char *key, int64_t value);
tympan_field_t tympan_float(const char *key, double value);
tympan_field_t tympan_str(const char *key, const char *value);
tympan_field_t tympan_bool(const char *key, bool value);
tympan_field_t tympan_null(const char *key);

/* Building blocks (exposed for tests and for custom transports). */
uint16_t tympan_crc16(const uint8_t *data, size_t len); /* CRC-16/CCITT-FALSE */
/* COBS-encode len bytes into out (room for TYMPAN_COBS_MAX(len)); returns the length. */
size_t tympan_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);
/* COBS-decode (no delimiter); out may equal in. Returns the length, or -1 if malformed or
 * longer than out_cap. */
long tympan_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);
/* Send one frame of any type with this payload (header, CRC, COBS, delimiter added). */
int tympan_send_frame(tympan_ctx_t *ctx, uint8_t msg_type, const uint8_t *payload, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TYMPAN_H */
