/*
 * nats_serial.c: see nats_serial.h. C99, no heap, no stdio.
 *
 * Receive path: bytes -> (frames mode: accumulate until 0x00, COBS-decode in place, check CRC) ->
 * protocol state machine over rx_buf. A MSG control line is tokenised in place (separators become
 * NUL), its payload is appended after it, and the CR after the payload is overwritten with NUL, so
 * the callback gets C strings and a NUL-terminated payload without copying.
 * Transmit path: ops are emitted piecewise; in frames mode each byte updates the CRC and goes through
 * a streaming COBS encoder (Cheshire & Baker's StuffData with a 255-byte block), so no transmit
 * buffer is needed.
 */
#include "nats_serial.h"

#include <string.h>

enum { RX_CONTROL = 0, RX_PAYLOAD = 1, RX_SKIP_LINE = 2, RX_SKIP_BYTES = 3 };

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF (passed in), refin/refout false, xorout 0;
 * check value 0x29B1 for "123456789". Bitwise: 16 bytes of code instead of a 512-byte table. */
uint16_t nats_serial_crc16(const uint8_t *data, size_t len, uint16_t crc) {
    size_t i;
    int bit;
    for (i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

size_t nats_serial_frame_encode(const uint8_t *payload, size_t len, uint8_t *out, size_t out_cap) {
    size_t code_at = 0, w = 1, i;
    uint8_t code = 1;
    uint16_t crc = nats_serial_crc16(payload, len, 0xFFFFu);
    if (out == NULL || out_cap < 2 || (payload == NULL && len > 0)) {
        return 0;
    }
    for (i = 0; i < len + 2; i++) {
        uint8_t b = i < len ? payload[i] : (uint8_t)(i == len ? (crc >> 8) : (crc & 0xFFu));
        if (b == 0) {
            out[code_at] = code;
            code = 1;
            code_at = w++;
        } else {
            if (w >= out_cap) {
                return 0;
            }
            out[w++] = b;
            if (++code == 0xFF) { /* 254 data bytes: block without an implied zero */
                out[code_at] = code;
                code = 1;
                code_at = w++;
            }
        }
        if (w >= out_cap) {
            return 0;
        }
    }
    out[code_at] = code;
    out[w++] = 0; /* delimiter; w < out_cap was checked above */
    return w;
}

/* ---- transmit ------------------------------------------------------------------------------- */

static void tx_flush_block(nats_serial_t *ns) {
    ns->tx_block[0] = (uint8_t)(ns->tx_block_len + 1);
    ns->cfg.write(ns->tx_block, (size_t)ns->tx_block_len + 1, ns->cfg.write_user);
    ns->tx_block_len = 0;
}

static void tx_cobs_put(nats_serial_t *ns, uint8_t b) {
    if (b == 0) {
        tx_flush_block(ns);
        return;
    }
    ns->tx_block[1 + ns->tx_block_len++] = b;
    if (ns->tx_block_len == 254) {
        tx_flush_block(ns); /* code 0xFF */
    }
}

static void op_begin(nats_serial_t *ns) {
    ns->tx_crc = 0xFFFFu;
    ns->tx_block_len = 0;
}

static void out_bytes(nats_serial_t *ns, const uint8_t *p, size_t n) {
    size_t i;
    if (n == 0) {
        return;
    }
    if (ns->cfg.mode == NATS_SERIAL_PLAIN) {
        ns->cfg.write(p, n, ns->cfg.write_user);
        return;
    }
    ns->tx_crc = nats_serial_crc16(p, n, ns->tx_crc);
    for (i = 0; i < n; i++) {
        tx_cobs_put(ns, p[i]);
    }
}

static void out_str(nats_serial_t *ns, const char *s) { out_bytes(ns, (const uint8_t *)s, strlen(s)); }

static void out_u32(nats_serial_t *ns, uint32_t v) {
    char digits[10];
    size_t n = 0;
    char out[10];
    size_t i;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0);
    for (i = 0; i < n; i++) {
        out[i] = digits[n - 1 - i];
    }
    out_bytes(ns, (const uint8_t *)out, n);
}

static void op_end(nats_serial_t *ns) {
    static const uint8_t delimiter = 0;
    if (ns->cfg.mode == NATS_SERIAL_PLAIN) {
        return;
    }
    tx_cobs_put(ns, (uint8_t)(ns->tx_crc >> 8)); /* CRC big-endian, not itself CRC'd */
    tx_cobs_put(ns, (uint8_t)(ns->tx_crc & 0xFFu));
    tx_flush_block(ns);
    ns->cfg.write(&delimiter, 1, ns->cfg.write_user);
}

/* A subject, reply or queue is one protocol argument: non-empty, no whitespace (nats-protocol 1.1). */
static int valid_token(const char *s) {
    if (s == NULL || *s == '\0') {
        return 0;
    }
    for (; *s; s++) {
        if (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') {
            return 0;
        }
    }
    return 1;
}

static size_t copy_str(char *dst, size_t at, size_t cap, const char *src) {
    while (*src && at + 1 < cap) {
        dst[at++] = *src++;
    }
    dst[at] = '\0';
    return at;
}

static size_t copy_u32(char *dst, size_t at, size_t cap, uint32_t v) {
    char digits[10];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0);
    while (n > 0 && at + 1 < cap) {
        dst[at++] = digits[--n];
    }
    dst[at] = '\0';
    return at;
}

