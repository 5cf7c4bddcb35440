/*
 * pty_device: a POSIX host program that plays a serial device using nats_serial (only its public API).
 * Run by tests/integration/test_firmware_c.py against the real broker; it is also an example of the
 * library on a host with a tty (a USB-serial adapter, or a pty in the tests).
 *
 * usage: pty_device TTY nats|frames DEVICE [GATEWAY [READINGS]]     (GATEWAY "gw1", READINGS 5)
 *
 * What the device does (subjects as in the gateway's convention):
 *   1. CONNECT, SUB cmd.*.serial.DEVICE.> (commands: requests from the gateway side)
 *   2. publishes READINGS readings on dev.GATEWAY.serial.DEVICE.temperature, body
 *      {"seq":<i>,"value":<21.50 + i/4>,"unit":"C"}, then one larger one on dev.GATEWAY.serial.DEVICE.batch
 *      (see publish_readings)
 *   3. requests svc.clock with body DEVICE (timeout 5 s) and prints "REPLY <hex of the reply>"
 *   4. answers commands: action "led" -> "led=<data>", "echo" -> <data>, "stats" -> its counters as
 *      JSON, "bye" -> "bye" (and finish), "relay" {"on":true|false} -> the gateway's command envelope
 *      {"ok":true,"result":{"relay":..}} (or {"ok":false,...,"code":"bad_arguments"}), anything else ->
 *      "unknown"; prints "CMD <action> <length>"
 *   5. once it has its reply and a "bye", prints "STATS ..." and "DONE" and exits 0.
 * Exits 1 on a request timeout, I/O error or if everything is not done within RUN_TIMEOUT_MS; 2 on usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../nats_serial.h"

#define RUN_TIMEOUT_MS 30000u
#define REQUEST_TIMEOUT_MS 5000u
#define WRITE_TIMEOUT_MS 5000u
#define BATCH_SAMPLES 60

/* Buffers for the library: rx holds one control line + one payload; a frame holds one encoded frame
 * (the gateway packs several small ops into one frame, a large op gets its own). */
static uint8_t rx_buf[2048];
static uint8_t frame_buf[2048 + 2048 / 254 + 8];
static nats_serial_sub_t subs[4];

typedef struct {
    int fd;
    int io_error;
    int got_reply; /* 1 reply, -1 timeout */
    int bye;
    const char *device;
} device_t;

static uint32_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint32_t)ts.tv_sec * 1000u + (uint32_t)(ts.tv_nsec / 1000000L));
}

static void print_hex(const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        printf("%02x", p[i]);
    }
}

/* ---- the tty ---------------------------------------------------------------------------------- */

