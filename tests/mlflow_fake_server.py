"""A small stdlib stand-in for `mlflow server` (which takes seconds to start) for the MLflow sink's outage tests:
it answers the requests the sink makes, records what arrives, and can die (its port refuses connections) and
come back on the same port."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeTrackingServer:
    """Answers health, experiment, runs and log-batch requests; ``metrics`` and ``statuses`` are what arrived,
    in order."""

    def __init__(self, failing_batches: int = 0) -> None:
        self.metrics: list[tuple[str, int, float]] = []
        self.statuses: list[tuple[str, str]] = []  # (MLflow run id, status)
        self.failing_batches = failing_batches  # log-batch requests answered 500 first
        self.runs = 0
        self.hold = threading.Event()  # cleared: log-batch requests wait for it (a slow server)
        self.hold.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if "experiments/get-by-name" in self.path:
                    return self.answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "none"})
                return self.answer(200, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.endswith("experiments/create"):
                    return self.answer(200, {"experiment_id": "1"})
                if self.path.endswith("runs/create"):
                    server.runs += 1
                    info = {"run_id": f"run{server.runs}", "run_uuid": f"run{server.runs}", "experiment_id": "1",
                            "status": "RUNNING", "lifecycle_stage": "active", "run_name": body.get("run_name", "")}
                    return self.answer(200, {"run": {"info": info, "data": {}}})
                if self.path.endswith("runs/update") and body.get("status"):
                    server.statuses.append((body.get("run_id") or body.get("run_uuid"), body["status"]))
                if self.path.endswith("runs/log-batch") and body.get("metrics"):
                    server.hold.wait(30.0)
                    if server.failing_batches > 0:
                        server.failing_batches -= 1
                        return self.answer(500, {"error_code": "INTERNAL_ERROR", "message": "busy"})
                    server.metrics += [(m["key"], int(m.get("step", 0)), m["value"]) for m in body["metrics"]]
                return self.answer(200, {})

        self._handler = Handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def die(self) -> None:
        """Stop answering: the port refuses connections from now on."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def revive(self) -> None:
        """Answer again, on the same port (a restarted server), with what it had recorded."""
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self._serve()

    def steps(self, name: str = "loss") -> list[int]:
        return [step for key, step, _ in self.metrics if key == name]
