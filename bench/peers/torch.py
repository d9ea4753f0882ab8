"""PyTorch CPU peer for the matmul bench: reads [[batch, M, N, K], ...] as JSON on stdin and
prints [{"shape": [...], "ms": median}] as JSON. Bench only; never used by tests."""
import json
import os
import sys
import time

if any(a in ("-h", "--help") for a in sys.argv[1:]):  # before the heavy imports
    print('usage: /usr/bin/python3 bench/peers/torch.py [THREADS] [RUNS] < shapes.json')
    print(__doc__)
    sys.exit(0)

# This file is named torch.py: drop its own folder from the path so `import torch` finds PyTorch.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
import torch  # noqa: E402


def main() -> None:
    shapes = json.load(sys.stdin)
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = []
    for batch, m, n, k in shapes:
        a = torch.rand(batch, m, k) if batch > 1 else torch.rand(m, k)
        b = torch.rand(batch, k, n) if batch > 1 else torch.rand(k, n)
        torch.matmul(a, b)  # warm-up
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        out.append({"shape": [batch, m, n, k], "ms": times[len(times) // 2]})
    json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": out}, sys.stdout)


if __name__ == "__main__":
    main()
