"""OpenSlide peer for bench/wsi.ts: times read_region of the given level-0 regions.

Reads one JSON object on stdin:
  {"path": str, "size": 512, "regions": [[x, y], ...], "warm": [[x, y], ...], "passes": 5}
and prints one JSON object:
  {"cold_ms": mean ms per region, each read on a freshly opened OpenSlide (nothing cached;
               only read_region is timed, not the open),
   "warm_ms": mean ms per region over `passes` passes of `warm` after one untimed pass
              (all tiles in OpenSlide's per-handle tile cache),
   "openslide": library version, "python_openslide": binding version}

Run with Debian's /usr/bin/python3 (python3-openslide); benchmark only, never used by the product.
"""
import json
import sys
import time

if any(a in ("-h", "--help") for a in sys.argv[1:]):  # before the heavy imports
    print('usage: /usr/bin/python3 bench/peers/openslide_read.py < request.json')
    print(__doc__)
    sys.exit(0)

import openslide


def main() -> None:
    req = json.load(sys.stdin)
    path, size = req["path"], int(req.get("size", 512))
    regions = [tuple(r) for r in req["regions"]]
    warm = [tuple(r) for r in req.get("warm", regions[:8])]
    passes = int(req.get("passes", 5))
    # Cold: a new handle per region, so its tile cache is empty; the open is not timed.
    total = 0.0
    for x, y in regions:
        s = openslide.OpenSlide(path)
        t = time.perf_counter()
        s.read_region((x, y), 0, (size, size))
        total += time.perf_counter() - t
        s.close()
    cold = total * 1000 / len(regions)
    # Warm: one handle, one untimed pass to fill the cache, then timed passes.
    s = openslide.OpenSlide(path)
    for x, y in warm:
        s.read_region((x, y), 0, (size, size))
    t = time.perf_counter()
    for _ in range(passes):
        for x, y in warm:
            s.read_region((x, y), 0, (size, size))
    warm_ms = (time.perf_counter() - t) * 1000 / (passes * len(warm))
    s.close()
    print(json.dumps({
        "cold_ms": cold,
        "warm_ms": warm_ms,
        "openslide": openslide.__library_version__,
        "python_openslide": openslide.__version__,
    }))


if __name__ == "__main__":
    main()
