"""The tiny upstream of the gateway tests: answers every request 200 with the request's
headers as a JSON object (lower-case names; a repeated header's values joined by ", ").
Listens on 127.0.0.1, port 0, and prints `listening on 127.0.0.1:PORT` once it is bound."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        seen: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            seen[name] = f"{seen[name]}, {value}" if name in seen else value
        body = json.dumps({"method": self.command, "path": self.path, "headers": seen}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
sys.stdout.close()
server.serve_forever()
