/**
 * The PyTorch peer runs OpenBLAS's strongest kernel for this CPU: OpenBLAS's DYNAMIC_ARCH build
 * falls back to Prescott (SSE3) on a virtual CPU model it does not know, ~4× slower on AVX-512.
 */
import assert from "node:assert/strict";
import { coreUpgrade, describeTorch, openblasCoreFor } from "../../bench/peers/launcher.ts";

const flags = (s: string) => new Set(s.split(" "));

Deno.test("the OpenBLAS core a CPU allows is read from its flags", () => {
  assert.equal(
    openblasCoreFor(flags("fpu sse3 avx avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl")),
    "SkylakeX",
  );
  // avx512f alone (Knights Landing-like) is not enough for SkylakeX's kernels.
  assert.equal(openblasCoreFor(flags("avx avx2 fma avx512f")), "Haswell");
  assert.equal(openblasCoreFor(flags("sse3 avx")), "Sandybridge");
  assert.equal(openblasCoreFor(flags("sse3 ssse3")), null);
});

Deno.test("a weaker autodetected core is replaced, a stronger or unranked one kept", () => {
  assert.equal(coreUpgrade("Prescott", "SkylakeX"), "SkylakeX");
  assert.equal(coreUpgrade("Haswell", "SkylakeX"), "SkylakeX");
  assert.equal(coreUpgrade("SkylakeX", "SkylakeX"), null);
  assert.equal(coreUpgrade("SkylakeX", "Haswell"), null);
  assert.equal(
    coreUpgrade("Zen", "Haswell"),
    null,
    "AMD cores are not ranked: OpenBLAS's choice stands",
  );
  assert.equal(coreUpgrade(null, "SkylakeX"), null, "not OpenBLAS");
  assert.equal(coreUpgrade("Prescott", null), null);
});

Deno.test("the peer's runtime names the core and who chose it", () => {
  const base = {
    version: "1.13.0",
    blas: "OpenBLAS",
    blasLibs: ["/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so"],
    threads: 2,
  };
  assert.equal(
    describeTorch({ ...base, blasCore: "SkylakeX", autodetectedCore: "Prescott" }),
    "torch 1.13.0, OpenBLAS 0.3.21 (pthread) core SkylakeX (set by the bench; OpenBLAS chose Prescott), 2 threads",
  );
  assert.equal(
    describeTorch({ ...base, blasCore: "Haswell", autodetectedCore: null }),
    "torch 1.13.0, OpenBLAS 0.3.21 (pthread) core Haswell, 2 threads",
  );
});
