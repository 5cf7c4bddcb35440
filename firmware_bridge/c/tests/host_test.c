/*
 * Host test harness for nats_serial (run by tests/unit/test_fw_c.py).
 *
 * usage: host_test plain|frames [rx_cap [frame_cap [subs_cap]]]  < script
 * Script, one command per line ("-" = absent/empty; data is hex):
 *   connect <name|->                 pub <subject> <reply|-> <hex|->
 *   sub <subject> <queue|-> print|echo|command   (echo: respond "ack:"+data when a reply subject is
 *                                    present; command: the relay example below answers with the envelope)
 *   unsub <sid> <max>                req <subject> <hex|-> <timeout_ms> <now_ms>
 *   tick <now_ms>                    feed <hex|-> <chunk>   (chunk 0 = all at once)
 *   frame <hex|->                    crc <hex|->            stats
 * Output: "TX <hex>" after any command that wrote bytes; callbacks print "MSG <subject> <sid>
 * <reply|-> <hex|->", "REPLY <hex|->" or "TIMEOUT"; "RC <n>" / "SID <n>" / "ENC <hex>" / "CRC <hex>".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../nats_serial.h"

#define MAX_BUF 8192

static uint8_t tx[1 << 20];
static size_t tx_len;
static uint8_t rx_buf[MAX_BUF];
static uint8_t frame_buf[MAX_BUF];
static nats_serial_sub_t subs[16];
static const char *ECHO = "echo";
static const char *COMMAND = "command";

static void put_hex(const uint8_t *p, size_t n) {
    size_t i;
    if (n == 0) {
        fputs("-", stdout);
    }
    for (i = 0; i < n; i++) {
        printf("%02x", p[i]);
    }
}

static size_t from_hex(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    unsigned v;
    if (strcmp(s, "-") == 0) {
        return 0;
    }
    while (s[0] && s[1] && n < cap && sscanf(s, "%2x", &v) == 1) {
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void on_write(const uint8_t *data, size_t len, void *user) {
    (void)user;
    if (tx_len + len <= sizeof(tx)) {
        memcpy(tx + tx_len, data, len);
        tx_len += len;
    }
}

static void on_msg(nats_serial_t *ns, const nats_serial_msg_t *msg, void *user) {
    printf("MSG %s %u %s ", msg->subject, (unsigned)msg->sid, msg->reply ? msg->reply : "-");
    put_hex(msg->data, msg->data_len);
    printf("\n");
    if (msg->data[msg->data_len] != 0) {
        printf("BUG payload not NUL-terminated\n");
    }
    if (user == COMMAND) {
        /* The relay of examples/relay: "relay" with {"on":true|false}, anything else unsupported. */
        const char *action = nats_serial_command_action(msg);
        printf("ACTION %s\n", action);
        if (strcmp(action, "relay") != 0) {
            printf("RC %d\n", nats_serial_reply_error(ns, msg, "unsupported", "unknown action"));
        } else if (strstr((const char *)msg->data, "\"on\":true") != NULL) {
            printf("RC %d\n", nats_serial_reply_ok(ns, msg, "{\"relay\":true}"));
        } else if (strstr((const char *)msg->data, "\"on\":false") != NULL) {
            printf("RC %d\n", nats_serial_reply_ok(ns, msg, "{\"relay\":false}"));
        } else {
            printf("RC %d\n", nats_serial_reply_error(ns, msg, "bad_arguments", "'on' must be true or false"));
        }
        return;
    }
    if (user == ECHO && msg->reply != NULL) {
        uint8_t out[MAX_BUF];
        size_t n = msg->data_len < MAX_BUF - 4 ? msg->data_len : MAX_BUF - 4;
        memcpy(out, "ack:", 4);
        memcpy(out + 4, msg->data, n);
        nats_serial_respond(ns, msg, out, n + 4);
    }
}

static void on_reply(nats_serial_t *ns, const nats_serial_msg_t *msg, void *user) {
    (void)ns;
    (void)user;
    if (msg == NULL) {
        printf("TIMEOUT\n");
    } else {
        printf("REPLY ");
        put_hex(msg->data, msg->data_len);
        printf("\n");
    }
}