/* ---- public API ----------------------------------------------------------------------------- */

int nats_serial_init(nats_serial_t *ns, const nats_serial_config_t *cfg) {
    const char *prefix;
    if (ns == NULL || cfg == NULL || cfg->write == NULL || cfg->rx_buf == NULL || cfg->rx_cap < 16 ||
        cfg->subs == NULL || cfg->subs_cap == 0 ||
        (cfg->mode == NATS_SERIAL_FRAMES && (cfg->frame_buf == NULL || cfg->frame_cap < 4)) ||
        (cfg->mode != NATS_SERIAL_PLAIN && cfg->mode != NATS_SERIAL_FRAMES)) {
        return NATS_SERIAL_ERR_ARG;
    }
    prefix = cfg->inbox_prefix ? cfg->inbox_prefix : "_INBOX.dev";
    if (!valid_token(prefix) || strlen(prefix) >= NATS_SERIAL_INBOX_MAX) {
        return NATS_SERIAL_ERR_ARG;
    }
    memset(ns, 0, sizeof(*ns));
    ns->cfg = *cfg;
    memset(cfg->subs, 0, cfg->subs_cap * sizeof(cfg->subs[0]));
    ns->inbox_len = copy_str(ns->inbox, 0, sizeof(ns->inbox), prefix);
    ns->next_sid = 1;
    ns->next_token = 1;
    return NATS_SERIAL_OK;
}

int nats_serial_connect(nats_serial_t *ns, const char *name) {
    const char *p;
    if (name != NULL) {
        for (p = name; *p; p++) {
            if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
                return NATS_SERIAL_ERR_ARG;
            }
        }
    }
    op_begin(ns);
    out_str(ns, "CONNECT {\"verbose\":false,\"pedantic\":false");
    if (name != NULL) {
        out_str(ns, ",\"name\":\"");
        out_str(ns, name);
        out_str(ns, "\"");
    }
    out_str(ns, ",\"lang\":\"c\",\"version\":\"" NATS_SERIAL_VERSION "\",\"protocol\":1}\r\n");
    op_end(ns);
    return NATS_SERIAL_OK;
}

int nats_serial_publish(nats_serial_t *ns, const char *subject, const char *reply, const uint8_t *data,
                        size_t len) {
    if (ns == NULL || !valid_token(subject) || (reply != NULL && !valid_token(reply)) ||
        (data == NULL && len > 0) || len > 0xFFFFFFFFu) {
        return NATS_SERIAL_ERR_ARG;
    }
    op_begin(ns);
    out_str(ns, "PUB ");
    out_str(ns, subject);
    out_str(ns, " ");
    if (reply != NULL) {
        out_str(ns, reply);
        out_str(ns, " ");
    }
    out_u32(ns, (uint32_t)len);
    out_str(ns, "\r\n");
    out_bytes(ns, data, len);
    out_str(ns, "\r\n");
    op_end(ns);
    ns->stats.msgs_out++;
    return NATS_SERIAL_OK;
}

