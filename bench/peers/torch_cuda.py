"""PyTorch-CUDA peer for bench/gpu_check.sh (bench only): the matmul, conv and SAM ViT-B encoder
shapes of the WebGPU benches, timed with torch.cuda.synchronize() around each run (one warm-up,
median of --runs). Prints one JSON line {"torch", "device", "rows": [{"case", "ms"} | {"case",
"error"}]}, or {"error"} when CUDA is not available.

Usage: /usr/bin/python3 torch_cuda.py [--runs 5] [--sam-code DIR]"""
import json
import os
import sys
import time

if any(a in ("-h", "--help") for a in sys.argv[1:]):  # before the heavy imports
    print('usage: /usr/bin/python3 bench/peers/torch_cuda.py [--runs N] [--sam-code DIR]')
    print(__doc__)
    sys.exit(0)

sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
import torch  # noqa: E402


def timed(fn, runs):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    argv = sys.argv[1:]
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 5
    code = argv[argv.index("--sam-code") + 1] if "--sam-code" in argv else "/tmp/epsam_code"
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch.cuda.is_available() is False"}))
        return
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32, as the WebGPU kernels compute
    torch.backends.cudnn.allow_tf32 = False
    rows = []

    def case(name, fn):
        try:
            with torch.no_grad():
                rows.append({"case": name, "ms": timed(fn, runs)})
        except Exception as e:  # noqa: BLE001
            rows.append({"case": name, "error": f"{type(e).__name__}: {e}"})

    for n in (1024, 2048, 4096):
        a, b = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
        case(f"matmul {n}^3", lambda a=a, b=b: a @ b)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(dev)
    x = torch.rand(1, 64, 128, 128, device=dev)
    case("conv3x3 1x64x128^2 64->64", lambda: conv(x))
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import torch_models as tm  # noqa: E402
        enc = tm.build_sam_vit_b(tm.sam_modeling(code)).image_encoder.eval().to(dev)
        img = torch.randn(1, 3, 1024, 1024, device=dev)
        case("sam-encoder vit_b @1024", lambda: enc(img))
    except Exception as e:  # noqa: BLE001
        rows.append({"case": "sam-encoder vit_b @1024", "error": f"{type(e).__name__}: {e}"})
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "rows": rows}))


if __name__ == "__main__":
    main()