static int open_tty(const char *path) {
    struct termios t;
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        return -1;
    }
    if (tcgetattr(fd, &t) == 0) { /* raw 8N1, like cfmakeraw() */
        t.c_iflag &= (tcflag_t) ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
        t.c_oflag &= (tcflag_t)~OPOST;
        t.c_lflag &= (tcflag_t) ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
        t.c_cflag &= (tcflag_t) ~(CSIZE | PARENB | CSTOPB);
        t.c_cflag |= CS8 | CREAD | CLOCAL;
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        cfsetispeed(&t, B115200);
        cfsetospeed(&t, B115200);
        if (tcsetattr(fd, TCSANOW, &t) != 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* The library's write callback: write everything, waiting (bounded) while the tty buffer is full. */
static void tty_write(const uint8_t *data, size_t len, void *user) {
    device_t *dev = (device_t *)user;
    uint32_t start = now_ms();
    while (len > 0 && !dev->io_error) {
        ssize_t n = write(dev->fd, data, len);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd p;
            p.fd = dev->fd;
            p.events = POLLOUT;
            p.revents = 0;
            if (now_ms() - start > WRITE_TIMEOUT_MS) {
                fprintf(stderr, "pty_device: write timed out\n");
                dev->io_error = 1;
            } else {
                (void)poll(&p, 1, 50);
            }
        } else {
            fprintf(stderr, "pty_device: write: %s\n", strerror(errno));
            dev->io_error = 1;
        }
    }
}

/* ---- callbacks (they run inside nats_serial_feed / nats_serial_tick) --------------------------- */

static void on_command(nats_serial_t *ns, const nats_serial_msg_t *msg, void *user) {
    device_t *dev = (device_t *)user;
    const char *action = strrchr(msg->subject, '.'); /* cmd.<gateway>.serial.<device>.<action> */
    uint8_t out[1024];
    size_t n = 0;
    action = action ? action + 1 : msg->subject;
    printf("CMD %s %lu\n", action, (unsigned long)msg->data_len);
    if (strcmp(action, "relay") == 0) { /* the envelope every gateway adapter answers with */
        if (strstr((const char *)msg->data, "\"on\":true") != NULL) {
            (void)nats_serial_reply_ok(ns, msg, "{\"relay\":true}");
        } else if (strstr((const char *)msg->data, "\"on\":false") != NULL) {
            (void)nats_serial_reply_ok(ns, msg, "{\"relay\":false}");
        } else {
            (void)nats_serial_reply_error(ns, msg, "bad_arguments", "'on' must be true or false");
        }
        return;
    }
    if (strcmp(action, "led") == 0 && msg->data_len <= sizeof(out) - 4) {
        memcpy(out, "led=", 4);
        memcpy(out + 4, msg->data, msg->data_len);
        n = 4 + msg->data_len;
    } else if (strcmp(action, "echo") == 0 && msg->data_len <= sizeof(out)) {
        memcpy(out, msg->data, msg->data_len);
        n = msg->data_len;
    } else if (strcmp(action, "stats") == 0) {
        const nats_serial_stats_t *st = &ns->stats;
        int len = snprintf((char *)out, sizeof(out),
                           "{\"msgs_in\":%lu,\"msgs_out\":%lu,\"pings\":%lu,\"frames_bad\":%lu,"
                           "\"lines_bad\":%lu,\"overflows\":%lu,\"errors\":%lu}",
                           (unsigned long)st->msgs_in, (unsigned long)st->msgs_out, (unsigned long)st->pings,
                           (unsigned long)st->frames_bad, (unsigned long)st->lines_bad,
                           (unsigned long)st->overflows, (unsigned long)st->errors);
        n = len > 0 ? (size_t)len : 0;
    } else if (strcmp(action, "bye") == 0) {
        memcpy(out, "bye", 3);
        n = 3;
        dev->bye = 1;
    } else {
        memcpy(out, "unknown", 7);
        n = 7;
    }
    if (msg->reply != NULL) {
        (void)nats_serial_respond(ns, msg, out, n);
    }
}

static void on_clock_reply(nats_serial_t *ns, const nats_serial_msg_t *msg, void *user) {
    device_t *dev = (device_t *)user;
    (void)ns;
    if (msg == NULL) {
        printf("TIMEOUT svc.clock\n");
        dev->got_reply = -1;
        return;
    }
    printf("REPLY ");
    print_hex(msg->data, msg->data_len);
    printf("\n");
    dev->got_reply = 1;
}

/* ---- the device's work ------------------------------------------------------------------------- */

static int publish_readings(nats_serial_t *ns, const char *gateway, const char *device, int count) {
    char subject[128], body[1024];
    int i, len, rc;
    snprintf(subject, sizeof(subject), "dev.%s.serial.%s.temperature", gateway, device);
    for (i = 0; i < count; i++) {
        int centi = 2150 + 25 * i;
        len = snprintf(body, sizeof(body), "{\"seq\":%d,\"value\":%d.%02d,\"unit\":\"C\"}", i, centi / 100,
                       centi % 100);
        rc = nats_serial_publish(ns, subject, NULL, (const uint8_t *)body, (size_t)len);
        if (rc != NATS_SERIAL_OK) {
            return rc;
        }
    }
    /* One reading longer than a COBS block (254 bytes) and the gateway's 256-byte frame size. */
    snprintf(subject, sizeof(subject), "dev.%s.serial.%s.batch", gateway, device);
    len = snprintf(body, sizeof(body), "{\"samples\":[");
    for (i = 0; i < BATCH_SAMPLES; i++) {
        len += snprintf(body + len, sizeof(body) - (size_t)len, "%s%d", i ? "," : "", 1000 + i);
    }
    len += snprintf(body + len, sizeof(body) - (size_t)len, "]}");
    return nats_serial_publish(ns, subject, NULL, (const uint8_t *)body, (size_t)len);
}

int main(int argc, char **argv) {
    static nats_serial_t ns;
    static device_t dev;
    nats_serial_config_t cfg;
    const char *gateway = argc > 4 ? argv[4] : "gw1";
    int readings = argc > 5 ? atoi(argv[5]) : 5;
    char subject[128];
    uint32_t start;
    int rc;

    if (argc < 4 || (strcmp(argv[2], "nats") != 0 && strcmp(argv[2], "frames") != 0) || readings < 0) {
        fprintf(stderr, "usage: pty_device TTY nats|frames DEVICE [GATEWAY [READINGS]]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    dev.device = argv[3];
    dev.fd = open_tty(argv[1]);
    if (dev.fd < 0) {
        fprintf(stderr, "pty_device: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }

    memset(&cfg, 0, sizeof(cfg));
    cfg.mode = strcmp(argv[2], "frames") == 0 ? NATS_SERIAL_FRAMES : NATS_SERIAL_PLAIN;
    cfg.write = tty_write;
    cfg.write_user = &dev;
    cfg.rx_buf = rx_buf;
    cfg.rx_cap = sizeof(rx_buf);
    cfg.frame_buf = frame_buf;
    cfg.frame_cap = sizeof(frame_buf);
    cfg.subs = subs;
    cfg.subs_cap = sizeof(subs) / sizeof(subs[0]);
    snprintf(subject, sizeof(subject), "_INBOX.%s", dev.device);
    cfg.inbox_prefix = subject; /* copied by init */
    if (nats_serial_init(&ns, &cfg) != NATS_SERIAL_OK || nats_serial_connect(&ns, dev.device) != NATS_SERIAL_OK) {
        fprintf(stderr, "pty_device: bad configuration or device name\n");
        return 2;
    }

    /* Subscribe before publishing: the gateway handles one connection's ops in order, so once a
     * reading arrives on the broker side the command subscription is in place. */
    snprintf(subject, sizeof(subject), "cmd.*.serial.%s.>", dev.device);
    if (nats_serial_subscribe(&ns, subject, NULL, on_command, &dev) < 0) {
        fprintf(stderr, "pty_device: subscribe failed\n");
        return 1;
    }
    rc = publish_readings(&ns, gateway, dev.device, readings);
    if (rc != NATS_SERIAL_OK) {
        fprintf(stderr, "pty_device: publish failed: %d\n", rc);
        return 1;
    }
    printf("PUBLISHED %d\n", readings + 1);
    start = now_ms();
    rc = nats_serial_request(&ns, "svc.clock", (const uint8_t *)dev.device, strlen(dev.device), REQUEST_TIMEOUT_MS,
                             start, on_clock_reply, &dev);
    if (rc != NATS_SERIAL_OK) {
        fprintf(stderr, "pty_device: request failed: %d\n", rc);
        return 1;
    }

    /* The firmware main loop: feed received bytes, tick the request timers. */
    while (!(dev.got_reply && dev.bye) && !dev.io_error && dev.got_reply >= 0) {
        uint8_t buf[256];
        struct pollfd p;
        ssize_t n;
        if (now_ms() - start > RUN_TIMEOUT_MS) {
            fprintf(stderr, "pty_device: not done after %u ms (reply=%d bye=%d)\n", RUN_TIMEOUT_MS, dev.got_reply,
                    dev.bye);
            return 1;
        }
        p.fd = dev.fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, 50) < 0 && errno != EINTR) {
            fprintf(stderr, "pty_device: poll: %s\n", strerror(errno));
            return 1;
        }
        n = read(dev.fd, buf, sizeof(buf));
        if (n > 0) {
            nats_serial_feed(&ns, buf, (size_t)n);
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            fprintf(stderr, "pty_device: read: %s\n", n == 0 ? "end of file" : strerror(errno));
            return 1;
        }
        nats_serial_tick(&ns, now_ms());
    }
    if (dev.io_error || dev.got_reply < 0) {
        return 1;
    }
    printf("STATS msgs_in=%lu msgs_out=%lu pings=%lu frames_ok=%lu frames_bad=%lu lines_bad=%lu overflows=%lu "
           "bytes_dropped=%lu errors=%lu\n",
           (unsigned long)ns.stats.msgs_in, (unsigned long)ns.stats.msgs_out, (unsigned long)ns.stats.pings,
           (unsigned long)ns.stats.frames_ok, (unsigned long)ns.stats.frames_bad, (unsigned long)ns.stats.lines_bad,
           (unsigned long)ns.stats.overflows, (unsigned long)ns.stats.bytes_dropped, (unsigned long)ns.stats.errors);
    printf("DONE\n");
    close(dev.fd);
    return 0;
}