int32_t nats_serial_subscribe(nats_serial_t *ns, const char *subject, const char *queue,
                              nats_serial_msg_fn cb, void *user) {
    size_t i;
    nats_serial_sub_t *slot = NULL;
    if (ns == NULL || cb == NULL || !valid_token(subject) || (queue != NULL && !valid_token(queue))) {
        return NATS_SERIAL_ERR_ARG;
    }
    for (i = 0; i < ns->cfg.subs_cap && slot == NULL; i++) {
        if (ns->cfg.subs[i].sid == 0) {
            slot = &ns->cfg.subs[i];
        }
    }
    if (slot == NULL || ns->next_sid > 0x7FFFFFFFu) {
        return NATS_SERIAL_ERR_FULL;
    }
    slot->sid = ns->next_sid++;
    slot->cb = cb;
    slot->user = user;
    op_begin(ns);
    out_str(ns, "SUB ");
    out_str(ns, subject);
    out_str(ns, " ");
    if (queue != NULL) {
        out_str(ns, queue);
        out_str(ns, " ");
    }
    out_u32(ns, slot->sid);
    out_str(ns, "\r\n");
    op_end(ns);
    return (int32_t)slot->sid;
}

int nats_serial_unsubscribe(nats_serial_t *ns, uint32_t sid, uint32_t max_msgs) {
    size_t i;
    if (ns == NULL || sid == 0) {
        return NATS_SERIAL_ERR_ARG;
    }
    for (i = 0; i < ns->cfg.subs_cap; i++) {
        if (ns->cfg.subs[i].sid == sid) {
            break;
        }
    }
    if (i == ns->cfg.subs_cap) {
        return NATS_SERIAL_ERR_ARG;
    }
    if (max_msgs == 0) { /* with max_msgs the slot stays until unsubscribed with 0 */
        ns->cfg.subs[i].sid = 0;
        if (sid == ns->inbox_sid) {
            ns->inbox_sid = 0;
        }
    }
    op_begin(ns);
    out_str(ns, "UNSUB ");
    out_u32(ns, sid);
    if (max_msgs != 0) {
        out_str(ns, " ");
        out_u32(ns, max_msgs);
    }
    out_str(ns, "\r\n");
    op_end(ns);
    return NATS_SERIAL_OK;
}

static void on_inbox(nats_serial_t *ns, const nats_serial_msg_t *msg, void *user) {
    const char *p = msg->subject + ns->inbox_len;
    uint32_t token = 0;
    size_t i;
    (void)user;
    if (strncmp(msg->subject, ns->inbox, ns->inbox_len) != 0 || *p != '.') {
        return;
    }
    for (p++; *p; p++) {
        if (*p < '0' || *p > '9' || token > 429496729u) {
            return;
        }
        token = token * 10u + (uint32_t)(*p - '0');
    }
    for (i = 0; i < NATS_SERIAL_MAX_REQUESTS; i++) {
        nats_serial_req_t *r = &ns->reqs[i];
        if (r->token != 0 && r->token == token) {
            nats_serial_reply_fn cb = r->cb;
            void *cb_user = r->user;
            r->token = 0; /* free first: the callback may start another request */
            cb(ns, msg, cb_user);
            return;
        }
    }
}

int nats_serial_request(nats_serial_t *ns, const char *subject, const uint8_t *data, size_t len,
                        uint32_t timeout_ms, uint32_t now_ms, nats_serial_reply_fn cb, void *user) {
    char reply[NATS_SERIAL_INBOX_MAX + 12];
    size_t i, n;
    nats_serial_req_t *slot = NULL;
    int rc;
    if (ns == NULL || cb == NULL || !valid_token(subject)) {
        return NATS_SERIAL_ERR_ARG;
    }
    for (i = 0; i < NATS_SERIAL_MAX_REQUESTS && slot == NULL; i++) {
        if (ns->reqs[i].token == 0) {
            slot = &ns->reqs[i];
        }
    }
    if (slot == NULL) {
        return NATS_SERIAL_ERR_FULL;
    }
    if (ns->inbox_sid == 0) { /* one wildcard inbox subscription serves every request */
        int32_t sid;
        n = copy_str(reply, 0, sizeof(reply), ns->inbox);
        copy_str(reply, n, sizeof(reply), ".*");
        sid = nats_serial_subscribe(ns, reply, NULL, on_inbox, NULL);
        if (sid < 0) {
            return sid;
        }
        ns->inbox_sid = (uint32_t)sid;
    }
    n = copy_str(reply, 0, sizeof(reply), ns->inbox);
    n = copy_str(reply, n, sizeof(reply), ".");
    copy_u32(reply, n, sizeof(reply), ns->next_token);
    rc = nats_serial_publish(ns, subject, reply, data, len);
    if (rc != NATS_SERIAL_OK) {
        return rc;
    }
    slot->token = ns->next_token;
    slot->deadline_ms = now_ms + timeout_ms;
    slot->cb = cb;
    slot->user = user;
    ns->next_token = ns->next_token == 0xFFFFFFFFu ? 1u : ns->next_token + 1u;
    return NATS_SERIAL_OK;
}