int main(int argc, char **argv) {
    static char line[4 * MAX_BUF];
    static uint8_t data[2 * MAX_BUF];
    static uint8_t enc[3 * MAX_BUF];
    nats_serial_t ns;
    nats_serial_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.mode = (argc > 1 && strcmp(argv[1], "frames") == 0) ? NATS_SERIAL_FRAMES : NATS_SERIAL_PLAIN;
    cfg.write = on_write;
    cfg.rx_buf = rx_buf;
    cfg.rx_cap = argc > 2 ? (size_t)atoi(argv[2]) : 512;
    cfg.frame_buf = frame_buf;
    cfg.frame_cap = argc > 3 ? (size_t)atoi(argv[3]) : 600;
    cfg.subs = subs;
    cfg.subs_cap = argc > 4 ? (size_t)atoi(argv[4]) : 8;
    cfg.inbox_prefix = "_INBOX.host";
    if (cfg.rx_cap > MAX_BUF || cfg.frame_cap > MAX_BUF || cfg.subs_cap > 16 ||
        nats_serial_init(&ns, &cfg) != NATS_SERIAL_OK) {
        printf("INIT FAILED\n");
        return 2;
    }
    while (fgets(line, sizeof(line), stdin) != NULL) {
        static char a[64], b[4 * MAX_BUF], c[4 * MAX_BUF], d[4 * MAX_BUF], e[64];
        int n = sscanf(line, "%63s %32767s %32767s %32767s %63s", a, b, c, d, e);
        size_t len;
        if (n <= 0) {
            continue;
        }
        tx_len = 0;
        if (strcmp(a, "connect") == 0 && n >= 2) {
            printf("RC %d\n", nats_serial_connect(&ns, strcmp(b, "-") == 0 ? NULL : b));
        } else if (strcmp(a, "pub") == 0 && n >= 4) {
            len = from_hex(d, data, sizeof(data));
            printf("RC %d\n", nats_serial_publish(&ns, b, strcmp(c, "-") == 0 ? NULL : c, data, len));
        } else if (strcmp(a, "sub") == 0 && n >= 4) {
            void *mode = strcmp(d, "echo") == 0 ? (void *)ECHO : strcmp(d, "command") == 0 ? (void *)COMMAND : NULL;
            int32_t sid = nats_serial_subscribe(&ns, b, strcmp(c, "-") == 0 ? NULL : c, on_msg, mode);
            printf("SID %ld\n", (long)sid);
        } else if (strcmp(a, "unsub") == 0 && n >= 3) {
            printf("RC %d\n", nats_serial_unsubscribe(&ns, (uint32_t)strtoul(b, NULL, 10),
                                                      (uint32_t)strtoul(c, NULL, 10)));
        } else if (strcmp(a, "req") == 0 && n >= 5) {
            len = from_hex(c, data, sizeof(data));
            printf("RC %d\n", nats_serial_request(&ns, b, data, len, (uint32_t)strtoul(d, NULL, 10),
                                                  (uint32_t)strtoul(e, NULL, 10), on_reply, NULL));
        } else if (strcmp(a, "tick") == 0 && n >= 2) {
            nats_serial_tick(&ns, (uint32_t)strtoul(b, NULL, 10));
        } else if (strcmp(a, "feed") == 0 && n >= 2) {
            size_t chunk = n >= 3 ? (size_t)strtoul(c, NULL, 10) : 0, off = 0;
            len = from_hex(b, data, sizeof(data));
            if (chunk == 0) {
                chunk = len ? len : 1;
            }
            while (off < len) {
                size_t k = len - off < chunk ? len - off : chunk;
                nats_serial_feed(&ns, data + off, k);
                off += k;
            }
        } else if (strcmp(a, "frame") == 0) {
            len = n >= 2 ? from_hex(b, data, sizeof(data)) : 0;
            len = nats_serial_frame_encode(data, len, enc, sizeof(enc));
            printf("ENC ");
            put_hex(enc, len);
            printf("\n");
        } else if (strcmp(a, "crc") == 0) {
            len = n >= 2 ? from_hex(b, data, sizeof(data)) : 0;
            printf("CRC %04x\n", nats_serial_crc16(data, len, 0xFFFFu));
        } else if (strcmp(a, "stats") == 0) {
            const nats_serial_stats_t *s = &ns.stats;
            printf("STATS msgs_in=%lu msgs_out=%lu pings=%lu frames_ok=%lu frames_bad=%lu lines_bad=%lu "
                   "overflows=%lu bytes_dropped=%lu errors=%lu\n",
                   (unsigned long)s->msgs_in, (unsigned long)s->msgs_out, (unsigned long)s->pings,
                   (unsigned long)s->frames_ok, (unsigned long)s->frames_bad, (unsigned long)s->lines_bad,
                   (unsigned long)s->overflows, (unsigned long)s->bytes_dropped, (unsigned long)s->errors);
        } else {
            printf("BADCMD %s\n", a);
        }
        if (tx_len > 0) {
            printf("TX ");
            put_hex(tx, tx_len);
            printf("\n");
        }
        fflush(stdout);
    }
    return 0;
}
