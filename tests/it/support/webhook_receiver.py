"""A webhook receiver for tests/it/webhook.rs, independent of tenantry's code.

Usage: webhook_receiver.py PORT LOG_FILE SECRET FAIL_FIRST

Verifies each POST with Python's hmac module: X-Tenantry-Signature must be
"sha256=" + hex HMAC-SHA256(SECRET, X-Tenantry-Timestamp + "." + body).
Answers 500 to the first FAIL_FIRST correctly signed requests, 401 to a bad or
missing signature, 200 otherwise. Appends one JSON line per request to LOG_FILE:
{"status": answered, "signature_ok": bool, "body": the parsed body or null}.
Prints "listening" once it listens on 127.0.0.1:PORT.
"""

import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, LOG_FILE, SECRET, FAIL_FIRST = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])
failed = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global failed
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        timestamp = self.headers.get("X-Tenantry-Timestamp", "")
        given = self.headers.get("X-Tenantry-Signature", "")
        expected = "sha256=" + hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        ok = bool(timestamp) and hmac.compare_digest(given, expected)
        if not ok:
            status = 401
        elif failed < FAIL_FIRST:
            failed += 1
            status = 500
        else:
            status = 200
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        with open(LOG_FILE, "a") as log:
            log.write(json.dumps({"status": status, "signature_ok": ok, "body": parsed}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer.allow_reuse_address = True
server = HTTPServer(("127.0.0.1", PORT), Handler)
print("listening", flush=True)
server.serve_forever()
