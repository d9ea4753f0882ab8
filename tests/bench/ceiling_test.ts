/** The bench's refusals and checks that need no GPU: ceiling, BLAS classification, output check. */
import { checkPeers, checkRow, cpuCeiling, ImpossibleRowError } from "../../bench/ceiling.ts";
import { blasName, blasRefusal, classifyBlas } from "../../bench/peers/launcher.ts";
import { compareOutputs } from "../../bench/peers/compare.ts";
import type { BenchRow } from "../../bench/registry.ts";

function assert(ok: boolean, msg: string): void {
  if (!ok) throw new Error(msg);
}

const row = (gflops: number, adapter = "llvmpipe"): BenchRow => ({
  name: "matmul/register",
  shape: [2048, 2048, 2048],
  ms: 2 * 2048 ** 3 / gflops / 1e6,
  gflops,
  gbps: null,
  adapter,
});

Deno.test("a row above the ceiling is refused with the kernel's name", () => {
  const ours = { gflops: 100, source: "test" }, cpu = { gflops: 50, source: "cpu" };
  checkRow(row(99), ours, cpu, "llvmpipe");
  let err: unknown = null;
  try {
    checkRow(row(237137), ours, cpu, "llvmpipe");
  } catch (e) {
    err = e;
  }
  assert(err instanceof ImpossibleRowError, "an impossible row must throw");
  assert(/matmul\/register/.test((err as Error).message), (err as Error).message);
  // A CPU peer's row is held to the CPU's ceiling.
  let peerErr = false;
  try {
    checkRow(row(60, "CPU, torch 1.13, OpenBLAS, 2 threads"), ours, cpu, "llvmpipe");
  } catch {
    peerErr = true;
  }
  assert(peerErr, "a CPU row above the CPU ceiling must throw");
});

Deno.test("a peer's figure above its ceiling is refused, not printed as a time", () => {
  const ours = { gflops: 100, source: "test" }, cpu = { gflops: 50, source: "cpu" };
  const r = row(10); // 10 GFLOP/s for ours: the work is 2·2048³ flop
  const runtime = "test";
  r.peers = {
    "pytorch-cpu": { ms: r.ms / 4, ok: true, runtime }, // 40 GFLOP/s: possible
    "ort-cpu": { ms: r.ms / 8, ok: true, runtime }, // 80: above the CPU's 50
    "ort-web-webgpu": { ms: r.ms / 8, ok: true, runtime }, // 80: within the adapter's 100
  };
  const refused = checkPeers(r, ours, cpu);
  assert(
    refused.length === 1 && /peer ort-cpu of kernel "matmul\/register"/.test(refused[0]),
    `${refused}`,
  );
  const p = r.peers["ort-cpu"];
  assert(!p.ok && p.ms === null && p.error === refused[0], JSON.stringify(p));
  assert(r.peers["pytorch-cpu"].ok && r.peers["ort-web-webgpu"].ok, JSON.stringify(r.peers));
});

Deno.test("the CPU ceiling is computed from this machine and says how", () => {
  const c = cpuCeiling();
  assert(c.gflops > 0 && Number.isFinite(c.gflops), `ceiling ${c.gflops}`);
  assert(/computed: \d+ CPUs/.test(c.source), c.source);
});

Deno.test("the BLAS torch loaded is told from the mapped libraries", () => {
  assert(
    classifyBlas(["/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"], "generic") ===
      "OpenBLAS",
    "openblas-pthread",
  );
  assert(
    classifyBlas(["/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0"], "generic") === "reference",
    "reference",
  );
  assert(classifyBlas(["/opt/intel/lib/libmkl_rt.so"], null) === "MKL", "mkl");
  assert(classifyBlas([], "generic") === "unknown", "nothing mapped");
  const libs = [
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so",
  ];
  const name = blasName({ blas: classifyBlas(libs, "generic"), blasLibs: libs });
  assert(name === "OpenBLAS 0.3.21 (pthread)", name);
});

Deno.test("a reference-BLAS torch is refused as a peer, with what to install", () => {
  const ref = classifyBlas(["/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0"], "generic");
  assert(
    blasRefusal(ref) === "not configured: install libopenblas0-pthread",
    `${blasRefusal(ref)}`,
  );
  for (const ok of ["OpenBLAS", "MKL", "BLIS"]) assert(blasRefusal(ok) === null, ok);
});

Deno.test("a peer's output is checked element by element", () => {
  const ref = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i));
  const ok = compareOutputs(ref.map((v) => v + 1e-5), ref);
  assert(ok.ok && ok.firstWrongIndex === null && ok.maxAbsErr < 2e-5, JSON.stringify(ok));
  const bad = ref.slice();
  bad[42] = 7;
  bad[77] = NaN;
  const w = compareOutputs(bad, ref);
  assert(!w.ok && w.firstWrongIndex === 42 && w.wrongCount === 2, JSON.stringify(w));
  assert(/first wrong at flat index 42/.test(w.error), w.error);
  assert(!compareOutputs(ref.subarray(1), ref).ok, "a short output is wrong");
});
