/**
 * Launching kernels: a pipeline cache keyed by the kernel's specialisation key, uniform buffers
 * cached by content and bind groups cached by (pipeline, buffer ranges) so a training loop that
 * reuses pooled buffers rebuilds nothing, many dispatches encoded into one compute pass and
 * submitted in batches, and readback only when a value is asked for.
 *
 * Program-cache key (as ONNX Runtime documents its own): `Kernel.key` must contain the kernel name
 * and every value baked into the WGSL (tile sizes, dtypes, flags, rank); shapes never belong in it,
 * they travel in the uniform block so one pipeline serves every shape.
 */
import { gpu, onNewDevice, throwUncaptured } from "./device.ts";
import { pool } from "./pool.ts";
import type { Kernel } from "../kernels/kernel.ts";

export type { Kernel };

/** A storage binding: a buffer range. */
export interface BufferBinding {
  buffer: GPUBuffer;
  /** Byte offset (multiple of minStorageBufferOffsetAlignment). */
  offset?: number;
  /** Byte size actually bound (must not exceed the adapter's maxStorageBufferBindingSize). */
  size: number;
}

/** A storage-texture binding (engine/texture_pool.ts hands these out). */
export interface TextureBinding {
  view: GPUTextureView;
}

export type Binding = BufferBinding | TextureBinding;

const pipelines = new Map<string, GPUComputePipeline>();
const uniforms = new Map<string, GPUBuffer>();
const bindGroups = new Map<string, GPUBindGroup>();
/** Reusable MAP_READ buffers for readbacks. */
const staging: GPUBuffer[] = [];
const bufferIds = new WeakMap<GPUBuffer | GPUTextureView, number>();
let nextBufferId = 1;
const MAX_BIND_GROUPS = 4096;
const MAX_UNIFORMS = 4096;
/** Dispatches per submit: submits let the pool recycle buffers released in between. */
const DISPATCHES_PER_SUBMIT = 96;
const SYNC_ERRORS = Deno.env.get("ENGINE_SYNC_ERRORS") === "1";

let encoder: GPUCommandEncoder | null = null;
let pass: GPUComputePassEncoder | null = null;
let dispatchesInBatch = 0;
let timing: { querySet: GPUQuerySet } | null = null;
/** Per-dispatch profiling (see {@link profileGpu}): one pass per dispatch, timestamps around it. */
let profiling: ProfileState | null = null;
const pendingErrors: Promise<string | null>[] = [];
const stats = { dispatches: 0, submits: 0, pipelines: 0, readbacks: 0 };

pool.onDestroy = () => bindGroups.clear();

// A new device (after a loss) cannot use anything made on the old one.
onNewDevice(() => {
  pipelines.clear();
  sources.clear();
  uniforms.clear();
  bindGroups.clear();
  staging.length = 0;
  encoder = null;
  pass = null;
  dispatchesInBatch = 0;
  timing = null;
  pendingErrors.length = 0;
});

function idOf(b: GPUBuffer | GPUTextureView): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, id = nextBufferId++);
  return id;
}

/** Opens the current batch (encoder + error scopes) if none is open. */
export function ensureBatch(): GPUCommandEncoder {
  if (!encoder) {
    const d = gpu().device;
    d.pushErrorScope("out-of-memory");
    d.pushErrorScope("validation");
    encoder = d.createCommandEncoder();
    dispatchesInBatch = 0;
  }
  return encoder;
}

function endPass(): void {
  if (pass) {
    pass.end();
    pass = null;
  }
}

/**
 * Key check: when on, every pipeline-cache hit compares the kernel's WGSL with the source cached
 * under its key and throws on a difference — a key missing one of the constants baked into the
 * WGSL, which would otherwise run the wrong program silently. Costs a WGSL build per dispatch, so
 * it is for tests (`setKernelKeyCheck`, or `ENGINE_CHECK_KERNEL_KEYS=1` for a whole run).
 */
let checkKeys = Deno.env.get("ENGINE_CHECK_KERNEL_KEYS") === "1";
const sources = new Map<string, string>();

/** Turns the kernel-key check on or off (see above); returns the previous setting. */
export function setKernelKeyCheck(on: boolean): boolean {
  const was = checkKeys;
  checkKeys = on;
  if (!on) sources.clear();
  return was;
}

