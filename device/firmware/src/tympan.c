/*
 * tympan.c: the device side of the tympan serial protocol, version 1 (docs/protocol.md).
 * Portable C99: no malloc, no stdio; only stdint/stddef/stdbool/string.
 */
#include "tympan.h"

#include <string.h>

#define HEADER_BYTES 4u
#define CRC_BYTES 2u
#define MIN_FRAME_BYTES (HEADER_BYTES + CRC_BYTES)

/* ------------------------------------------------------------------ CRC and COBS */

uint16_t tympan_crc16(const uint8_t *data, size_t len)
{
    /* Nibble table: 32 bytes of ROM instead of 512, about 2x slower than a byte table. */
    static const uint16_t table[16] = {0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5,
                                       0x60C6, 0x70E7, 0x8108, 0x9129, 0xA14A, 0xB16B,
                                       0xC18C, 0xD1AD, 0xE1CE, 0xF1EF};
    uint16_t crc = 0xFFFF;
    size_t i;
    for (i = 0; i < len; i++) {
        crc = (uint16_t)((crc << 4) ^ table[((crc >> 12) ^ (data[i] >> 4)) & 0x0F]);
        crc = (uint16_t)((crc << 4) ^ table[((crc >> 12) ^ (data[i] & 0x0F)) & 0x0F]);
    }
    return crc;
}

size_t tympan_cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t code_at = 0, o = 1, i;
    uint8_t code = 1;
    for (i = 0; i < len; i++) {
        if (in[i] != 0) {
            out[o++] = in[i];
            code++;
        }
        if (in[i] == 0 || code == 0xFF) {
            out[code_at] = code;
            code = 1;
            code_at = o++;
        }
    }
    out[code_at] = code;
    return o;
}

long tympan_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap)
{
    size_t i = 0, o = 0;
    while (i < len) {
        uint8_t code = in[i];
        size_t n = (size_t)code - 1u, k;
        if (code == 0 || i + code > len || o + n > out_cap) {
            return -1;
        }
        for (k = 0; k < n; k++) {
            uint8_t b = in[i + 1 + k];
            if (b == 0) {
                return -1;
            }
            out[o + k] = b; /* o <= i always, so decoding in place is safe */
        }
        o += n;
        i += code;
        if (code != 0xFF && i < len) {
            if (o >= out_cap) {
                return -1;
            }
            out[o++] = 0;
        }
    }
    return (long)o;
}

/* ------------------------------------------------------------------ payload writer */

typedef struct {
    uint8_t *buf;
    size_t len;
    size_t cap;
    bool overflow;
} writer_t;

static void put_bytes(writer_t *w, const void *data, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->buf + w->len, data, n);
    w->len += n;
}

static void put_le(writer_t *w, uint64_t v, unsigned n_bytes)
{
    uint8_t b[8];
    unsigned k;
    for (k = 0; k < n_bytes; k++) {
        b[k] = (uint8_t)(v >> (8u * k));
    }
    put_bytes(w, b, n_bytes);
}

static void put_u8(writer_t *w, uint8_t v) { put_bytes(w, &v, 1); }

/* A str: u8 byte count + UTF-8, cut to 255 bytes at a character boundary. NULL sends "". */
static void put_str(writer_t *w, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > 255) {
        n = 255;
        while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    put_u8(w, (uint8_t)n);
    if (n) {
        put_bytes(w, s, n);
    }
}

/* IEEE-754 binary64 bits of d, also where double is 32 bits wide (AVR). */
static uint64_t f64_bits(double d)
{
    union {
        double d;
        uint64_t u;
        uint32_t f;
    } pun;
    uint64_t sign, man;
    uint32_t exp;
    int e;
    pun.u = 0;
    pun.d = d;
    if (sizeof(double) == sizeof(uint64_t)) {
        return pun.u;
    }
    sign = (uint64_t)(pun.f >> 31) << 63;
    exp = (pun.f >> 23) & 0xFFu;
    man = pun.f & 0x7FFFFFu;
    if (exp == 0xFFu) {
        return sign | 0x7FF0000000000000ull | (man << 29);
    }
    if (exp == 0) {
        if (man == 0) {
            return sign;
        }
        e = -126; /* subnormal float: normal as a double */
        while (!(man & 0x800000u)) {
            man <<= 1;
            e--;
        }
        return sign | ((uint64_t)(e + 1023) << 52) | ((man & 0x7FFFFFu) << 29);
    }
    return sign | ((uint64_t)((int)exp - 127 + 1023) << 52) | (man << 29);
}

