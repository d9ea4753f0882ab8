/**
 * Softmax past the per-binding limit: [3, 4096, 4096] (192 MiB, over the 128 MiB that WebGPU
 * adapters commonly bind), ours (rows split over several dispatches, engine/ops/softmax.ts) and,
 * with `--peers`, PyTorch CPU, ONNX Runtime Web's WebGPU EP and ONNX Runtime's CPU EP on the same
 * shape with their outputs checked against PyTorch's. ORT-web 1.30 binds the whole tensor and is
 * wrong from flat index 33,554,432 (128 MiB / 4) on; the row shows it.
 */
import { F, gpu, initGpu } from "../engine/mod.ts";
import { randTensor } from "../tests/util/gpu.ts";
import {
  type BenchContext,
  type BenchRow,
  loadavg,
  matchesFilter,
  registerBench,
} from "./registry.ts";
import { timeKernel } from "./timing.ts";
import { describePeers, onnxPeers } from "./peers/onnx_peers.ts";

const SOFTMAX_LIMIT_SHAPE = [3, 4096, 4096];
const NAME = "softmax-past-binding-limit";

async function benchSoftmax(ctx: BenchContext): Promise<BenchRow[]> {
  if (!matchesFilter(NAME, ctx.filter)) return [];
  await initGpu();
  const s = SOFTMAX_LIMIT_SHAPE;
  const x = randTensor(s, 5, -8, 8);
  const t = await timeKernel(() => F.softmax(x), Math.min(ctx.runs, 3));
  x.dispose();
  const size = s.reduce((a, b) => a * b, 1);
  const row: BenchRow = {
    name: NAME,
    shape: s,
    ms: t.ms,
    gflops: null,
    gbps: 8 * size / t.ms / 1e6,
    adapter: gpu().adapterName,
    load: loadavg(),
    notes: `${(4 * size / 2 ** 20).toFixed(0)} MiB, binding limit ${
      (gpu().limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)
    } MiB; ${t.note}`,
  };
  if (ctx.peers) {
    const id = `onnx:softmax:${s.join(":")}`;
    row.peers = (await onnxPeers([id], Math.min(ctx.runs, 2))).get(id)!;
    row.notes += `; peers: ${describePeers(row.peers, row.ms)}`;
  }
  return [row];
}

registerBench({ name: "softmax", filterable: true, run: benchSoftmax });
