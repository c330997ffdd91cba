#!/usr/bin/env python3
"""A tiny HTTP server for salvage.http tests (standard library only).

  echo.py --ready-file F [--lifetime S] [--tls-cert C --tls-key K]

  ANY /echo        -> JSON {method, path, query, headers, length, sha256, chunked, conn, nth}
                      (conn = id of the TCP connection, nth = request number on it)
  GET /bytes/N     -> N bytes (pattern), with Content-Length
  GET /slow/S      -> answers after S seconds
  GET /status/N    -> empty answer with status N
  POST /shutdown   -> exits
"""
import argparse
import hashlib
import itertools
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONN_IDS = itertools.count(1)


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: an answer written as headers then body must not wait 40 ms for a delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        self.conn_id = next(CONN_IDS)
        self.nth = 0

    def reply(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        h = hashlib.sha256()
        n = 0
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if chunked:
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data = self.rfile.read(size)
                h.update(data)
                n += len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                h.update(data)
                n += len(data)
                left -= len(data)
        return n, h.hexdigest(), chunked

    def handle_any(self):
        self.nth += 1
        u = urllib.parse.urlsplit(self.path)
        parts = u.path.strip("/").split("/")
        n, sha, chunked = self.read_body()
        if parts[0] == "echo":
            body = json.dumps({"method": self.command, "path": u.path, "query": u.query,
                               "headers": {k.lower(): v for k, v in self.headers.items()},
                               "length": n, "sha256": sha, "chunked": chunked,
                               "conn": self.conn_id, "nth": self.nth}).encode()
            self.reply(200, body)
        elif parts[0] == "bytes":
            size = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = bytes(range(256)) * 4096
            while size > 0:
                k = min(size, len(block))
                self.wfile.write(block[:k])
                size -= k
        elif parts[0] == "slow":
            time.sleep(float(parts[1]))
            self.reply(200, b"late")
        elif parts[0] == "status":
            self.reply(int(parts[1]), b"")
        elif parts[0] == "shutdown":
            self.reply(200, b"bye")
            threading.Thread(target=self.server.shutdown, daemon=True).start()
        else:
            self.reply(404, b"not found")

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--lifetime", type=float, default=60)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    scheme = "http"
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        scheme = "https"
    t = threading.Timer(a.lifetime, srv.shutdown)
    t.daemon = True
    t.start()
    with open(a.ready_file + ".tmp", "w") as f:
        f.write("%s://127.0.0.1:%d\n" % (scheme, srv.server_address[1]))
    os.rename(a.ready_file + ".tmp", a.ready_file)
    srv.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