static void put_field(writer_t *w, const tympan_field_t *f)
{
    put_str(w, f->key);
    switch (f->kind) {
    case TYMPAN_FIELD_BOOL:
        put_u8(w, f->v.b ? 2 : 1);
        break;
    case TYMPAN_FIELD_INT:
        if (f->v.i >= INT32_MIN && f->v.i <= INT32_MAX) {
            put_u8(w, 3);
            put_le(w, (uint64_t)f->v.i, 4);
        } else {
            put_u8(w, 4);
            put_le(w, (uint64_t)f->v.i, 8);
        }
        break;
    case TYMPAN_FIELD_FLOAT:
        put_u8(w, 5);
        put_le(w, f64_bits(f->v.f), 8);
        break;
    case TYMPAN_FIELD_STR:
        put_u8(w, 6);
        put_str(w, f->v.s);
        break;
    default:
        put_u8(w, 0);
        break;
    }
}

/* ------------------------------------------------------------------ sending */

static void lock(tympan_ctx_t *ctx)
{
    if (ctx->cfg.lock) {
        ctx->cfg.lock(ctx->cfg.user);
    }
}

static void unlock(tympan_ctx_t *ctx)
{
    if (ctx->cfg.unlock) {
        ctx->cfg.unlock(ctx->cfg.user);
    }
}

/* A writer over the payload area of ctx->tx_raw (call with the lock held). */
static writer_t payload_writer(tympan_ctx_t *ctx)
{
    writer_t w;
    w.buf = ctx->tx_raw + HEADER_BYTES;
    w.len = 0;
    w.cap = TYMPAN_MAX_FRAME_BYTES - MIN_FRAME_BYTES;
    w.overflow = false;
    return w;
}

/* Header + CRC + COBS + delimiter around the payload in ctx->tx_raw, then write it. */
static int finish_frame(tympan_ctx_t *ctx, uint8_t msg_type, const writer_t *w)
{
    size_t n = HEADER_BYTES + w->len, wire;
    uint16_t crc, seq;
    if (w->overflow) {
        return TYMPAN_ERR_TOO_BIG;
    }
    seq = ctx->tx_seq++;
    ctx->tx_raw[0] = TYMPAN_PROTOCOL_VERSION;
    ctx->tx_raw[1] = msg_type;
    ctx->tx_raw[2] = (uint8_t)seq;
    ctx->tx_raw[3] = (uint8_t)(seq >> 8);
    crc = tympan_crc16(ctx->tx_raw, n);
    ctx->tx_raw[n] = (uint8_t)crc;
    ctx->tx_raw[n + 1] = (uint8_t)(crc >> 8);
    wire = tympan_cobs_encode(ctx->tx_raw, n + CRC_BYTES, ctx->tx_wire);
    ctx->tx_wire[wire++] = 0;
    ctx->stats.frames_tx++;
    if (ctx->cfg.write_bytes(ctx->cfg.user, ctx->tx_wire, wire) != 0) {
        ctx->stats.tx_errors++;
        return TYMPAN_ERR_WRITE;
    }
    return TYMPAN_OK;
}

int tympan_send_frame(tympan_ctx_t *ctx, uint8_t msg_type, const uint8_t *payload, size_t len)
{
    writer_t w;
    int rc;
    if (!ctx || (!payload && len)) {
        return TYMPAN_ERR_ARG;
    }
    lock(ctx);
    w = payload_writer(ctx);
    put_bytes(&w, payload, len);
    rc = finish_frame(ctx, msg_type, &w);
    unlock(ctx);
    return rc;
}

int tympan_init(tympan_ctx_t *ctx, const tympan_config_t *cfg)
{
    if (!ctx || !cfg || !cfg->write_bytes || !cfg->now_us) {
        return TYMPAN_ERR_ARG;
    }
    memset(ctx, 0, sizeof *ctx);
    ctx->cfg = *cfg;
    if (ctx->cfg.clock_hz == 0) {
        ctx->cfg.clock_hz = 1000000u;
    }
    return TYMPAN_OK;
}