function getPipeline(k: Kernel): GPUComputePipeline {
  let p = pipelines.get(k.key);
  if (p) {
    if (checkKeys) checkSameSource(k);
    return p;
  }
  const d = gpu().device;
  d.pushErrorScope("validation");
  const code = k.wgsl();
  if (checkKeys) sources.set(k.key, code);
  const module = d.createShaderModule({ code, label: k.key });
  p = d.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
    label: k.key,
  });
  pendingErrors.push(d.popErrorScope().then((e) => e ? `kernel ${k.key}: ${e.message}` : null));
  pipelines.set(k.key, p);
  stats.pipelines++;
  return p;
}

function checkSameSource(k: Kernel): void {
  const code = k.wgsl();
  const cached = sources.get(k.key);
  if (cached === undefined) sources.set(k.key, code);
  else if (cached !== code) {
    throw new Error(
      `kernel key ${k.key}: two different WGSL sources share this pipeline-cache key; the key ` +
        `must name every constant baked into the source`,
    );
  }
}

function getUniform(bytes: Uint8Array): GPUBuffer {
  let key = "";
  const u = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  for (let i = 0; i < u.length; i++) key += u[i].toString(36) + ",";
  let b = uniforms.get(key);
  if (b) return b;
  b = gpu().device.createBuffer({
    size: bytes.byteLength,
    usage: GPUBufferUsage.UNIFORM,
    mappedAtCreation: true,
  });
  new Uint8Array(b.getMappedRange()).set(bytes);
  b.unmap();
  uniforms.set(key, b);
  return b;
}

/**
 * Encodes one dispatch of `kernel` with `params` (its uniform block, packed by the layout the
 * kernel declares: kernels/uniforms.ts) at binding 0 and `bindings` at 1..n.
 * Nothing runs until the batch is submitted (automatically every few dozen dispatches, or by a
 * readback).
 */
export function dispatch(
  kernel: Kernel,
  bindings: Binding[],
  params: Uint8Array,
  workgroups: [number, number?, number?],
): void {
  const g = gpu();
  const [x, y = 1, z = 1] = workgroups;
  const maxWg = g.limits.maxComputeWorkgroupsPerDimension;
  if (x > maxWg || y > maxWg || z > maxWg) {
    throw new Error(
      `kernel ${kernel.key}: grid ${x}x${y}x${z} exceeds ${maxWg} workgroups per dimension`,
    );
  }
  if (x === 0 || y === 0 || z === 0) return;
  for (const b of bindings) {
    if ("size" in b && b.size > g.limits.maxStorageBufferBindingSize) {
      throw new Error(
        `kernel ${kernel.key}: a binding of ${b.size} bytes exceeds this adapter's ` +
          `maxStorageBufferBindingSize (${g.limits.maxStorageBufferBindingSize}); this kernel must ` +
          `tile or bind ranges for tensors this large`,
      );
    }
  }
  ensureBatch();
  const pipeline = getPipeline(kernel);
  const ubuf = getUniform(params);
  let key = `${kernel.key}|${idOf(ubuf)}`;
  for (const b of bindings) {
    key += "view" in b ? `|t${idOf(b.view)}` : `|${idOf(b.buffer)}:${b.offset ?? 0}:${b.size}`;
  }
  let bg = bindGroups.get(key);
  if (!bg) {
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: ubuf } }];
    bindings.forEach((b, i) =>
      entries.push({
        binding: i + 1,
        resource: "view" in b
          ? b.view
          : { buffer: b.buffer, offset: b.offset ?? 0, size: Math.max(4, b.size) },
      })
    );
    bg = g.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    if (bindGroups.size >= MAX_BIND_GROUPS) bindGroups.delete(bindGroups.keys().next().value!);
    bindGroups.set(key, bg);
  }
  if (profiling) {
    profileDispatch(profiling, kernel.key, pipeline, bg, x, y, z);
    return;
  }
  if (!pass) {
    pass = encoder!.beginComputePass(
      timing
        ? {
          timestampWrites: {
            querySet: timing.querySet,
            beginningOfPassWriteIndex: 0,
            endOfPassWriteIndex: 1,
          },
        }
        : undefined,
    );
  }
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bg);
  pass.dispatchWorkgroups(x, y, z);
  stats.dispatches++;
  if (SYNC_ERRORS) {
    flush();
    return;
  }
  if (++dispatchesInBatch >= DISPATCHES_PER_SUBMIT && !timing) flush();
}

