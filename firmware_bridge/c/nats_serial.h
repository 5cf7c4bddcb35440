/*
 * nats_serial: a small NATS client for microcontrollers over a serial line (C99, no heap).
 *
 * The device speaks the NATS client protocol (PUB/SUB/UNSUB/CONNECT, MSG/PING from the gateway) to
 * the nats-edge gateway, either as plain text (NATS_SERIAL_PLAIN) or with every op wrapped in a frame
 * (NATS_SERIAL_FRAMES): COBS(op || CRC-16/CCITT-FALSE big-endian) followed by 0x00 (COBS: Cheshire &
 * Baker, IEEE/ACM ToN 1999; CRC: poly 0x1021, init 0xFFFF, no reflection, check 0x29B1 for
 * "123456789"). Bytes are identical to the Python firmware_bridge.frames and MicroPython module.
 *
 * I/O: output goes through the write callback (called one or more times per op; in frames mode in
 * blocks of at most 255 bytes, the frame ends with 0x00). Input: pass every received byte to
 * nats_serial_feed(). Message callbacks run inside nats_serial_feed(); they may publish.
 * Memory: the caller provides every buffer in nats_serial_config_t; nothing is allocated.
 * Not thread-safe: call everything from one task (or guard with your own lock).
 */
#ifndef NATS_SERIAL_H
#define NATS_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NATS_SERIAL_VERSION "0.1.0"
/* Outstanding requests tracked at once (fixed array inside nats_serial_t). */
#ifndef NATS_SERIAL_MAX_REQUESTS
#define NATS_SERIAL_MAX_REQUESTS 4
#endif
#define NATS_SERIAL_INBOX_MAX 32

enum {
    NATS_SERIAL_OK = 0,
    NATS_SERIAL_ERR_ARG = -1,  /* NULL/empty argument, whitespace in a subject, bad config */
    NATS_SERIAL_ERR_FULL = -2, /* no free subscription or request slot */
    NATS_SERIAL_ERR_SPACE = -3 /* output buffer too small */
};

typedef enum { NATS_SERIAL_PLAIN = 0, NATS_SERIAL_FRAMES = 1 } nats_serial_mode_t;

typedef struct nats_serial nats_serial_t;

/* A received message. Strings are NUL-terminated and data[data_len] == 0; all point into the
 * receive buffer and are valid only during the callback. reply is NULL when the message has none. */
typedef struct {
    const char *subject;
    const char *reply;
    const uint8_t *data;
    size_t data_len;
    uint32_t sid;
} nats_serial_msg_t;

typedef void (*nats_serial_write_fn)(const uint8_t *data, size_t len, void *user);
typedef void (*nats_serial_msg_fn)(nats_serial_t *ns, const nats_serial_msg_t *msg, void *user);
/* Request completion: msg is the reply, or NULL on timeout. */
typedef void (*nats_serial_reply_fn)(nats_serial_t *ns, const nats_serial_msg_t *msg, void *user);

typedef struct {
    uint32_t sid; /* 0 = free slot */
    nats_serial_msg_fn cb;
    void *user;
} nats_serial_sub_t;

typedef struct {
    uint32_t token; /* 0 = free slot */
    uint32_t deadline_ms;
    nats_serial_reply_fn cb;
    void *user;
} nats_serial_req_t;

typedef struct {
    nats_serial_mode_t mode;
    nats_serial_write_fn write;
    void *write_user;
    uint8_t *rx_buf;  /* holds one control line + one payload + 3 bytes */
    size_t rx_cap;
    uint8_t *frame_buf; /* frames mode only: one encoded frame (may be NULL in plain mode) */
    size_t frame_cap;
    nats_serial_sub_t *subs; /* subscription table, subs_cap entries */
    size_t subs_cap;
    const char *inbox_prefix; /* unique per device, e.g. "_INBOX.node7"; NULL = "_INBOX.dev" */
} nats_serial_config_t;

typedef struct {
    uint32_t msgs_in, msgs_out, pings;
    uint32_t frames_ok, frames_bad; /* frames mode: COBS/CRC/too-short errors counted in frames_bad */
    uint32_t lines_bad;             /* unknown op, bad MSG arguments, payload not followed by CRLF */
    uint32_t overflows;             /* line/frame/payload larger than its buffer, skipped */
    uint32_t bytes_dropped;
    uint32_t errors; /* -ERR received */
} nats_serial_stats_t;

