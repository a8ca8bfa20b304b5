#!/usr/bin/env python3
"""A stand-in application for benchmarks: answers every GET with the given
HTML file after `--think-ms` of "computing", over HTTP/1.1 keep-alive.

    scripts/slow-app.py --port 9000 --think-ms 200 --html host/demo/site/index.html
"""
import argparse
import http.server
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--think-ms", type=float, default=200)
ap.add_argument("--html", required=True)
args = ap.parse_args()
body = open(args.html, "rb").read()


class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(args.think_ms / 1000)
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", args.port), App).serve_forever()