/** Copies a buffer range into another inside the current batch (ordered with the dispatches). */
function copyBuffer(
  src: GPUBuffer,
  srcOffset: number,
  dst: GPUBuffer,
  dstOffset: number,
  size: number,
): void {
  const enc = ensureBatch();
  endPass();
  enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
}

/** Submits everything encoded so far. */
export function flush(): void {
  if (!encoder) return;
  endPass();
  const afterSubmit = profiling ? profileResolve(profiling, encoder) : null;
  const d = gpu().device;
  d.queue.submit([encoder.finish()]);
  afterSubmit?.();
  encoder = null;
  stats.submits++;
  pool.afterSubmit();
  pendingErrors.push(d.popErrorScope().then((e) => e ? `validation: ${e.message}` : null));
  pendingErrors.push(d.popErrorScope().then((e) => e ? `out of memory: ${e.message}` : null));
  if (uniforms.size > MAX_UNIFORMS) {
    for (const b of uniforms.values()) b.destroy();
    uniforms.clear();
    bindGroups.clear();
  }
}

/** Waits for reported errors of everything submitted so far and throws the first ones. */
async function checkErrors(): Promise<void> {
  const errs = (await Promise.all(pendingErrors.splice(0))).filter((e) => e !== null);
  throwUncaptured();
  if (errs.length) {
    const oom = errs.some((e) => e!.startsWith("out of memory"));
    throw new Error(
      `WebGPU ${oom ? "ran out of memory" : "rejected work"}: ${errs.slice(0, 3).join("; ")}` +
        (oom ? " — lower the batch size or tile the work" : ""),
    );
  }
}

/** Submits pending work and waits until the GPU has finished it (and checks errors). */
export async function sync(): Promise<void> {
  flush();
  await gpu().device.queue.onSubmittedWorkDone();
  await checkErrors();
}

