#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/: a handful of valid
(and a few invalid) inputs per target, in each target's input format (see
the doc comment at the top of fuzz_targets/<target>.rs). The seeds are
committed; run this again only when an input format changes."""

import base64
import hashlib
import hmac
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def write(target, name, data):
    path = os.path.join(HERE, "corpus", target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def frame(first, payload, masked=True):
    """A client frame on the wire."""
    n = len(payload)
    bit = 0x80 if masked else 0
    if n <= 125:
        head = bytes([first, bit | n])
    elif n <= 0xFFFF:
        head = bytes([first, bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def ws_decoder():
    # Byte 0: mode; byte 1: limit index (17: 1 MiB, 10: 125); byte 2: chunk
    # size count, then the sizes; then the body.
    big = 17
    write("ws_decoder", "text", bytes([0, big, 0]) + frame(0x81, b"hello"))
    mixed = (
        frame(0x01, "h\u00e9".encode()[:2])  # cut inside the e-acute
        + frame(0x89, b"ping")
        + frame(0x80, "h\u00e9llo".encode()[2:])
        + frame(0x82, bytes(range(200)))
        + frame(0x8A, b"")
        + frame(0x88, (1000).to_bytes(2, "big") + b"bye")
    )
    write("ws_decoder", "mixed-chunked", bytes([0, big, 3, 0, 2, 9]) + mixed)
    write("ws_decoder", "too-big", bytes([0, 10, 0]) + frame(0x82, bytes(126)))
    write("ws_decoder", "bad-utf8", bytes([0, big, 0]) + frame(0x81, b"\xc3\x28"))
    write("ws_decoder", "unmasked", bytes([0, big, 0]) + frame(0x81, b"hi", masked=False))
    write("ws_decoder", "reserved", bytes([0, big, 0]) + frame(0xC1, b"hi"))

    def record(first, form, payload):
        return bytes([first, form, len(payload)]) + MASK + payload

    frames = (
        record(0x01, 0, "fra".encode())
        + record(0x89, 0, b"")
        + record(0x00, 1, "gm\u00e9".encode())
        + record(0x80, 2, "nt".encode())
        + record(0x88, 0, (1001).to_bytes(2, "big") + b"going")
    )
    write("ws_decoder", "frames", bytes([1, big, 0]) + frames)
    write("ws_decoder", "round-trip-text", bytes([2, big, 1, 3, 0]) + MASK + "h\u00e9llo".encode())
    write("ws_decoder", "round-trip-close", bytes([2, big, 0, 4]) + MASK + (1000).to_bytes(2, "big") + b"done")
    write("ws_decoder", "round-trip-long", bytes([2, big, 0, 0x81]) + MASK + b"0123456789")


KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
(CONNECTION, UPGRADE, VERSION, WS_KEY, PROTOCOL, ORIGIN, HOST, OTHER) = (0, 2, 4, 6, 8, 10, 12, 14)


def request(method, path, headers):
    data = bytes([path << 2 | method])
    for name, value in headers:
        data += bytes([name, len(value)]) + value
    return data


def handshake():
    valid = [
        (CONNECTION, b"Upgrade"),
        (UPGRADE, b"websocket"),
        (VERSION, b"13"),
        (WS_KEY, KEY),
    ]
    write("handshake", "chat", request(0, 1, valid + [
        (PROTOCOL, b"chat, switchboard.v1"),
        (HOST, b"localhost:3000"),
        (ORIGIN, b"http://localhost:3000"),
    ]))
    write("handshake", "multi", request(0, 2, [
        (CONNECTION, b"keep-alive, Upgrade"),
        (UPGRADE, b"WebSocket"),
        (VERSION, b"13"),
        (WS_KEY, b"AQIDBAUGBwgJCgsMDQ4PEA=="),
        (PROTOCOL, b"x"),
        (PROTOCOL, b"Chat, a"),
    ]))
    write("handshake", "no-key", request(0, 0, valid[:3]))
    write("handshake", "version-8", request(0, 0, valid[:2] + [(VERSION, b"8"), (WS_KEY, KEY)]))
    write("handshake", "cross-origin", request(0, 0, valid + [
        (HOST, b"localhost:3000"),
        (ORIGIN, b"https://evil.example"),
    ]))
    write("handshake", "head", request(2, 0, valid))
    write("handshake", "plain-get", request(0, 1, [(HOST, b"localhost")]))


def protocol():
    frames = {
        "join": {"type": "join", "room": "lobby", "id": 1, "since": {"offset": 4, "epoch": "fa8fdc85d5d3a80c"}, "presence": True},
        "publish": {"type": "publish", "room": "team:42", "data": {"text": "hi", "n": [1, 2.5, None]}, "id": 2, "idempotency_key": "k-1"},
        "leave": {"type": "leave", "room": "lobby", "id": 3},
        "presence": {"type": "presence", "room": "lobby"},
        "refresh": {"type": "refresh", "token": "eyJhbGciOiJIUzI1NiJ9.e30.x", "id": 9007199254740991},
        "rpc": {"type": "rpc", "method": "orders/get", "data": {"id": 7}, "id": 5},
    }
    for name, value in frames.items():
        write("protocol", name, json.dumps(value).encode())
    write("protocol", "escapes", '{"type":"join","room":"lo\\u0062by","unknown":[{}]}'.encode())
    write("protocol", "not-an-object", b'["join"]')
    write("protocol", "duplicate", b'{"type":"join","room":"a","room":"b"}')


SECRET = b"fuzzing secret, 32 bytes or more"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token(header, claims):
    head = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
    sig = hmac.new(SECRET, head, hashlib.sha256).digest()
    return head + b"." + b64(sig)


def jwt():
    claims = {"sub": "user-1", "exp": 4102444800, "rooms": ["lobby", "team:*"], "read_rooms": ["news"]}
    header = {"alg": "HS256", "typ": "JWT"}
    write("jwt", "raw-valid", bytes([0]) + token(header, claims))
    write("jwt", "raw-none", bytes([0]) + b64(b'{"alg":"none"}') + b"." + b64(json.dumps(claims).encode()) + b".")
    h = json.dumps(header).encode()
    c = json.dumps(claims).encode()
    write("jwt", "signed", bytes([1, len(h)]) + h + c)
    strict = dict(claims, iss="https://issuer.example", aud="switchboard", nbf=1)
    write("jwt", "signed-strict", bytes([5, len(h)]) + h + json.dumps(strict).encode())
    # alg, exp, nbf, iss, aud, rooms, read_rooms, sub; then names.
    write("jwt", "menu", bytes([0, 7, 1, 1, 1, 3, 2, 2]) + b"lobby\nteam:*\nnews\nuser-1")
    write("jwt", "menu-strict", bytes([4, 2, 2, 1, 3, 0, 0, 3]) + b"alice")
    write("jwt", "placement-bearer", bytes([3]) + b"Bearer $T\n\n")
    write("jwt", "placement-query", bytes([3]) + b"Basic abc\nx=1&token=$T\nswitchboard_token=$J")
    write("jwt", "placement-cookie", bytes([7]) + b"\n\na=b; sb=$T")


def origin():
    write("origin", "same-origin", b"\x00http://localhost:3000\nlocalhost:3000")
    write("origin", "default-port", b"\x00https://Chat.Example.com:443\nchat.example.com")
    write("origin", "allow-list", b"\x00https://a.b.example.com\n\nhttps://*.example.com\nhttp://localhost:5173")
    write("origin", "ipv6", b"\x00http://[::1]:8080\n[::1]:8080")
    write("origin", "missing", b"\x03\nlocalhost")
    write("origin", "userinfo", b"\x00https://app.example.com@evil.com\n\nhttps://*.example.com")


if __name__ == "__main__":
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    ws_decoder()
    handshake()
    protocol()
    jwt()
    origin()
