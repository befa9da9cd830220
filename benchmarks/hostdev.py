"""Host<->device bandwidth with pinned host memory (the physical floor for moving adapter + optimizer state).

Prints one JSON line: {"h2d_bytes_per_s", "d2h_bytes_per_s", "bytes", "repeats"} (medians of timed copies).
"""
from __future__ import annotations

import json
import statistics
import sys


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print(json.dumps(None))
        return 1
    nbytes = 256 * 2**20
    host = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
    host.random_(0, 255)
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    result = {"bytes": nbytes, "repeats": 10}
    for name, dst, src in (("h2d", dev, host), ("d2h", host, dev)):
        for _ in range(3):
            dst.copy_(src, non_blocking=True)
        torch.cuda.synchronize()
        times = []
        for _ in range(result["repeats"]):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src, non_blocking=True)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        result[f"{name}_bytes_per_s"] = nbytes / statistics.median(times)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
