/** The peers table (bench/peers_table.ts): times with ratios, a wrong peer as wrong, runtimes named. */
import { peersTable } from "../../bench/peers_table.ts";
import type { BenchRow } from "../../bench/registry.ts";

Deno.test("the peers table shows a wrong peer as wrong, never with a time", () => {
  const row: BenchRow = {
    name: "sam-encoder vit_b fwd @1024",
    shape: [1, 3, 1024, 1024],
    ms: 30000,
    gflops: null,
    gbps: null,
    adapter: "llvmpipe",
    load: "1.0 1.0 1.0",
    peers: {
      "pytorch-cpu": { ms: 10000, ok: true, runtime: "torch 1.13, OpenBLAS 0.3.21, 2 threads" },
      "ort-web-webgpu": {
        ms: null,
        ok: false,
        maxAbsErr: 0.9,
        firstWrongIndex: 12345,
        error: "output wrong",
        runtime: "onnxruntime-web 1.30.0 WebGPU EP",
      },
    },
  };
  const t = peersTable([row, { ...row, name: "no peers", peers: undefined }]);
  const lines = t.split("\n");
  const body = lines.filter((l) => l.startsWith("| sam-encoder"));
  if (body.length !== 1 || lines.some((l) => l.startsWith("| no peers"))) throw new Error(t);
  if (
    !/\| 30 000 \| 10 000 \(3\.00×\) \| \*\*wrong\*\*: first wrong at flat index 12345/.test(
      body[0],
    )
  ) {
    throw new Error(body[0]);
  }
  if (!t.includes("- pytorch-cpu: torch 1.13, OpenBLAS 0.3.21, 2 threads")) throw new Error(t);
});
