"""Sans-IO parts of the leaf uplink: interest ref-counting, hub interest routing, backoff, config, creds."""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path

import nkeys
import pytest

from edge.config.leafnodes import LeafURL, parse_leaf_url, parse_leafnodes
from edge.config.sections import KeyReporter
from edge.core.sublist import QueueGroup
from edge.errors import ConfigError
from edge.leaf.backoff import Reconnect, delay_for_error
from edge.leaf.credentials import CredentialsError, connect_credentials, read_creds, sign_nonce
from edge.leaf.interest import HubInterest, LocalInterest, subject_filter


def test_local_interest_lines_match_the_capture() -> None:
    # docs 3.4 CAP: SUB foo.bar; SUB foo.* twice; 2 queue subs work.> workers; then unsubscribe step by step.
    li = LocalInterest()
    out = [li.add(b"foo.bar", None), li.add(b"foo.*", None), li.add(b"foo.*", None),
           li.add(b"work.>", b"workers"), li.add(b"work.>", b"workers")]
    assert out == [b"LS+ foo.bar\r\n", b"LS+ foo.*\r\n", None, b"LS+ work.> workers 1\r\n", b"LS+ work.> workers 2\r\n"]
    assert sorted(li.snapshot()) == [b"LS+ foo.*\r\n", b"LS+ foo.bar\r\n", b"LS+ work.> workers 2\r\n"]
    out = [li.remove(b"foo.bar", None), li.remove(b"foo.*", None), li.remove(b"foo.*", None),
           li.remove(b"work.>", b"workers"), li.remove(b"work.>", b"workers"), li.remove(b"nope", None)]
    assert out == [b"LS- foo.bar\r\n", None, b"LS- foo.*\r\n", b"LS+ work.> workers 1\r\n", b"LS- work.> workers\r\n",
                   None]
    assert len(li) == 0


def test_local_interest_filter_keeps_counts() -> None:
    li = LocalInterest(subject_filter(None, [b"secret.>"]))
    assert li.add(b"secret.a", None) is None
    assert li.add(b"open.a", None) == b"LS+ open.a\r\n"
    assert list(li.snapshot()) == [b"LS+ open.a\r\n"]
    assert li.remove(b"secret.a", None) is None


def test_subject_filter_allow_covers_wildcards() -> None:
    f = subject_filter([b"down.>"], [b"down.no"])
    assert f(b"down.x") and f(b"down.*") and f(b"down.a.>")
    assert not f(b"up.x") and not f(b"down.no") and not f(b">")


def test_hub_interest_route_rules() -> None:
    hub = HubInterest()
    assert hub.route(b"a.b", []) is None
    hub.add(b"a.*", None, 1)
    assert hub.route(b"a.b", []) == []
    hub.add(b"q.>", b"workers", 2)
    assert hub.route(b"q.x", []) == [b"workers"]
    # a local member of the same group takes it: not named, and without plain interest not sent at all
    assert hub.route(b"q.x", [QueueGroup(b"workers", [object()])]) is None
    hub.add(b"q.>", b"workers", 0)  # weight update to 0
    assert hub.route(b"q.x", []) is None
    hub.remove(b"q.>", b"workers")
    hub.remove(b"unknown", None)  # ignored
    hub.remove(b"a.*", None)
    assert hub.route(b"a.b", []) is None and len(hub) == 0


def test_reconnect_rotation_discovery_and_delays() -> None:
    urls = [parse_leaf_url("nats-leaf://u:p@h1:1"), parse_leaf_url("h2:2")]
    rc = Reconnect(urls, reconnect=1.0, jitter=1.0, no_randomize=True, rng=random.Random(1))
    assert [rc.next_url().host for _ in range(3)] == ["h1", "h2", "h1"]
    rc.discovered(["10.0.0.3:7422", "h1:1", "bad", "[::1]:9"])
    assert [(u.host, u.port, u.user) for u in rc.urls[2:]] == [("10.0.0.3", 7422, "u"), ("::1", 9, "u")]
    assert rc.wait_after_disconnect() == 1.0
    for _ in range(50):
        assert 1.0 <= rc.wait_after_failure() < 2.0
    rc.special(30.0)
    assert rc.wait_after_failure() == 30.0 and rc.wait_after_failure() < 2.0
    assert delay_for_error('Loop detected for leafnode account="$G". Delaying attempt to reconnect for 30s', 30) == 30
    assert delay_for_error('Permissions Violation for Subscription to "up.x"', 30) == 30
    assert delay_for_error("remote leafnode has same cluster name", 30) == 30
    assert delay_for_error('connection rejected since minimum version required is "2.99.0"', 30) == 5
    assert delay_for_error("Authorization Violation", 30) is None


