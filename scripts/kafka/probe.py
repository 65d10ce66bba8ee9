#!/usr/bin/env python3
"""Readiness probe for the test broker: a real Kafka Metadata request (API key 3, v1).

    probe.py HOST:PORT [--timeout SECONDS] [--pid PID] [--node-id N]

Connects, sends MetadataRequest v1 for no topics, and succeeds (exit 0) once the
response lists broker N (default 1) at HOST:PORT and names a controller. Retries every
200 ms until the timeout (default 60 s); exits 2 at once if --pid is given and that
process has died (the broker crashed while starting). Standard library only.
"""
import argparse
import os
import socket
import struct
import sys
import time

API_METADATA = 3
VERSION = 1
CLIENT_ID = b"slawatch-probe"


def metadata_request(correlation_id: int) -> bytes:
    # Request header v1: api_key int16, api_version int16, correlation_id int32,
    # client_id nullable string. Body v1: topics array (int32 count; 0 = no topics).
    body = struct.pack(">hhih", API_METADATA, VERSION, correlation_id, len(CLIENT_ID))
    body += CLIENT_ID + struct.pack(">i", 0)
    return struct.pack(">i", len(body)) + body


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return buf


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        vals = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return vals[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def probe_once(host: str, port: int, correlation_id: int):
    """Returns (brokers, controller_id); raises on any failure."""
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.settimeout(3)
        sock.sendall(metadata_request(correlation_id))
        size = struct.unpack(">i", recv_exact(sock, 4))[0]
        r = Reader(recv_exact(sock, size))
        if r.take(">i") != correlation_id:
            raise ValueError("correlation id mismatch")
        brokers = []
        for _ in range(r.take(">i")):
            node_id = r.take(">i")
            bhost = r.string()
            bport = r.take(">i")
            r.string()  # rack
            brokers.append((node_id, bhost, bport))
        controller_id = r.take(">i")
        return brokers, controller_id


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--node-id", type=int, default=1)
    args = ap.parse_args()
    host, _, port_s = args.bootstrap.rpartition(":")
    port = int(port_s)

    deadline = time.monotonic() + args.timeout
    last_err = "no attempt"
    attempt = 0
    while True:
        if args.pid is not None and not alive(args.pid):
            print(f"probe: broker process {args.pid} exited while starting", file=sys.stderr)
            return 2
        attempt += 1
        try:
            brokers, controller = probe_once(host, port, attempt)
            if any(b == (args.node_id, host, port) for b in brokers) and controller >= 0:
                return 0
            last_err = f"metadata not ready yet: brokers={brokers} controller={controller}"
        except (OSError, ValueError, struct.error) as e:
            last_err = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            print(f"probe: {args.bootstrap} not ready after {args.timeout:.0f} s ({last_err})",
                  file=sys.stderr)
            return 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