void nats_serial_tick(nats_serial_t *ns, uint32_t now_ms) {
    size_t i;
    for (i = 0; i < NATS_SERIAL_MAX_REQUESTS; i++) {
        nats_serial_req_t *r = &ns->reqs[i];
        /* Wrap-safe comparison of 32-bit millisecond ticks (as Arduino millis() wraps at 49.7 days). */
        if (r->token != 0 && (int32_t)(now_ms - r->deadline_ms) >= 0) {
            nats_serial_reply_fn cb = r->cb;
            void *cb_user = r->user;
            r->token = 0;
            cb(ns, NULL, cb_user);
        }
    }
}

int nats_serial_respond(nats_serial_t *ns, const nats_serial_msg_t *msg, const uint8_t *data, size_t len) {
    if (ns == NULL || msg == NULL || msg->reply == NULL) {
        return NATS_SERIAL_ERR_ARG;
    }
    return nats_serial_publish(ns, msg->reply, NULL, data, len);
}

/* ---- commands (the gateway's envelope, edge.adapters.commands) -------------------------------- */

/* JSON text that needs no escaping: no '"', '\\' or control characters. */
static int json_plain(const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) {
            return 0;
        }
    }
    return 1;
}

/* PUB <reply> <len> of the pieces, then the pieces: the envelope is streamed, never buffered. */
static int respond_parts(nats_serial_t *ns, const nats_serial_msg_t *msg, const char *const *parts, size_t n) {
    size_t i, len = 0;
    if (ns == NULL || msg == NULL || msg->reply == NULL) {
        return NATS_SERIAL_ERR_ARG;
    }
    for (i = 0; i < n; i++) {
        len += strlen(parts[i]);
    }
    op_begin(ns);
    out_str(ns, "PUB ");
    out_str(ns, msg->reply);
    out_str(ns, " ");
    out_u32(ns, (uint32_t)len);
    out_str(ns, "\r\n");
    for (i = 0; i < n; i++) {
        out_str(ns, parts[i]);
    }
    out_str(ns, "\r\n");
    op_end(ns);
    ns->stats.msgs_out++;
    return NATS_SERIAL_OK;
}

const char *nats_serial_command_action(const nats_serial_msg_t *msg) {
    const char *dot;
    if (msg == NULL || msg->subject == NULL) {
        return "";
    }
    dot = strrchr(msg->subject, '.');
    return dot != NULL ? dot + 1 : msg->subject;
}

int nats_serial_reply_ok(nats_serial_t *ns, const nats_serial_msg_t *msg, const char *result_json) {
    const char *parts[3];
    parts[0] = "{\"ok\":true,\"result\":";
    parts[1] = result_json != NULL && *result_json ? result_json : "null";
    parts[2] = "}";
    return respond_parts(ns, msg, parts, 3);
}

int nats_serial_reply_error(nats_serial_t *ns, const nats_serial_msg_t *msg, const char *code, const char *error) {
    const char *parts[5];
    if (code == NULL || error == NULL || !json_plain(code) || !json_plain(error)) {
        return NATS_SERIAL_ERR_ARG;
    }
    parts[0] = "{\"ok\":false,\"error\":\"";
    parts[1] = error;
    parts[2] = "\",\"code\":\"";
    parts[3] = code;
    parts[4] = "\"}";
    return respond_parts(ns, msg, parts, 5);
}