uint64_t tympan_now_us(tympan_ctx_t *ctx) { return ctx->cfg.now_us(ctx->cfg.user); }

int tympan_send_hello(tympan_ctx_t *ctx)
{
    writer_t w;
    uint8_t k;
    int rc;
    if (!ctx) {
        return TYMPAN_ERR_ARG;
    }
    lock(ctx);
    w = payload_writer(ctx);
    put_u8(&w, TYMPAN_PROTOCOL_VERSION);
    put_le(&w, ctx->cfg.clock_hz, 4);
    put_str(&w, ctx->cfg.firmware);
    put_str(&w, ctx->cfg.firmware_version);
    put_u8(&w, ctx->cfg.capabilities ? ctx->cfg.n_capabilities : 0);
    for (k = 0; ctx->cfg.capabilities && k < ctx->cfg.n_capabilities; k++) {
        put_str(&w, ctx->cfg.capabilities[k]);
    }
    rc = finish_frame(ctx, TYMPAN_MSG_HELLO, &w);
    unlock(ctx);
    return rc;
}

int tympan_boot(tympan_ctx_t *ctx, const char *reason)
{
    static const uint8_t flush = 0;
    writer_t w;
    int rc;
    if (!ctx) {
        return TYMPAN_ERR_ARG;
    }
    lock(ctx);
    if (ctx->cfg.write_bytes(ctx->cfg.user, &flush, 1) != 0) {
        ctx->stats.tx_errors++;
    }
    w = payload_writer(ctx);
    put_le(&w, tympan_now_us(ctx), 8);
    put_str(&w, reason);
    rc = finish_frame(ctx, TYMPAN_MSG_BOOT, &w);
    unlock(ctx);
    if (rc != TYMPAN_OK) {
        return rc;
    }
    return tympan_send_hello(ctx);
}

int tympan_emit_event(tympan_ctx_t *ctx, uint8_t event_type, uint64_t t_device_us,
                      const tympan_field_t *fields, size_t n_fields)
{
    writer_t w;
    size_t k;
    int rc;
    if (!ctx || (!fields && n_fields) || n_fields > 255 || event_type == 0 ||
        event_type == 255) {
        return TYMPAN_ERR_ARG;
    }
    lock(ctx);
    w = payload_writer(ctx);
    put_u8(&w, event_type);
    put_le(&w, t_device_us, 8);
    put_u8(&w, (uint8_t)n_fields);
    for (k = 0; k < n_fields; k++) {
        put_field(&w, &fields[k]);
    }
    rc = finish_frame(ctx, TYMPAN_MSG_EVENT, &w);
    unlock(ctx);
    return rc;
}

int tympan_log(tympan_ctx_t *ctx, uint8_t level, const char *text)
{
    writer_t w;
    int rc;
    if (!ctx) {
        return TYMPAN_ERR_ARG;
    }
    lock(ctx);
    w = payload_writer(ctx);
    put_u8(&w, level);
    put_str(&w, text);
    rc = finish_frame(ctx, TYMPAN_MSG_LOG, &w);
    unlock(ctx);
    return rc;
}

int tympan_send_ack(tympan_ctx_t *ctx, uint16_t cmd_seq)
{
    writer_t w;
    int rc;
    if (!ctx) {
        return TYMPAN_ERR_ARG;
    }
    lock(ctx);
    w = payload_writer(ctx);
    put_le(&w, cmd_seq, 2);
    rc = finish_frame(ctx, TYMPAN_MSG_ACK, &w);
    unlock(ctx);
    return rc;
}

int tympan_send_nack(tympan_ctx_t *ctx, uint16_t cmd_seq, uint8_t code, const char *text)
{
    writer_t w;
    int rc;
    if (!ctx) {
        return TYMPAN_ERR_ARG;
    }
    lock(ctx);
    w = payload_writer(ctx);
    put_le(&w, cmd_seq, 2);
    put_u8(&w, code);
    put_str(&w, text);
    rc = finish_frame(ctx, TYMPAN_MSG_NACK, &w);
    unlock(ctx);
    return rc;
}

static int send_pong(tympan_ctx_t *ctx, uint64_t t_host_us, uint64_t t_rx_us)
{
    writer_t w;
    int rc;
    lock(ctx);
    w = payload_writer(ctx);
    put_le(&w, t_host_us, 8);
    put_le(&w, t_rx_us, 8);
    put_le(&w, tympan_now_us(ctx), 8); /* as late as possible: just before the write */
    rc = finish_frame(ctx, TYMPAN_MSG_PONG, &w);
    unlock(ctx);
    return rc;
}