/** Reads `size` bytes at `offset` of `buffer` back to the CPU (flushes the batch). */
export async function readBuffer(
  buffer: GPUBuffer,
  offset: number,
  size: number,
): Promise<ArrayBuffer> {
  const d = gpu().device;
  const alignedStart = offset - (offset % 4);
  const alignedSize = Math.ceil((offset + size - alignedStart) / 4) * 4;
  const idx = staging.findIndex((b) => b.size >= alignedSize);
  const st = idx >= 0 ? staging.splice(idx, 1)[0] : d.createBuffer({
    size: Math.max(256, 2 ** Math.ceil(Math.log2(alignedSize))),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  copyBuffer(buffer, alignedStart, st, 0, alignedSize);
  flush();
  stats.readbacks++;
  try {
    await st.mapAsync(GPUMapMode.READ, 0, alignedSize);
  } catch (e) {
    await checkErrors();
    throw e;
  }
  const out = st.getMappedRange(0, alignedSize).slice(
    offset - alignedStart,
    offset - alignedStart + size,
  );
  st.unmap();
  if (staging.length < 8) staging.push(st);
  else st.destroy();
  await checkErrors();
  return out;
}

/** Writes bytes into a buffer; ordered before every dispatch submitted after this call. */
export function writeBuffer(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
  // A buffer reused before the batch that last used it was submitted: submit that batch first,
  // or this write would land before those users ran.
  if (pool.mustSubmitBefore(buffer)) flush();
  ensureBatch();
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  const n4 = Math.floor(bytes.byteLength / 4) * 4;
  if (n4) gpu().device.queue.writeBuffer(buffer, offset, bytes, 0, n4);
  if (n4 < bytes.byteLength) {
    const tail = new Uint8Array(4);
    tail.set(bytes.subarray(n4));
    gpu().device.queue.writeBuffer(buffer, offset + n4, tail);
  }
}

/**
 * Times the GPU work encoded by `fn` with timestamp queries when the adapter has them
 * (otherwise wall clock around submit + onSubmittedWorkDone). Returns milliseconds.
 */
export async function timeGpu(
  fn: () => void,
): Promise<{ ms: number; method: "timestamp" | "wall" }> {
  const g = gpu();
  flush();
  await g.device.queue.onSubmittedWorkDone();
  if (!g.features.timestamp) {
    const t0 = performance.now();
    fn();
    flush();
    await g.device.queue.onSubmittedWorkDone();
    await checkErrors();
    return { ms: performance.now() - t0, method: "wall" };
  }
  const querySet = g.device.createQuerySet({ type: "timestamp", count: 2 });
  const resolve = g.device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  ensureBatch();
  endPass();
  timing = { querySet };
  try {
    fn();
  } finally {
    timing = null;
  }
  endPass();
  encoder!.resolveQuerySet(querySet, 0, 2, resolve, 0);
  const raw = await readBuffer(resolve, 0, 16);
  const t = new BigUint64Array(raw);
  querySet.destroy();
  resolve.destroy();
  return { ms: Number(t[1] - t[0]) / 1e6, method: "timestamp" };
}

/** Counters for tests and benchmarks. */
export function dispatchStats(): Readonly<typeof stats> & {
  cachedPipelines: number;
  cachedBindGroups: number;
} {
  return { ...stats, cachedPipelines: pipelines.size, cachedBindGroups: bindGroups.size };
}

/** Largest number of workgroups along x; kernels fold the rest into y. */
export function grid1d(items: number, perWorkgroup: number): [number, number] {
  const groups = Math.ceil(items / perWorkgroup);
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [Math.max(1, groups), 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}

interface ProfileState {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  /** Kernel key of each timestamp pair written in the current batch. */
  keys: string[];
  readbacks: Promise<void>[];
  totals: Map<string, { ms: number; count: number }>;
}
const PROFILE_PAIRS = 512;

function profileDispatch(
  p: ProfileState,
  key: string,
  pipeline: GPUComputePipeline,
  bg: GPUBindGroup,
  x: number,
  y: number,
  z: number,
): void {
  endPass();
  const i = p.keys.length;
  const pp = encoder!.beginComputePass({
    timestampWrites: {
      querySet: p.querySet,
      beginningOfPassWriteIndex: 2 * i,
      endOfPassWriteIndex: 2 * i + 1,
    },
  });
  pp.setPipeline(pipeline);
  pp.setBindGroup(0, bg);
  pp.dispatchWorkgroups(x, y, z);
  pp.end();
  p.keys.push(key);
  stats.dispatches++;
  if (p.keys.length >= PROFILE_PAIRS) flush();
}

/** Encodes the resolve of this batch's timestamps; the returned call maps them after the submit. */
function profileResolve(p: ProfileState, enc: GPUCommandEncoder): (() => void) | null {
  const n = p.keys.length;
  if (!n) return null;
  const st = gpu().device.createBuffer({
    size: n * 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  enc.resolveQuerySet(p.querySet, 0, 2 * n, p.resolve, 0);
  enc.copyBufferToBuffer(p.resolve, 0, st, 0, n * 16);
  const keys = p.keys.splice(0);
  return () =>
    void p.readbacks.push(
      st.mapAsync(GPUMapMode.READ).then(() => {
        const t = new BigUint64Array(st.getMappedRange());
        keys.forEach((k, j) => {
          const e = p.totals.get(k) ?? { ms: 0, count: 0 };
          e.ms += Number(t[2 * j + 1] - t[2 * j]) / 1e6;
          e.count++;
          p.totals.set(k, e);
        });
        st.destroy();
      }),
    );
}

/**
 * Runs `fn` with every dispatch in its own timed pass and returns GPU milliseconds per kernel key,
 * largest first. For finding hot spots in benchmarks only: one pass per
 * dispatch costs a little, and needs the `timestamp-query` feature.
 */
export async function profileGpu(
  fn: () => Promise<void> | void,
): Promise<{ kernel: string; ms: number; count: number }[]> {
  const g = gpu();
  if (!g.features.timestamp) throw new Error("profileGpu needs the timestamp-query feature");
  flush();
  const p: ProfileState = {
    querySet: g.device.createQuerySet({ type: "timestamp", count: 2 * PROFILE_PAIRS }),
    resolve: g.device.createBuffer({
      size: PROFILE_PAIRS * 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    }),
    keys: [],
    readbacks: [],
    totals: new Map(),
  };
  profiling = p;
  try {
    await fn();
    flush();
  } finally {
    profiling = null;
  }
  await Promise.all(p.readbacks);
  await checkErrors();
  p.querySet.destroy();
  p.resolve.destroy();
  return [...p.totals].map(([kernel, e]) => ({ kernel, ...e })).sort((a, b) => b.ms - a.ms);
}