/* ---- receive -------------------------------------------------------------------------------- */

static int parse_u32(const char *s, uint32_t *out) {
    uint32_t v = 0;
    if (*s == '\0') {
        return 0;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 429496729u || (v == 429496729u && *s > '5')) {
            return 0;
        }
        v = v * 10u + (uint32_t)(*s - '0');
    }
    *out = v;
    return 1;
}

static int op_is(const char *tok, const char *name) {
    for (; *name; tok++, name++) {
        char c = *tok;
        if (c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        if (c != *name) {
            return 0;
        }
    }
    return *tok == '\0';
}

static void rx_bad_line(nats_serial_t *ns, size_t len) {
    ns->stats.lines_bad++;
    ns->stats.bytes_dropped += (uint32_t)len;
}

static void rx_control(nats_serial_t *ns) {
    char *line = (char *)ns->cfg.rx_buf;
    size_t stored = ns->rx_len, len = ns->rx_len, i, ntok = 0;
    size_t tok[7];
    int is_hmsg;
    uint32_t sid, hdr = 0, total;
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    line[len] = '\0'; /* stored < rx_cap, so there is room */
    for (i = 0; i < len; i++) {            /* tokenise in place */
        if (line[i] == ' ' || line[i] == '\t') {
            line[i] = '\0';
        } else if (i == 0 || line[i - 1] == '\0') {
            if (ntok == 7) {
                rx_bad_line(ns, len);
                ns->rx_len = 0;
                return;
            }
            tok[ntok++] = i;
        }
    }
    ns->rx_len = 0;
    if (ntok == 0) {
        return;
    }
    if (op_is(line + tok[0], "PING")) {
        ns->stats.pings++;
        op_begin(ns);
        out_str(ns, "PONG\r\n");
        op_end(ns);
        return;
    }
    if (op_is(line + tok[0], "PONG") || op_is(line + tok[0], "+OK") || op_is(line + tok[0], "INFO")) {
        return;
    }
    if (op_is(line + tok[0], "-ERR")) {
        ns->stats.errors++;
        return;
    }
    is_hmsg = op_is(line + tok[0], "HMSG");
    if (!is_hmsg && !op_is(line + tok[0], "MSG")) {
        rx_bad_line(ns, len);
        return;
    }
    /* MSG <subject> <sid> [reply] <#bytes>; HMSG <subject> <sid> [reply] <#hdr> <#total> */
    if (ntok < (size_t)(4 + is_hmsg) || ntok > (size_t)(5 + is_hmsg) || !parse_u32(line + tok[2], &sid) ||
        !parse_u32(line + tok[ntok - 1], &total) || (is_hmsg && !parse_u32(line + tok[ntok - 2], &hdr)) ||
        hdr > total) {
        rx_bad_line(ns, len);
        return;
    }
    if (total > ns->cfg.rx_cap || stored + (size_t)total + 2 > ns->cfg.rx_cap) {
        ns->stats.overflows++;
        ns->stats.bytes_dropped += (uint32_t)len;
        ns->rx_state = RX_SKIP_BYTES;
        ns->rx_need = total + 2u;
        return;
    }
    ns->msg_subject = tok[1];
    ns->msg_sid = sid;
    ns->msg_reply = ntok == (size_t)(5 + is_hmsg) ? tok[3] : 0;
    ns->msg_hdr = is_hmsg ? (int32_t)hdr : -1;
    ns->msg_total = total;
    ns->msg_payload = stored;
    ns->rx_len = stored;
    ns->rx_state = RX_PAYLOAD;
    ns->rx_need = total + 2u;
}

static void rx_dispatch(nats_serial_t *ns) {
    uint8_t *buf = ns->cfg.rx_buf;
    size_t end = ns->msg_payload + ns->msg_total, i;
    nats_serial_msg_t msg;
    ns->rx_len = 0;
    ns->rx_state = RX_CONTROL;
    if (buf[end] != '\r' || buf[end + 1] != '\n') {
        rx_bad_line(ns, ns->msg_total + 2u);
        return;
    }
    buf[end] = 0;
    msg.subject = (const char *)buf + ns->msg_subject;
    msg.reply = ns->msg_reply ? (const char *)buf + ns->msg_reply : NULL;
    msg.sid = ns->msg_sid;
    msg.data = buf + ns->msg_payload + (ns->msg_hdr > 0 ? (size_t)ns->msg_hdr : 0u);
    msg.data_len = ns->msg_total - (ns->msg_hdr > 0 ? (size_t)ns->msg_hdr : 0u);
    for (i = 0; i < ns->cfg.subs_cap; i++) {
        if (ns->cfg.subs[i].sid != 0 && ns->cfg.subs[i].sid == msg.sid) {
            nats_serial_sub_t *s = &ns->cfg.subs[i];
            ns->stats.msgs_in++;
            s->cb(ns, &msg, s->user);
            return;
        }
    }
}

static void rx_byte(nats_serial_t *ns, uint8_t b) {
    switch (ns->rx_state) {
    case RX_CONTROL:
        if (b == '\n') {
            rx_control(ns);
        } else if (ns->rx_len + 1 >= ns->cfg.rx_cap) { /* keep one byte for the NUL */
            ns->stats.overflows++;
            ns->stats.bytes_dropped += (uint32_t)ns->rx_len + 1u;
            ns->rx_len = 0;
            ns->rx_state = RX_SKIP_LINE;
        } else {
            ns->cfg.rx_buf[ns->rx_len++] = b;
        }
        break;
    case RX_PAYLOAD:
        ns->cfg.rx_buf[ns->rx_len++] = b; /* room was checked in rx_control */
        if (--ns->rx_need == 0) {
            rx_dispatch(ns);
        }
        break;
    case RX_SKIP_LINE:
        if (b == '\n') {
            ns->rx_state = RX_CONTROL;
        } else {
            ns->stats.bytes_dropped++;
        }
        break;
    default: /* RX_SKIP_BYTES */
        ns->stats.bytes_dropped++;
        if (--ns->rx_need == 0) {
            ns->rx_state = RX_CONTROL;
        }
        break;
    }
}

/* COBS-decode in place (the write index never passes the read index); -1 if invalid. */
static long cobs_decode_inplace(uint8_t *buf, size_t n) {
    size_t i = 0, w = 0, k;
    while (i < n) {
        uint8_t code = buf[i];
        if (code == 0 || i + code > n) {
            return -1;
        }
        i++;
        for (k = 1; k < code; k++) {
            buf[w++] = buf[i++];
        }
        if (code != 0xFF && i < n) {
            buf[w++] = 0;
        }
    }
    return (long)w;
}

static void frame_end(nats_serial_t *ns) {
    long n = cobs_decode_inplace(ns->cfg.frame_buf, ns->frame_len);
    size_t i, plen;
    uint8_t *p = ns->cfg.frame_buf;
    if (n < 2 || nats_serial_crc16(p, (size_t)n - 2, 0xFFFFu) !=
                     (uint16_t)(((uint16_t)p[n - 2] << 8) | p[n - 1])) {
        ns->stats.frames_bad++;
        ns->stats.bytes_dropped += (uint32_t)ns->frame_len;
        return;
    }
    ns->stats.frames_ok++;
    plen = (size_t)n - 2;
    for (i = 0; i < plen; i++) {
        rx_byte(ns, p[i]);
    }
}

void nats_serial_feed(nats_serial_t *ns, const uint8_t *data, size_t len) {
    size_t i;
    if (ns == NULL || data == NULL) {
        return;
    }
    for (i = 0; i < len; i++) {
        uint8_t b = data[i];
        if (ns->cfg.mode == NATS_SERIAL_PLAIN) {
            rx_byte(ns, b);
        } else if (b == 0) { /* frame delimiter */
            if (!ns->frame_skip && ns->frame_len > 0) {
                frame_end(ns);
            }
            ns->frame_len = 0;
            ns->frame_skip = 0;
        } else if (ns->frame_skip) {
            ns->stats.bytes_dropped++;
        } else if (ns->frame_len == ns->cfg.frame_cap) {
            ns->stats.overflows++;
            ns->stats.frames_bad++;
            ns->stats.bytes_dropped += (uint32_t)ns->frame_len + 1u;
            ns->frame_len = 0;
            ns->frame_skip = 1;
        } else {
            ns->cfg.frame_buf[ns->frame_len++] = b;
        }
    }
}