/* ------------------------------------------------------------------ field constructors */

tympan_field_t tympan_int(const char *key, int64_t value)
{
    tympan_field_t f;
    f.key = key;
    f.kind = TYMPAN_FIELD_INT;
    f.v.i = value;
    return f;
}

tympan_field_t tympan_float(const char *key, double value)
{
    tympan_field_t f;
    f.key = key;
    f.kind = TYMPAN_FIELD_FLOAT;
    f.v.f = value;
    return f;
}

tympan_field_t tympan_str(const char *key, const char *value)
{
    tympan_field_t f;
    f.key = key;
    f.kind = TYMPAN_FIELD_STR;
    f.v.s = value;
    return f;
}

tympan_field_t tympan_bool(const char *key, bool value)
{
    tympan_field_t f;
    f.key = key;
    f.kind = TYMPAN_FIELD_BOOL;
    f.v.b = value;
    return f;
}

tympan_field_t tympan_null(const char *key)
{
    tympan_field_t f;
    f.key = key;
    f.kind = TYMPAN_FIELD_NULL;
    f.v.i = 0;
    return f;
}

/* ------------------------------------------------------------------ receiving */

typedef struct {
    const uint8_t *p;
    size_t left;
    bool bad;
} reader_t;

static uint64_t get_le(reader_t *r, unsigned n_bytes)
{
    uint64_t v = 0;
    unsigned k;
    if (r->bad || r->left < n_bytes) {
        r->bad = true;
        return 0;
    }
    for (k = 0; k < n_bytes; k++) {
        v |= (uint64_t)r->p[k] << (8u * k);
    }
    r->p += n_bytes;
    r->left -= n_bytes;
    return v;
}

/* Copy a str into *text (NUL-terminated); each str's length byte pays for its NUL. */
static const char *get_str(reader_t *r, char **text)
{
    size_t n = (size_t)get_le(r, 1);
    char *s = *text;
    if (r->bad || r->left < n) {
        r->bad = true;
        return "";
    }
    memcpy(s, r->p, n);
    s[n] = '\0';
    *text += n + 1;
    r->p += n;
    r->left -= n;
    return s;
}

const char *tympan_cmd_arg(const tympan_command_t *cmd, const char *key)
{
    uint8_t k;
    for (k = 0; cmd && key && k < cmd->n_args; k++) {
        if (strcmp(cmd->keys[k], key) == 0) {
            return cmd->values[k];
        }
    }
    return NULL;
}

static void handle_command(tympan_ctx_t *ctx, uint16_t seq, const uint8_t *payload, size_t len)
{
    static const char *const names[] = {"", "reset", "configure", "start_session",
                                        "stop_session", "set_volume"};
    tympan_command_t cmd;
    reader_t r;
    char *text = ctx->cmd_text;
    char nack_text[sizeof ctx->last_nack_text];
    uint8_t n_args, k, result;
    uint64_t t_now_us;

    r.p = payload;
    r.left = len;
    r.bad = false;
    memset(&cmd, 0, sizeof cmd);
    cmd.seq = seq;
    cmd.id = (uint8_t)get_le(&r, 1);
    if (cmd.id == TYMPAN_CMD_NAMED) {
        cmd.name = get_str(&r, &text);
    } else {
        cmd.name = cmd.id <= TYMPAN_CMD_SET_VOLUME ? names[cmd.id] : "";
    }
    n_args = (uint8_t)get_le(&r, 1);
    if (n_args > TYMPAN_MAX_CMD_ARGS) {
        tympan_send_nack(ctx, seq, TYMPAN_NACK_BAD_ARGUMENT, "too many arguments");
        return;
    }
    for (k = 0; k < n_args; k++) {
        cmd.keys[k] = get_str(&r, &text);
        cmd.values[k] = get_str(&r, &text);
    }
    cmd.n_args = n_args;
    if (r.bad || r.left != 0) {
        ctx->stats.frame_errors++;
        tympan_send_nack(ctx, seq, TYMPAN_NACK_BAD_FRAME, "malformed CMD payload");
        return;
    }
    ctx->stats.frames_rx++;
    t_now_us = tympan_now_us(ctx);
    if (ctx->last_cmd_valid && ctx->last_cmd_seq == seq &&
        t_now_us - ctx->last_cmd_t_us <= TYMPAN_REPEAT_WINDOW_US) {
        /* The host did not get our answer and resent the same frame: answer it again. */
        ctx->stats.cmd_repeats++;
        result = ctx->last_cmd_result;
        memcpy(nack_text, ctx->last_nack_text, sizeof nack_text);
    } else if (!ctx->cfg.on_command) {
        result = TYMPAN_NACK_NOT_SUPPORTED;
        strcpy(nack_text, "no command handler");
    } else {
        nack_text[0] = '\0';
        result = ctx->cfg.on_command(ctx->cfg.user, &cmd, nack_text, sizeof nack_text);
        nack_text[sizeof nack_text - 1] = '\0';
    }
    ctx->last_cmd_valid = true;
    ctx->last_cmd_seq = seq;
    ctx->last_cmd_result = result;
    ctx->last_cmd_t_us = t_now_us;
    memcpy(ctx->last_nack_text, nack_text, sizeof nack_text);
    if (result == TYMPAN_ACK) {
        tympan_send_ack(ctx, seq);
    } else if (result != TYMPAN_DEFER) {
        tympan_send_nack(ctx, seq, result, nack_text);
    }
}