def _parse(table: dict) -> object:  # type: ignore[type-arg]
    return parse_leafnodes(table, KeyReporter("edge.toml", "leafnodes."))


def test_config_parses_remotes() -> None:
    s = _parse({"reconnect": "2s", "remotes": [
        {"urls": ["nats-leaf://a:b@hub:7422", "tls://hub2"], "deny_exports": ["local.>"]},
        {"url": "hub3:7000", "token": "t", "reconnect": "5s", "tls": {"ca_file": "ca.pem", "insecure": True}},
    ]})
    r0, r1 = s.remotes  # type: ignore[attr-defined]
    assert r0.urls[0] == LeafURL("nats-leaf", "hub", 7422, "a", "b") and str(r0.urls[0]) == "nats-leaf://hub:7422"
    assert r0.urls[1].tls and r0.urls[1].port == 7422 and r0.reconnect == 2.0 and r0.deny_exports == ("local.>",)
    assert r1.reconnect == 5.0 and r1.token == "t" and r1.tls.verify is False


@pytest.mark.parametrize(("table", "key"), [
    ({"remotes": [{}]}, "leafnodes.remotes[0].urls"),
    ({"remotes": [{"urls": ["http://x:1"]}]}, "leafnodes.remotes[0].urls"),
    ({"remotes": [{"urls": ["h:1"], "user": "u", "token": "t"}]}, "leafnodes.remotes[0].token"),
    ({"remotes": [{"urls": ["h:1"], "colour": 1}]}, "leafnodes.remotes[0].colour"),
    ({"remotes": [{"urls": ["h:1"], "deny_imports": ["a..b"]}]}, "leafnodes.remotes[0].deny_imports"),
    ({"remotes": [{"urls": ["h:1"], "reconnect": "soon"}]}, "leafnodes.remotes[0].reconnect"),
    ({"remotes": "h:1"}, "leafnodes.remotes"),
    ({"remotes": [{"urls": ["h:99999"]}]}, "leafnodes.remotes[0].urls"),
])
def test_config_errors_name_the_key(table: dict, key: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as info:
        _parse(table)
    assert key in str(info.value) and "edge.toml" in str(info.value)


async def test_credentials_fields(tmp_path: Path) -> None:
    url = parse_leaf_url("nats-leaf://tok@h:1")
    from edge.config.leafnodes import LeafRemote

    assert await connect_credentials(LeafRemote(urls=(url,)), url, "n") == {"user": "tok", "auth_token": "tok"}
    url2 = parse_leaf_url("nats-leaf://u:p%40ss@h:1")
    assert await connect_credentials(LeafRemote(urls=(url2,)), url2, "n") == {"user": "u", "pass": "p@ss"}
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public, sig = sign_nonce(seed, "abcdefghijklmno")
    kp = nkeys.from_seed(seed)
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    assert kp.verify(b"abcdefghijklmno", raw) and public == kp.public_key.decode()
    creds = tmp_path / "u.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\neyJhbGc.payload.sig\n------END NATS USER JWT------\n\n"
                     "************************* IMPORTANT *************************\n\n"
                     f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n")
    jwt, s = await read_creds(str(creds))
    assert jwt == "eyJhbGc.payload.sig" and s == seed
    r = LeafRemote(urls=(url,), credentials=str(creds))
    fields = await connect_credentials(r, url, "nonce")
    assert fields["jwt"] == jwt and set(fields) == {"jwt", "sig"}
    with pytest.raises(CredentialsError):
        await read_creds(str(tmp_path / "missing.creds"))
    with pytest.raises(CredentialsError):
        sign_nonce(b"SUNOTASEED", "n")
