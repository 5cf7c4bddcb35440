"""The status page in a real headless Chromium, against real brokers (tests/support/browser.py).

The main rig: a nats-edge gateway with a serial device on a pty (fed by firmware_bridge's simulator),
a leaf link through a cuttable proxy to a real nats-server hub and a store-and-forward outbox. The
page is opened once and must follow, without a reload: the device coming online with its reading's
value and unit, the uplink going down when the link is cut, the outbox depth rising. Also: a broker
without adapters, 500 devices (render time and RSS measured), and basic auth + TLS.

Set ``NATS_EDGE_SCREENSHOTS=<dir>`` to keep the screenshots the tests take.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from firmware_bridge.simulator import Simulator
from tests.support.browser import Chromium, Page, chromium_binary, png_info
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, free_port, start_nats_edge, start_nats_server
from tests.support.proxy import Proxy
from tests.support.ptys import PtyDevice
from tests.support.waiting import async_wait_for

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed (.ci/run installs it)"),
]

GW = "gw1"
JSONL_UNITS = '{ device_field = "id", ts_field = "ts", units = { temperature = "°C", humidity = "%", ' \
              'pressure = "hPa", battery = "%" } }'


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    browser = Chromium(tmp_path_factory.mktemp("chromium"))
    try:
        browser.wait_ready()
        yield browser
    finally:
        browser.stop()


@pytest.fixture
async def page(chromium: Chromium) -> AsyncIterator[Page]:
    p = await chromium.new_page(1280, 900)
    try:
        yield p
    finally:
        await chromium.close_pages()


def keep_screenshot(path: Path) -> None:
    target = os.environ.get("NATS_EDGE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


async def screenshot(page: Page, path: Path, width: int, height: int, mobile: bool) -> tuple[int, int, int]:
    await page.viewport(width, height, mobile)
    await page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    data = await page.screenshot(path)
    keep_screenshot(path)
    return await asyncio.to_thread(png_info, data)


def js_number(v: float) -> str:
    """What the page prints for a reading value (app.js value(): 5 significant digits, no trailing .0)."""
    text = repr(float(f"{v:.5g}"))
    return text.removesuffix(".0")


def text_of(selector: str) -> str:
    return f"((document.querySelector({json.dumps(selector)}) || {{}}).textContent || '')"


def get_json(url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> Any:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10, context=context) as r:
        return json.loads(r.read())


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET, errors included (call it with asyncio.to_thread from a test)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# -- the gateway with a device, an uplink and an outbox ----------------------------------------------


def gateway_conf(pty_link: Path, proxy_port: int, outbox: Path) -> str:
    return f"""server_name = "{GW}"