static void handle_frame(tympan_ctx_t *ctx, uint64_t t_rx_us)
{
    long n = tympan_cobs_decode(ctx->rx_buf, ctx->rx_len, ctx->rx_buf, sizeof ctx->rx_buf);
    const uint8_t *b = ctx->rx_buf;
    size_t len;
    uint16_t seq;
    reader_t r;

    if (n < (long)MIN_FRAME_BYTES || n > (long)TYMPAN_RX_MAX_FRAME_BYTES) {
        ctx->stats.frame_errors++;
        return;
    }
    len = (size_t)n - CRC_BYTES;
    if (tympan_crc16(b, len) != (uint16_t)(b[len] | (b[len + 1] << 8))) {
        ctx->stats.crc_errors++;
        return;
    }
    seq = (uint16_t)(b[2] | (b[3] << 8));
    if (b[0] != TYMPAN_PROTOCOL_VERSION) {
        ctx->stats.frame_errors++;
        if (b[1] == TYMPAN_MSG_CMD) {
            tympan_send_nack(ctx, seq, TYMPAN_NACK_VERSION_MISMATCH,
                             "frame version differs from the device's (1)");
        }
        return;
    }
    r.p = b + HEADER_BYTES;
    r.left = len - HEADER_BYTES;
    r.bad = false;
    switch (b[1]) {
    case TYMPAN_MSG_PING: {
        uint64_t t_host_us = get_le(&r, 8);
        if (r.bad || r.left != 0) {
            ctx->stats.frame_errors++;
            return;
        }
        ctx->stats.frames_rx++;
        send_pong(ctx, t_host_us, t_rx_us);
        return;
    }
    case TYMPAN_MSG_HELLO:
        ctx->stats.frames_rx++;
        ctx->last_cmd_valid = false; /* a new host session: its seqs start afresh */
        tympan_send_hello(ctx);
        return;
    case TYMPAN_MSG_CMD:
        handle_command(ctx, seq, r.p, r.left);
        return;
    default: /* nothing else is for a device; count it and move on */
        ctx->stats.frames_rx++;
        return;
    }
}

void tympan_feed(tympan_ctx_t *ctx, const uint8_t *data, size_t len)
{
    size_t i;
    if (!ctx || !data) {
        return;
    }
    for (i = 0; i < len; i++) {
        uint8_t byte = data[i];
        if (byte == 0) {
            if (!ctx->rx_skipping && ctx->rx_len > 0) {
                handle_frame(ctx, tympan_now_us(ctx));
            }
            ctx->rx_len = 0;
            ctx->rx_skipping = false;
        } else if (!ctx->rx_skipping) {
            if (ctx->rx_len >= sizeof ctx->rx_buf) {
                ctx->stats.oversize++;
                ctx->rx_skipping = true;
                ctx->rx_len = 0;
            } else {
                ctx->rx_buf[ctx->rx_len++] = byte;
            }
        }
    }
}
