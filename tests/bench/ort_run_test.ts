/**
 * The ONNX Runtime peer process (bench/peers/ort_run.ts) on a model written here byte by byte
 * (y = Relu(x), x: float[8]): with PyTorch's output as the reference it reports a time; against a
 * wrong reference it reports `ok: false`, the first wrong index and the error, and no time. CPU
 * provider only (onnxruntime-node); no PyTorch needed.
 */

/** Protocol-buffer encoding, just what a ModelProto needs. */
function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
const int = (field: number, v: number) => [...varint(field << 3), ...varint(v)];
const bytes = (
  field: number,
  b: number[],
) => [...varint((field << 3) | 2), ...varint(b.length), ...b];
const str = (field: number, s: string) => bytes(field, [...new TextEncoder().encode(s)]);

/** ValueInfoProto of a float tensor of shape [n]. */
const floatVector = (name: string, n: number) => [
  ...str(1, name),
  // TypeProto.tensor_type { elem_type FLOAT, shape { dim { dim_value n } } }
  ...bytes(2, bytes(1, [...int(1, 1), ...bytes(2, bytes(1, int(1, n)))])),
];

function reluModel(n: number): Uint8Array {
  const node = [...str(1, "x"), ...str(2, "y"), ...str(4, "Relu")];
  const graph = [
    ...bytes(1, node),
    ...str(2, "relu"),
    ...bytes(11, floatVector("x", n)),
    ...bytes(12, floatVector("y", n)),
  ];
  return new Uint8Array([
    ...int(1, 8), // ir_version
    ...bytes(7, graph),
    ...bytes(8, int(2, 17)), // opset_import { version 17 }
  ]);
}

async function ortRun(dir: string, ref: Float32Array): Promise<Record<string, unknown>> {
  await Deno.writeFile(`${dir}/ref.bin`, new Uint8Array(ref.buffer));
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../bench/peers/ort_run.ts", import.meta.url).pathname,
      ...["--ep", "cpu", "--onnx", `${dir}/m.onnx`, "--input", `${dir}/x.bin`],
      ...["--shape", "8", "--ref", `${dir}/ref.bin`, "--runs", "2", "--threads", "1"],
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (out.code !== 0) {
    throw new Error(`ort_run exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(text.split("\n").pop()!);
}

Deno.test("ort_run times a right output and reports a wrong one without a time", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ort-run-test-" });
  try {
    const x = Float32Array.from([0.5, -1, 2, -3, 4, 0.25, -0.5, 1]);
    await Deno.writeFile(`${dir}/m.onnx`, reluModel(8));
    await Deno.writeFile(`${dir}/x.bin`, new Uint8Array(x.buffer));
    const right = await ortRun(dir, x.map((v) => Math.max(v, 0)));
    if (right.ok !== true || !(typeof right.ms === "number" && right.ms > 0)) {
      throw new Error(`right output: ${JSON.stringify(right)}`);
    }
    if (right.maxAbsErr !== 0) throw new Error(`Relu is exact: ${JSON.stringify(right)}`);
    // The identity as the reference: index 1 (−1 against 0) is the first wrong element.
    const wrong = await ortRun(dir, x);
    if (
      wrong.ok !== false || wrong.ms !== null || wrong.firstWrongIndex !== 1 ||
      !/output wrong: 3 of 8 elements.*first wrong at flat index 1/.test(String(wrong.error))
    ) {
      throw new Error(`wrong output: ${JSON.stringify(wrong)}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