[monitoring]
history_step = "1s"
[adapters]
restart_backoff_min = "0.1s"
[[adapters.serial]]
name = "bench1"
port = "{pty_link}"
device = "bench1"
codec = "jsonl"
codec_options = {JSONL_UNITS}
reopen_min = "0.05s"
reopen_max = "0.3s"
[leafnodes]
reconnect = "100ms"
reconnect_jitter = "50ms"
error_delay = "300ms"
first_info_timeout = "1s"
[store_forward]
subjects = ["telemetry.>"]
dir = "{outbox}"
fsync_interval = "10ms"
replay_rate = 0
[[leafnodes.remotes]]
url = "nats-leaf://127.0.0.1:{proxy_port}"
ignore_discovered_servers = true
"""


async def test_page_follows_device_uplink_and_outbox_live(page: Page, tmp_path: Path) -> None:
    leaf_port = free_port()
    (tmp_path / "hub").mkdir()
    hub_conf = f'server_name: hub1\nleafnodes {{\n  listen: "127.0.0.1:{leaf_port}"\n}}\n'
    hub = start_nats_server(tmp_path / "hub", config=hub_conf)
    proxy = await Proxy("127.0.0.1", leaf_port).start()
    dev = PtyDevice(tmp_path / "serial-bench1")
    (tmp_path / "edge").mkdir()
    conf = tmp_path / "edge" / "edge.toml"
    conf.write_text(gateway_conf(tmp_path / "serial-bench1", proxy.port, tmp_path / "outbox"))
    edge: ServerProcess | None = None
    nc: Any = None
    try:
        edge = start_nats_edge(tmp_path / "edge", "-c", str(conf), "-m", "-1")
        await page.navigate(edge.url_of("monitoring") + "/")
        await page.wait(f"{text_of('#gw-name')} === {json.dumps(GW)}", 15, "the gateway's name")
        up = await page.wait(
            "(l => l && l.dataset.state === 'up' && l.textContent)(document.querySelector('#uplinks .link'))",
            15, "the uplink to show UP")
        assert "▲ UP" in up and f"127.0.0.1:{proxy.port}" in up and "hub1" in up

        # The device: feed the simulator until the page shows it online, then one known reading.
        sim = Simulator("jsonl", device="bench1", seed=7)
        card = "document.querySelector('[data-device=\"bench1/bench1\"]')"
        deadline = time.monotonic() + 20
        while not await page.evaluate(f"({card} || {{dataset: {{}}}}).dataset.online === 'true'"):
            assert time.monotonic() < deadline, "the device never showed online"
            dev.write(sim.next_chunk(time.time()))
            await asyncio.sleep(0.2)
        nc = await nats.connect(edge.url, allow_reconnect=False)
        got: asyncio.Queue[Any] = asyncio.Queue()
        await nc.subscribe(f"dev.{GW}.serial.bench1.temperature", cb=got.put)
        await flush(nc)
        dev.write(sim.next_chunk(time.time()))
        async with asyncio.timeout(10):
            reading = json.loads((await got.get()).data)
        want = f"{js_number(reading['value'])} °C"
        shown = await page.wait(
            f"(r => r && r.querySelector('.v').textContent === {json.dumps(want)} && r.textContent)"
            f"({card}.querySelector('[data-channel=temperature]'))", 10, f"the reading {want}")
        assert shown.startswith("temperature")
        title = await page.evaluate(f"{card}.querySelector('h3').textContent")
        assert title == "▲ ONLINE bench1"

        # Cut the link: the uplink goes DOWN, what is published for the hub piles up in the outbox.
        proxy.cut()
        down = await page.wait(
            "(l => l && l.dataset.state === 'down' && l.textContent)(document.querySelector('#uplinks .link'))",
            15, "the uplink to show DOWN")
        assert "▼ DOWN" in down and "Down for" in down
        for i in range(40):
            await nc.publish("telemetry.bench1", f'{{"n":{i}}}'.encode())
        await flush(nc)
        await page.wait(f"{text_of('[data-key=depth]')}.startsWith('40 records')", 15, "outbox depth 40")
        for i in range(40, 100):
            await nc.publish("telemetry.bench1", f'{{"n":{i}}}'.encode())
        await flush(nc)
        await page.wait(f"{text_of('[data-key=depth]')}.startsWith('100 records')", 15, "outbox depth 100")
        assert (await page.evaluate(text_of("[data-key=forwarding]"))).startswith("no (link down)")
        plot = await page.evaluate("document.querySelector('#ob svg.plot path').getAttribute('d')")
        assert plot.startswith("M"), plot  # the depth plot has points
        assert "max 100" in await page.evaluate(text_of("#ob .axis"))
        log_text = await page.wait(
            "[...document.querySelectorAll('#log-lines li[data-level=WARNING]')].map(li => li.textContent)"
            ".find(t => t.includes('Leafnode')) || ''", 15, "the uplink warning in the log")
        assert "edge.leaf" in log_text
        # Live means without a reload: the page was loaded once and has polled since.
        assert int(await page.evaluate("document.body.dataset.polls")) >= 3
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1

        phone = await screenshot(page, tmp_path / "statuspage-phone.png", 390, 844, True)
        desktop = await screenshot(page, tmp_path / "statuspage-desktop.png", 1280, 900, False)
        assert phone[:2] == (390, 844) and desktop[:2] == (1280, 900)
        assert phone[2] > 20 and desktop[2] > 20, (phone, desktop)  # text, states, plots: not a blank page
        # Nothing is cut off sideways on a phone.
        await page.viewport(390, 844, True)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390

        proxy.restore()
        await page.wait(
            "(l => l && l.dataset.state === 'up')(document.querySelector('#uplinks .link'))", 15, "UP again")
        await page.wait(f"{text_of('[data-key=depth]')}.startsWith('0 records')", 20, "the outbox drained")
    finally:
        if nc is not None:
            await nc.close()
        if edge is not None:
            assert edge.stop() == 0, edge.log()
        await proxy.stop()
        hub.stop()
        dev.close()


async def test_page_without_adapters_uplink_or_outbox(page: Page, tmp_path: Path) -> None:
    edge = start_nats_edge(tmp_path, "-m", "-1", "-n", "plain")
    try:
        total = 0
        for asset, kind in (("", "text/html"), ("app.js", "text/javascript"), ("style.css", "text/css")):
            status, headers, body = await asyncio.to_thread(fetch, edge.url_of("monitoring") + "/" + asset)
            assert status == 200 and headers["Content-Type"] == kind + "; charset=utf-8"
            total += len(body)
        assert total < 40_000, total  # the whole page, no CDN, no framework
        await page.navigate(edge.url_of("monitoring") + "/")
        await page.wait(f"{text_of('#gw-name')} === 'plain'", 15, "the gateway's name")
        assert await page.evaluate(text_of("#uplinks")) == "No leaf remotes configured."
        assert await page.evaluate(text_of("#ob")) == "Store-and-forward is off."
        assert (await page.evaluate(text_of("#devs"))).startswith("No devices")
        assert await page.evaluate(text_of("[data-key=disk]")) == "— (no outbox)"
        assert await page.evaluate(text_of("#dev-count")) == ""
        assert (await page.evaluate(text_of("#live"))).startswith("Live")
        width, height, colours = await screenshot(page, tmp_path / "statuspage-empty.png", 390, 844, True)
        assert (width, height) == (390, 844) and colours > 10
    finally:
        assert edge.stop() == 0, edge.log()


def demo_conf(n_instances: int, per_instance: int, monitoring: bool) -> str:
    parts = ['server_name = "big"\n']
    if monitoring:
        parts.append('[monitoring]\nhistory_step = "0.5s"\n')
    for i in range(n_instances):
        names = ", ".join(f'"d{i}x{j:02d}"' for j in range(per_instance))
        parts.append(f'[[adapters.demo]]\nname = "demo{i}"\ndevices = [{names}]\ninterval = "2s"\nseed = {i}\n')
    return "".join(parts)


async def test_500_devices_render_and_memory(page: Page, tmp_path: Path) -> None:
    n_instances, per = 8, 63  # 504 devices, 2016 channels
    total = n_instances * per
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    (tmp_path / "on" / "edge.toml").write_text(demo_conf(n_instances, per, True))
    (tmp_path / "off" / "edge.toml").write_text(demo_conf(n_instances, per, False))
    edge = start_nats_edge(tmp_path / "on", "-c", str(tmp_path / "on" / "edge.toml"), "-m", "-1",
                           "-l", str(tmp_path / "on" / "edge.log"))
    plain: ServerProcess | None = None
    try:
        url = edge.url_of("monitoring")
        t0 = time.monotonic()
        await page.navigate(url + "/")
        await page.wait(f"document.querySelectorAll('#devs .card[data-online=true]').length === {total}", 30,
                        f"{total} devices online on the page")
        shown = time.monotonic() - t0
        assert await page.evaluate(text_of("#dev-count")) == f"({total} of {total} online)"
        meta = await page.evaluate(text_of("[data-device='demo3/d3x07'] .meta"))
        assert meta.startswith("demo · demo3 · seen ") and meta.endswith(" · accepts read, ping"), meta
        sparks = await page.evaluate("[...document.querySelectorAll('#devs svg.spark path')]"
                                     ".filter(p => p.getAttribute('d')).length")
        assert sparks == total * 4
        # Poll-to-render times of the following polls (fetch + JSON + DOM update of 504 cards).
        polls = int(await page.evaluate("document.body.dataset.polls"))
        await page.wait(f"Number(document.body.dataset.polls) >= {polls + 2}", 20, "two more polls")
        render_ms = float(await page.evaluate("document.body.dataset.renderMs"))  # DOM update of 504 cards
        fetch_ms = float(await page.evaluate("document.body.dataset.fetchMs"))  # request, JSON build, parse
        # The filter narrows 504 cards to one, on the phone too.
        await page.evaluate("document.getElementById('filter').value = 'd3x07';"
                            "document.getElementById('filter').dispatchEvent(new Event('input'))")
        await page.wait("document.querySelectorAll('#devs .card:not([hidden])').length === 1", 10, "filtered")
        await screenshot(page, tmp_path / "statuspage-500-phone.png", 390, 844, True)

        _, _, body = await asyncio.to_thread(fetch, url + "/statusz")
        full, full_size = json.loads(body), len(body)
        status, headers, poll_gz = await asyncio.to_thread(
            fetch, f"{url}/statusz?since={full['bucket']}&log={full['log_seq']}", {"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        poll_size = len(gzip.decompress(poll_gz))
        # RSS: once every channel has a ring the history does not grow; compare with monitoring off.
        rss_1 = rss_of(edge.proc.pid)
        await page.wait(f"Number(document.body.dataset.polls) >= {polls + 6}", 30, "four more polls")
        rss_2 = rss_of(edge.proc.pid)
        await page.close()
        plain = start_nats_edge(tmp_path / "off", "-c", str(tmp_path / "off" / "edge.toml"),
                                "-l", str(tmp_path / "off" / "edge.log"))
        nc = await nats.connect(plain.url)
        try:
            seen: set[str] = set()

            async def count(msg: Any) -> None:
                seen.add(msg.subject)

            await nc.subscribe("dev.big.demo.>", cb=count)
            await async_wait_for(lambda: len(seen) >= total * 4, 60, "every channel of the plain broker")
        finally:
            await nc.close()
        rss_off = rss_of(plain.proc.pid)
        print(f"\n500 devices: shown in {shown:.2f}s, poll fetch {fetch_ms:.0f} ms + render {render_ms:.0f} ms, "
              f"statusz {full_size / 1e3:.0f} KB full / {poll_size / 1e3:.0f} KB per poll "
              f"({len(poll_gz) / 1e3:.0f} KB gzipped); RSS with page "
              f"{rss_1 / 1e6:.1f} -> {rss_2 / 1e6:.1f} MB, without monitoring {rss_off / 1e6:.1f} MB")
        assert shown < 20 and render_ms < 1000, (shown, render_ms)
        assert poll_size < full_size and len(poll_gz) < 60_000, (poll_size, full_size, len(poll_gz))
        assert rss_2 - rss_1 < 3_000_000, (rss_1, rss_2)  # flat once every channel has its ring
        assert rss_1 - rss_off < 12_000_000, (rss_1, rss_off)  # history + HTTP + page, for 2016 channels
    finally:
        assert edge.stop() == 0, edge.log()
        if plain is not None:
            assert plain.stop() == 0, plain.log()


# -- auth and TLS -----------------------------------------------------------------------------------


def auth_conf(tls: str = "") -> str:
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    return f"""server_name = "secured"
http = "127.0.0.1:{free_port()}"
[authorization]
users = [{{ user = "op", password = "{hashed}" }}, {{ user = "plain", password = "pw" }}]
[monitoring]
auth = true
{tls}"""


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_basic_auth_over_the_broker_users(page: Page, tmp_path: Path) -> None:
    (tmp_path / "edge.toml").write_text(auth_conf())
    edge = start_nats_edge(tmp_path, "-c", str(tmp_path / "edge.toml"))
    try:
        url = edge.url_of("monitoring")
        for path in ("/", "/statusz", "/varz", "/metrics", "/nope"):
            status, headers, body = await asyncio.to_thread(fetch, url + path)
            assert (status, json.loads(body)) == (401, {"error": "authentication required"})
            assert headers["WWW-Authenticate"] == 'Basic realm="nats-edge", charset="UTF-8"'
        for wrong in (basic("op", "nope"), basic("who", "s3cret"), {"Authorization": "Bearer x"}):
            assert (await asyncio.to_thread(fetch, url + "/varz", wrong))[0] == 401
        status, _, body = await asyncio.to_thread(fetch, url + "/varz", basic("op", "s3cret"))  # bcrypt
        assert status == 200 and json.loads(body)["server_name"] == "secured"
        status, _, body = await asyncio.to_thread(fetch, url + "/statusz", basic("plain", "pw"))  # plain password
        assert status == 200 and json.loads(body)["gateway"]["name"] == "secured"

        # The browser without credentials gets the 401 (a desktop browser would now ask for them).
        await page.call("Network.enable")
        await page.navigate(url + "/")

        def answered_401() -> bool:
            return any(e["method"] == "Network.responseReceived" and e["params"]["response"]["url"] == url + "/"
                       and e["params"]["response"]["status"] == 401 for e in page.events)

        await async_wait_for(answered_401, 10, "the browser's request to be answered 401")
        assert await page.evaluate(text_of("#gw-name")) == ""  # no page was shown
        await page.navigate(url + "/", headers=basic("op", "s3cret"))
        await page.wait(f"{text_of('#gw-name')} === 'secured'", 15, "the page with credentials")
        assert "authentication error" in edge.log()  # failures are logged (and counted for the backoff)
    finally:
        assert edge.stop() == 0, edge.log()


def test_tls_with_the_broker_certificate_and_lan_bind_rules(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server-key.pem"))
    tls = f'tls = true\n[tls]\ncert_file = "{tmp_path / "server.pem"}"\nkey_file = "{tmp_path / "server-key.pem"}"\n'
    conf = auth_conf(tls).replace('http = "127.0.0.1:', 'http = "0.0.0.0:')  # on the LAN: allowed with auth
    (tmp_path / "edge.toml").write_text(conf)
    edge = start_nats_edge(tmp_path, "-c", str(tmp_path / "edge.toml"))
    try:
        port = edge.url_of("monitoring").rsplit(":", 1)[1]
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        assert get_json(f"https://127.0.0.1:{port}/varz", basic("op", "s3cret"), ctx)["server_name"] == "secured"
        with pytest.raises(urllib.error.HTTPError) as err:
            get_json(f"https://127.0.0.1:{port}/statusz", None, ctx)
        assert err.value.code == 401
    finally:
        assert edge.stop() == 0, edge.log()

    # A LAN bind without auth: one config error naming the file and the key, exit code 1, no traceback.
    bad = tmp_path / "lan.toml"
    bad.write_text(f'http = "0.0.0.0:{free_port()}"\n')
    (tmp_path / "lan").mkdir()
    sp = None
    with pytest.raises(AssertionError) as err:
        sp = start_nats_edge(tmp_path / "lan", "-c", str(bad))
    if sp is not None:
        sp.stop()
    log = (tmp_path / "lan" / "nats-edge.log").read_text()
    assert f"{bad}: http_host: the monitoring port is bound to '0.0.0.0'" in log, log
    assert "Traceback" not in log