struct nats_serial {
    nats_serial_config_t cfg;
    nats_serial_stats_t stats;
    uint32_t next_sid;
    uint32_t next_token;
    uint32_t inbox_sid;
    nats_serial_req_t reqs[NATS_SERIAL_MAX_REQUESTS];
    char inbox[NATS_SERIAL_INBOX_MAX];
    size_t inbox_len;
    /* receive state */
    size_t rx_len;
    uint8_t rx_state; /* 0 control line, 1 payload, 2 skip line, 3 skip bytes */
    uint32_t rx_need;  /* payload + CRLF bytes awaited / bytes to skip */
    size_t msg_subject, msg_reply, msg_payload; /* offsets into rx_buf (reply: 0 = none) */
    int32_t msg_hdr;
    uint32_t msg_total, msg_sid;
    size_t frame_len;
    uint8_t frame_skip;
    /* transmit state (frames mode): CRC and COBS block in progress */
    uint16_t tx_crc;
    uint8_t tx_block[255];
    uint8_t tx_block_len; /* data bytes in tx_block[1..] */
};

int nats_serial_init(nats_serial_t *ns, const nats_serial_config_t *cfg);
/* CONNECT {"verbose":false,"pedantic":false,"name":...,"lang":"c","version":...,"protocol":1}.
 * name may be NULL; it must not need JSON escaping (no '"', '\\' or control characters). */
int nats_serial_connect(nats_serial_t *ns, const char *name);
int nats_serial_publish(nats_serial_t *ns, const char *subject, const char *reply, const uint8_t *data,
                        size_t len);
/* Returns the sid (> 0) or a negative NATS_SERIAL_ERR_*. queue may be NULL. */
int32_t nats_serial_subscribe(nats_serial_t *ns, const char *subject, const char *queue,
                              nats_serial_msg_fn cb, void *user);
/* max_msgs 0 = now; otherwise the server removes the subscription after max_msgs messages. */
int nats_serial_unsubscribe(nats_serial_t *ns, uint32_t sid, uint32_t max_msgs);
/* Publish with a reply subject <inbox>.<token>; cb runs from nats_serial_feed() with the reply, or
 * from nats_serial_tick() with NULL once now_ms passes now_ms + timeout_ms (wrap-safe). */
int nats_serial_request(nats_serial_t *ns, const char *subject, const uint8_t *data, size_t len,
                        uint32_t timeout_ms, uint32_t now_ms, nats_serial_reply_fn cb, void *user);
void nats_serial_tick(nats_serial_t *ns, uint32_t now_ms);
/* Publish to msg->reply; NATS_SERIAL_ERR_ARG if the message has no reply subject. */
int nats_serial_respond(nats_serial_t *ns, const nats_serial_msg_t *msg, const uint8_t *data, size_t len);
void nats_serial_feed(nats_serial_t *ns, const uint8_t *data, size_t len);

/* Commands: the gateway's one reply envelope (edge.adapters.commands). Subscribe to
 * "cmd.<gateway>.serial.<device>.*" (or "cmd.*.serial.<device>.*"); in the callback the action is the
 * subject's last token and the arguments are msg->data (a JSON object, "{}" when none). Answer with
 * exactly one of:
 *   nats_serial_reply_ok:    {"ok":true,"result":<result_json>} (JSON text; NULL = null)
 *   nats_serial_reply_error: {"ok":false,"error":"<error>","code":"<code>"}, code one of unsupported,
 *                            bad_arguments, busy, failed; error and code must not need JSON escaping.
 * Both return NATS_SERIAL_ERR_ARG when the message has no reply subject. The envelope is streamed to
 * the write callback: no buffer is needed. */
const char *nats_serial_command_action(const nats_serial_msg_t *msg);
int nats_serial_reply_ok(nats_serial_t *ns, const nats_serial_msg_t *msg, const char *result_json);
int nats_serial_reply_error(nats_serial_t *ns, const nats_serial_msg_t *msg, const char *code, const char *error);

/* Utilities (also used by the host tests). */
uint16_t nats_serial_crc16(const uint8_t *data, size_t len, uint16_t crc); /* start with 0xFFFF */
/* Encode one frame (COBS + CRC + 0x00) into out; returns its length or 0 if out_cap is too small.
 * out_cap >= len + 2 + (len + 2) / 254 + 2 always suffices. */
size_t nats_serial_frame_encode(const uint8_t *payload, size_t len, uint8_t *out, size_t out_cap);

#ifdef __cplusplus
}
#endif
#endif /* NATS_SERIAL_H */
