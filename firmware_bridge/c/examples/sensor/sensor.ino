// nats_serial example: publish a temperature every 5 s and answer "cmd.*.serial.node7.led" requests.
// Copy nats_serial.h/.c next to this sketch. Gateway port codec: "frames" (or "nats" with PLAIN).
#include "nats_serial.h"

static uint8_t rx_buf[512];     // one control line + one payload from the gateway
static uint8_t frame_buf[600];  // one encoded frame (>= rx_buf + COBS/CRC overhead)
static nats_serial_sub_t subs[4];
static nats_serial_t ns;
static unsigned long last_ms;

static void serial_write(const uint8_t *data, size_t len, void *user) {
  (void)user;
  Serial.write(data, len);
}

static void on_led(nats_serial_t *c, const nats_serial_msg_t *msg, void *user) {
  (void)user;
  bool on = msg->data_len == 2 && msg->data[0] == 'o' && msg->data[1] == 'n';
  digitalWrite(LED_BUILTIN, on ? HIGH : LOW);
  nats_serial_respond(c, msg, (const uint8_t *)"ok", 2);
}

void setup() {
  pinMode(LED_BUILTIN, OUTPUT);
  Serial.begin(115200);
  nats_serial_config_t cfg = {};
  cfg.mode = NATS_SERIAL_FRAMES;
  cfg.write = serial_write;
  cfg.rx_buf = rx_buf;
  cfg.rx_cap = sizeof(rx_buf);
  cfg.frame_buf = frame_buf;
  cfg.frame_cap = sizeof(frame_buf);
  cfg.subs = subs;
  cfg.subs_cap = 4;
  cfg.inbox_prefix = "_INBOX.node7";
  nats_serial_init(&ns, &cfg);
  nats_serial_connect(&ns, "node7");
  nats_serial_subscribe(&ns, "cmd.*.serial.node7.led", NULL, on_led, NULL);
}

void loop() {
  uint8_t buf[64];
  size_t n = 0;
  while (Serial.available() > 0 && n < sizeof(buf)) {
    buf[n++] = (uint8_t)Serial.read();
  }
  nats_serial_feed(&ns, buf, n);  // runs callbacks, answers PING with PONG
  nats_serial_tick(&ns, millis());
  if (millis() - last_ms >= 5000) {
    last_ms = millis();
    char body[48];
    float celsius = analogRead(A0) * (500.0f / 1023.0f);  // LM35: 10 mV/°C on a 5 V ADC
    int len = snprintf(body, sizeof(body), "{\"value\":%d.%02d,\"unit\":\"C\"}", (int)celsius,
                       (int)(celsius * 100) % 100);
    nats_serial_publish(&ns, "sensors.node7.temperature", NULL, (const uint8_t *)body, (size_t)len);
  }
}
