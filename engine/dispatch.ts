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
import { threadCpuMs } from "./cpu_time.ts";
import type { Kernel } from "../kernels/kernel.ts";
import { uniforms as declareUniforms } from "../kernels/uniforms.ts";

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
/** Profiling in progress (see {@link profileGpu}). */
let profiling: ProfileState | null = null;
const pendingErrors: Promise<string | null>[] = [];
/** `bindGroups`: bind groups created (cache misses). */
const stats = { dispatches: 0, submits: 0, pipelines: 0, readbacks: 0, bindGroups: 0 };

pool.onDestroy = () => bindGroups.clear();
pool.batchOpen = () => encoder !== null;

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
  probe = null;
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

/**
 * Two storage bindings of one dispatch may name one buffer: two tensors in one slab of the pool
 * (engine/pool.ts), or one tensor twice (x · x). WebGPU then has two rules:
 * - usage scope: a buffer bound writable (storage) and read-only (read-only-storage) in one
 *   dispatch is a conflict on every implementation, so such a dispatch runs
 *   {@link readWriteVariant}, whose storage buffers are all read_write;
 * - writable aliasing: two bindings of one buffer whose ranges overlap, one of them writable, are
 *   rejected by Dawn (Chrome) though wgpu accepts them; such a kernel would read what it writes.
 * Tensors in one slab have disjoint ranges (engine/range_heap.ts), so the variant is enough for
 * them. Ranges overlap only when one storage is bound twice: read-only twice (x · x) needs nothing,
 * as no binding of that buffer is written; a read-only binding overlapping a written one gets a
 * copy of its range made in the batch first (the kernel reads the values as they were); two
 * written bindings that overlap are a bug of the op, and throw.
 */
interface SharedBuffers {
  /** Some buffer is bound writable and bound again: run the all-read_write variant. */
  readWrite: boolean;
  /** Indices of read-only bindings that overlap a writable binding of their buffer. */
  copy: number[];
}

/** Storage-buffer binding numbers (1..n) a kernel declares read_write, by kernel key. */
const writableByKey = new Map<string, Set<number>>();

function writableBindings(k: Kernel): Set<number> {
  let w = writableByKey.get(k.key);
  if (!w) {
    w = new Set();
    for (const m of k.wgsl().matchAll(/@binding\((\d+)\)\s*var<storage,\s*read_write>/g)) {
      w.add(Number(m[1]));
    }
    writableByKey.set(k.key, w);
  }
  return w;
}

/** What a dispatch binding one buffer more than once needs (see above); null when none does. */
function sharedBuffers(kernel: Kernel, bindings: Binding[]): SharedBuffers | null {
  let writable: Set<number> | null = null;
  let out: SharedBuffers | null = null;
  for (let i = 1; i < bindings.length; i++) {
    const a = bindings[i];
    if ("view" in a) continue;
    for (let j = 0; j < i; j++) {
      const b = bindings[j];
      if ("view" in b || b.buffer !== a.buffer) continue;
      writable ??= writableBindings(kernel);
      const wa = writable.has(i + 1), wb = writable.has(j + 1);
      if (!wa && !wb) continue; // both read-only: no conflict, overlapping or not
      out ??= { readWrite: false, copy: [] };
      out.readWrite = true;
      const ao = a.offset ?? 0, bo = b.offset ?? 0;
      if (ao < bo + b.size && bo < ao + a.size) {
        if (wa && wb) {
          throw new Error(
            `kernel ${kernel.key}: storage bindings ${j + 1} and ${
              i + 1
            } are written and overlap ` +
              `in one buffer (bytes ${bo}+${b.size} and ${ao}+${a.size}): an op bound one tensor ` +
              `as two outputs`,
          );
        }
        const ro = wa ? j : i;
        if (!out.copy.includes(ro)) out.copy.push(ro);
      }
    }
  }
  return out;
}

const readWriteVariants = new Map<string, Kernel>();

/** `k` with every storage buffer declared read_write (the same program; another pipeline). */
function readWriteVariant(k: Kernel): Kernel {
  let v = readWriteVariants.get(k.key);
  if (!v) {
    v = {
      key: `${k.key}|rw`,
      wgsl: () => k.wgsl().replace(/var<storage,\s*read>/g, "var<storage, read_write>"),
    };
    readWriteVariants.set(k.key, v);
  }
  return v;
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
  const shared = sharedBuffers(kernel, bindings);
  let copies: GPUBuffer[] | null = null;
  if (shared?.copy.length) {
    // A read-only operand overlapping a written range: the kernel reads a copy made first.
    bindings = bindings.slice();
    copies = [];
    for (const i of shared.copy) {
      const b = bindings[i] as BufferBinding;
      const tmp = pool.acquire(b.size, "aliased operand copy");
      copyBuffer(
        b.buffer,
        b.offset ?? 0,
        tmp,
        0,
        b.size,
        "copy/buffer-to-buffer (aliased operand)",
      );
      bindings[i] = { buffer: tmp, offset: 0, size: b.size };
      copies.push(tmp);
    }
  }
  const pipeline = getPipeline(shared?.readWrite ? readWriteVariant(kernel) : kernel);
  const ubuf = getUniform(params);
  let key = `${kernel.key}|${idOf(ubuf)}`;
  for (const b of bindings) {
    key += "view" in b ? `|t${idOf(b.view)}` : `|${idOf(b.buffer)}:${b.offset ?? 0}:${b.size}`;
  }
  let bg = bindGroups.get(key);
  if (bg) {
    // Least recently used first in the map's order: eviction drops what a loop stopped using.
    bindGroups.delete(key);
    bindGroups.set(key, bg);
  } else {
    stats.bindGroups++;
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
  if (profiling?.mode === "timestamp") {
    profileDispatch(profiling, kernel.key, { pipeline, bg, x, y, z });
    if (copies) { for (const c of copies) pool.release(c); }
    return;
  }
  profiling?.recorded.push(dispatchWork(kernel.key, { pipeline, bg, x, y, z }));
  if (!pass) pass = encoder!.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bg);
  pass.dispatchWorkgroups(x, y, z);
  stats.dispatches++;
  // Reusable by later dispatches at once, by uploads after the submit (engine/pool.ts).
  if (copies) { for (const c of copies) pool.release(c); }
  if (SYNC_ERRORS) {
    flush();
    return;
  }
  if (++dispatchesInBatch >= DISPATCHES_PER_SUBMIT) flush();
}

/**
 * Copies a buffer range into another inside the current batch (ordered with the dispatches);
 * `key` names it in a profile.
 */
function copyBuffer(
  src: GPUBuffer,
  srcOffset: number,
  dst: GPUBuffer,
  dstOffset: number,
  size: number,
  key: string,
): void {
  encodeCopy(key, (enc) => enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size));
}

/**
 * Encodes a copy into the current batch, outside any compute pass; under a profile it is recorded
 * under `key` (and bracketed by timestamps where the profile uses them), like a dispatch.
 */
function encodeCopy(key: string, encode: (enc: GPUCommandEncoder) => void): void {
  const enc = ensureBatch();
  endPass();
  if (profiling) profileCopy(profiling, key, encode);
  else encode(enc);
}

/**
 * Copies rows of a buffer into a texture inside the current batch (ordered with the dispatches):
 * `height` rows of `width` texels from `srcOffset` every `bytesPerRow` (a multiple of 256) to the
 * texture's rows `y`.. (matmul operands whose bytes already are the texture's layout).
 */
export function copyBufferToTexture(
  src: GPUBuffer,
  srcOffset: number,
  bytesPerRow: number,
  texture: GPUTexture,
  width: number,
  height: number,
  y: number,
): void {
  encodeCopy("copy/buffer-to-texture", (enc) =>
    enc.copyBufferToTexture(
      { buffer: src, offset: srcOffset, bytesPerRow },
      { texture, origin: { x: 0, y } },
      { width, height },
    ));
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
  copyBuffer(buffer, alignedStart, st, 0, alignedSize, "copy/readback");
  flush();
  stats.readbacks++;
  profiling?.recorded.push(mapWork(st, alignedSize));
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
  profiling?.recorded.push(uploadWork(buffer, offset, bytes.byteLength));
  const n4 = Math.floor(bytes.byteLength / 4) * 4;
  if (n4) gpu().device.queue.writeBuffer(buffer, offset, bytes, 0, n4);
  if (n4 < bytes.byteLength) {
    const tail = new Uint8Array(4);
    tail.set(bytes.subarray(n4));
    gpu().device.queue.writeBuffer(buffer, offset + n4, tail);
  }
}

/**
 * What the start-up probe found about this adapter's timestamp queries. Timestamps are trusted
 * only where they agree with the wall clock on a known kernel, never by adapter name.
 */
export interface TimestampProbe {
  /** Timestamps bracketing several passes agree with the wall clock of the same work within 2×. */
  bracket: boolean;
  /** Timestamps at the start and end of each pass add up to that wall clock within 2×. */
  perPass: boolean;
  /** The figures behind the verdicts, for reports. */
  detail: string;
  /**
   * fp32 rate of the probe's multiply-add kernel by the wall clock, GFLOP/s: a lower bound of the
   * adapter's peak (benchmarks derive their ceiling from it on hardware adapters).
   */
  fmaGflops: number;
}

let probe: Promise<TimestampProbe> | null = null;

/** Disagreement beyond this factor between timestamps and the wall clock makes the wall clock win. */
const MAX_CLOCK_RATIO = 2;
/** Flops per thread and loop iteration of the probe kernel: 4 chains × vec4 × multiply-add. */
const PROBE_FLOPS_PER_ITER = 32;
const PROBE_WORKGROUPS = 4096;
const PROBE_PASSES = 4;

const PROBE_UNIFORMS = declareUniforms({ iters: "u32", _pad0: "u32", _pad1: "u32", _pad2: "u32" });
const probeKernel: Kernel = {
  key: "timing/probe-fma",
  wgsl: () =>
    `${PROBE_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let b = vec4<f32>(0.999, 0.998, 0.997, 0.996);
  let c = vec4<f32>(1e-3, 2e-3, 3e-3, 4e-3);
  var a0 = vec4<f32>(f32(i) * 1e-7, 0.5, 0.25, 0.125);
  var a1 = a0 + c;
  var a2 = a1 + c;
  var a3 = a2 + c;
  for (var k = 0u; k < u.iters; k++) {
    a0 = fma(a0, b, c);
    a1 = fma(a1, b, c);
    a2 = fma(a2, b, c);
    a3 = fma(a3, b, c);
  }
  y[i] = a0 + a1 + a2 + a3;
}`,
};

/**
 * Writes a storage texture: on lavapipe, once any kernel has used one, per-pass timestamps stop
 * covering the dispatch (0.14 ms measured for 440 ms of work) while bracketing ones stay right, so
 * the probe must run after such a kernel to see what later measurements will see.
 */
const PROBE_TEXTURE_UNIFORMS = declareUniforms({
  v: "f32",
  _pad0: "u32",
  _pad1: "u32",
  _pad2: "u32",
});
const probeTextureKernel: Kernel = {
  key: "timing/probe-texture",
  wgsl: () =>
    `${PROBE_TEXTURE_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var t: texture_storage_2d<rgba32float, write>;
@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  textureStore(t, vec2<i32>(gid.xy), vec4<f32>(u.v));
}`,
};

/** Milliseconds of a `sync()` with nothing pending (median of 5): subtracted from wall times. */
async function emptySyncMs(): Promise<number> {
  await sync();
  const t: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    gpu().device.queue.submit([gpu().device.createCommandEncoder().finish()]);
    await sync();
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[2];
}

/**
 * Runs the probe kernel in {@link PROBE_PASSES} passes of one submit, long enough to take ≥ 20 ms
 * by the wall clock, with timestamps bracketing the passes and around each pass, and compares
 * both with the wall clock (an empty sync subtracted). Cached per device.
 */
export function timestampProbe(): Promise<TimestampProbe> {
  probe ??= runProbe();
  return probe;
}

async function runProbe(): Promise<TimestampProbe> {
  const g = gpu();
  const d = g.device;
  const threads = PROBE_WORKGROUPS * 64;
  const out = d.createBuffer({ size: threads * 16, usage: GPUBufferUsage.STORAGE });
  const pipeline = getPipeline(probeKernel);
  const nq = 2 * PROBE_PASSES + 2;
  const qs = g.features.timestamp ? d.createQuerySet({ type: "timestamp", count: nq }) : null;
  const resolve = d.createBuffer({
    size: nq * 8,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const st = d.createBuffer({
    size: nq * 8,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const tex = d.createTexture({
    size: [64, 64],
    format: "rgba32float",
    usage: GPUTextureUsage.STORAGE_BINDING,
  });
  {
    const tp = getPipeline(probeTextureKernel);
    const enc = d.createCommandEncoder();
    const pp = enc.beginComputePass();
    pp.setPipeline(tp);
    pp.setBindGroup(
      0,
      d.createBindGroup({
        layout: tp.getBindGroupLayout(0),
        entries: [
          {
            binding: 0,
            resource: { buffer: getUniform(PROBE_TEXTURE_UNIFORMS.pack({ v: 1 })) },
          },
          { binding: 1, resource: tex.createView() },
        ],
      }),
    );
    pp.dispatchWorkgroups(8, 8);
    pp.end();
    d.queue.submit([enc.finish()]);
  }
  const empty = await emptySyncMs();
  /** One submit of the probe passes; wall ms (empty sync subtracted) and the timestamps. */
  const run = async (iters: number, stamps: boolean) => {
    const ubuf = getUniform(PROBE_UNIFORMS.pack({ iters }));
    const bg = d.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: ubuf } },
        { binding: 1, resource: { buffer: out, size: threads * 16 } },
      ],
    });
    const enc = d.createCommandEncoder();
    const mark = (w: GPUComputePassTimestampWrites) =>
      enc.beginComputePass({ timestampWrites: w }).end();
    if (stamps && qs) mark({ querySet: qs, beginningOfPassWriteIndex: 0 });
    for (let p = 0; p < PROBE_PASSES; p++) {
      const pp = enc.beginComputePass(
        stamps && qs
          ? {
            timestampWrites: {
              querySet: qs,
              beginningOfPassWriteIndex: 2 + 2 * p,
              endOfPassWriteIndex: 3 + 2 * p,
            },
          }
          : undefined,
      );
      pp.setPipeline(pipeline);
      pp.setBindGroup(0, bg);
      pp.dispatchWorkgroups(PROBE_WORKGROUPS);
      pp.end();
    }
    if (stamps && qs) {
      mark({ querySet: qs, endOfPassWriteIndex: 1 });
      enc.resolveQuerySet(qs, 0, nq, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, st, 0, nq * 8);
    }
    await sync();
    const t0 = performance.now();
    d.queue.submit([enc.finish()]);
    await sync();
    const wall = performance.now() - t0 - empty;
    let t: bigint[] = [];
    if (stamps && qs) {
      await st.mapAsync(GPUMapMode.READ);
      t = [...new BigUint64Array(st.getMappedRange().slice(0))];
      st.unmap();
    }
    return { wall, t };
  };
  try {
    let iters = 64;
    let r = await run(iters, false);
    for (let k = 0; k < 8 && r.wall < 20; k++) {
      iters *= r.wall > 2 ? Math.min(8, Math.ceil(25 / r.wall)) : 8;
      r = await run(iters, false);
    }
    const flops = PROBE_PASSES * threads * iters * PROBE_FLOPS_PER_ITER;
    const fmaGflops = flops / Math.max(r.wall, 1e-3) / 1e6;
    if (!qs) {
      return {
        bracket: false,
        perPass: false,
        fmaGflops,
        detail: "no timestamp-query feature",
      };
    }
    const s = await run(iters, true);
    const bracketMs = Number(s.t[1] - s.t[0]) / 1e6;
    let perPassMs = 0;
    for (let p = 0; p < PROBE_PASSES; p++) {
      perPassMs += Number(s.t[3 + 2 * p] - s.t[2 + 2 * p]) / 1e6;
    }
    const agree = (x: number) =>
      x > 0 && x <= s.wall * MAX_CLOCK_RATIO && x >= s.wall / MAX_CLOCK_RATIO;
    return {
      bracket: agree(bracketMs),
      perPass: agree(perPassMs),
      fmaGflops,
      detail: `probe ${PROBE_PASSES} passes: wall ${s.wall.toFixed(2)} ms, bracketing timestamps ` +
        `${bracketMs.toFixed(2)} ms, per-pass timestamps ${perPassMs.toFixed(2)} ms`,
    };
  } finally {
    qs?.destroy();
    resolve.destroy();
    st.destroy();
    out.destroy();
    tex.destroy();
  }
}

/** Disposes what a timed function returned when it is disposable (a tensor, say). */
function disposeResult(r: unknown): void {
  const o = r as { dispose?: unknown } | null;
  if (o && typeof o === "object" && typeof o.dispose === "function") (o.dispose as () => void)();
}

/** One measurement by {@link timeGpu}. */
export interface GpuTime {
  /** Milliseconds per iteration by `method`. */
  ms: number;
  /**
   * "timestamp" where the probe found the adapter's timestamps reliable and they agree with the
   * wall clock of this very batch within 2×; otherwise "wall".
   */
  method: "timestamp" | "wall";
  /** Wall clock per iteration: batch start to sync end, an empty sync subtracted. */
  wallMs: number;
  /** Timestamps per iteration (null where not taken). */
  timestampMs: number | null;
  iterations: number;
  /** Why the wall clock was used ("" when timestamps were). */
  note: string;
}

/**
 * Which clock a batch's figure comes from (per iteration): the timestamps only where the start-up
 * probe (`pr`; null: no timestamp-query) found them reliable around batches and they agree with the
 * wall clock of the same batch within 2×; otherwise the wall clock, and `note` says why.
 */
export function pickClock(
  pr: Pick<TimestampProbe, "bracket" | "detail"> | null,
  timestampMs: number | null,
  wallMs: number,
): { ms: number; method: "timestamp" | "wall"; note: string } {
  const wall = (note: string) => ({ ms: wallMs, method: "wall" as const, note });
  if (!pr) return wall("wall clock: no timestamp-query");
  if (!pr.bracket) {
    return wall(`wall clock: this adapter's timestamps failed the start-up probe (${pr.detail})`);
  }
  const ts = timestampMs ?? NaN;
  if (!(ts > 0) || ts > wallMs * MAX_CLOCK_RATIO || ts < wallMs / MAX_CLOCK_RATIO) {
    const fmt = (x: number) => x.toPrecision(3);
    return wall(
      `wall clock: timestamps ${fmt(ts)} ms disagree with wall ${fmt(wallMs)} ms (> 2×)`,
    );
  }
  return { ms: ts, method: "timestamp", note: "" };
}

/**
 * Times `iterations` runs of `fn` (default 1) as one batch with one sync at the end: timestamps
 * written by empty passes before and after the batch (so every pass of every kernel is inside
 * them), checked against the wall clock of the same batch minus the cost of an empty sync. Where
 * they disagree by more than 2×, or the start-up probe ({@link timestampProbe}) found this
 * adapter's timestamps unreliable, the wall clock is the figure and `note` says why. Whatever
 * `fn` returns is disposed when it has a `dispose` method.
 */
export async function timeGpu(
  fn: () => unknown,
  opts: { iterations?: number } = {},
): Promise<GpuTime> {
  const g = gpu();
  const d = g.device;
  const iterations = Math.max(1, Math.floor(opts.iterations ?? 1));
  const pr = g.features.timestamp ? await timestampProbe() : null;
  const useTs = pr?.bracket ?? false;
  const empty = await emptySyncMs();
  const qs = useTs ? d.createQuerySet({ type: "timestamp", count: 2 }) : null;
  const resolve = d.createBuffer({
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const st = d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const mark = (w: GPUComputePassTimestampWrites, resolveIt: boolean) => {
    const e = d.createCommandEncoder();
    e.beginComputePass({ timestampWrites: w }).end();
    if (resolveIt) {
      e.resolveQuerySet(qs!, 0, 2, resolve, 0);
      e.copyBufferToBuffer(resolve, 0, st, 0, 16);
    }
    d.queue.submit([e.finish()]);
  };
  try {
    if (qs) mark({ querySet: qs, beginningOfPassWriteIndex: 0 }, false);
    const t0 = performance.now();
    for (let i = 0; i < iterations; i++) disposeResult(fn());
    flush();
    if (qs) mark({ querySet: qs, endOfPassWriteIndex: 1 }, true);
    await sync();
    const wallMs = Math.max(0, performance.now() - t0 - empty) / iterations;
    let timestampMs: number | null = null;
    if (qs) {
      await st.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(st.getMappedRange().slice(0));
      st.unmap();
      timestampMs = Number(t[1] - t[0]) / 1e6 / iterations;
    }
    return { ...pickClock(pr, timestampMs, wallMs), wallMs, timestampMs, iterations };
  } finally {
    qs?.destroy();
    resolve.destroy();
    st.destroy();
  }
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

/**
 * What a profiled pass did on the GPU besides CPU-side encoding, in order, for a replay: a
 * dispatch, a copy encoded in the batch (`copy/...`: operands copied into textures, aliased
 * operands, readbacks into a staging buffer), a `queue.writeBuffer` upload, or the mapping of a
 * readback's staging buffer. `stamped`: timed by per-pass timestamps in a timestamp profile (the
 * others are always replayed by the wall clock: uploads and maps are not inside any pass).
 */
interface RecordedWork {
  key: string;
  kind: ProfileKind;
  stamped: boolean;
  /** Encodes the work alone into a fresh encoder. */
  encode?: (enc: GPUCommandEncoder) => void;
  /** Runs on the queue before that encoder is submitted (an upload). */
  beforeSubmit?: () => void;
  /** Runs once the submit is done (a map), still inside the timed span. */
  afterSubmit?: () => Promise<void>;
}

/** What a profile row measured. */
export type ProfileKind = "kernel" | "copy" | "upload" | "readback";

/** One dispatch as a profile records it: its pipeline, bind group and grid. */
interface DispatchCall {
  pipeline: GPUComputePipeline;
  bg: GPUBindGroup;
  x: number;
  y: number;
  z: number;
}

/** Encodes a dispatch alone in its own compute pass (timestamped where `timestampWrites` is given). */
function encodeDispatchPass(
  enc: GPUCommandEncoder,
  d: DispatchCall,
  timestampWrites?: GPUComputePassTimestampWrites,
): void {
  const pp = enc.beginComputePass(timestampWrites ? { timestampWrites } : undefined);
  pp.setPipeline(d.pipeline);
  pp.setBindGroup(0, d.bg);
  pp.dispatchWorkgroups(d.x, d.y, d.z);
  pp.end();
}

function dispatchWork(key: string, d: DispatchCall): RecordedWork {
  return { key, kind: "kernel", stamped: true, encode: (enc) => encodeDispatchPass(enc, d) };
}

/** The largest zero-filled upload a replay has needed (uploads are replayed with zeros). */
let replayZeros = new Uint8Array(0);

/**
 * An upload, replayed as a write of as many zero bytes into the same range (the data itself is not
 * kept: a pass may upload hundreds of MB; the replay clobbers buffers anyway, see profileGpu).
 */
function uploadWork(buffer: GPUBuffer, offset: number, bytes: number): RecordedWork {
  const size = Math.ceil(bytes / 4) * 4;
  return {
    key: "upload/write-buffer",
    kind: "upload",
    stamped: false,
    beforeSubmit: () => {
      if (replayZeros.byteLength < size) replayZeros = new Uint8Array(size);
      gpu().device.queue.writeBuffer(buffer, offset, replayZeros, 0, size);
    },
  };
}

/** Mapping a readback's staging buffer and copying the bytes out (what readBuffer does after the copy). */
function mapWork(st: GPUBuffer, size: number): RecordedWork {
  return {
    key: "readback/map",
    kind: "readback",
    stamped: false,
    afterSubmit: async () => {
      await st.mapAsync(GPUMapMode.READ, 0, size);
      st.getMappedRange(0, size).slice(0);
      st.unmap();
    },
  };
}

interface ProfileState {
  /** "timestamp": each dispatch in its own timestamped pass; "wall": record, then replay alone. */
  mode: "timestamp" | "wall";
  querySet: GPUQuerySet | null;
  resolve: GPUBuffer | null;
  /** Key and kind of each timestamp pair written in the current batch. */
  keys: { key: string; kind: ProfileKind }[];
  readbacks: Promise<void>[];
  totals: Map<string, { ms: number; cpuMs: number; count: number; kind: ProfileKind }>;
  recorded: RecordedWork[];
  /** Whether replays also take this process's CPU time (software adapters: see cpu_time.ts). */
  cpu: boolean;
}
const PROFILE_PAIRS = 512;

function profileDispatch(p: ProfileState, key: string, d: DispatchCall): void {
  endPass();
  const i = p.keys.length;
  encodeDispatchPass(encoder!, d, {
    querySet: p.querySet!,
    beginningOfPassWriteIndex: 2 * i,
    endOfPassWriteIndex: 2 * i + 1,
  });
  p.keys.push({ key, kind: "kernel" });
  p.recorded.push(dispatchWork(key, d));
  stats.dispatches++;
  if (p.keys.length >= PROFILE_PAIRS) flush();
}

/**
 * Encodes a copy under a profile: recorded for a replay; in a timestamp profile, bracketed by two
 * empty passes whose timestamps mark its start and end (copies cannot carry timestamps themselves).
 */
function profileCopy(
  p: ProfileState,
  key: string,
  encode: (enc: GPUCommandEncoder) => void,
): void {
  p.recorded.push({ key, kind: "copy", stamped: true, encode });
  if (p.mode !== "timestamp") {
    encode(encoder!);
    return;
  }
  const i = p.keys.length;
  const mark = (w: Omit<GPUComputePassTimestampWrites, "querySet">) =>
    encoder!.beginComputePass({ timestampWrites: { querySet: p.querySet!, ...w } }).end();
  mark({ beginningOfPassWriteIndex: 2 * i });
  encode(encoder!);
  mark({ endOfPassWriteIndex: 2 * i + 1 });
  p.keys.push({ key, kind: "copy" });
  if (p.keys.length >= PROFILE_PAIRS) flush();
}

/** Encodes the resolve of this batch's timestamps; the returned call maps them after the submit. */
function profileResolve(p: ProfileState, enc: GPUCommandEncoder): (() => void) | null {
  const n = p.keys.length;
  if (!n || p.mode !== "timestamp") return null;
  const st = gpu().device.createBuffer({
    size: n * 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  enc.resolveQuerySet(p.querySet!, 0, 2 * n, p.resolve!, 0);
  enc.copyBufferToBuffer(p.resolve!, 0, st, 0, n * 16);
  const keys = p.keys.splice(0);
  return () =>
    void p.readbacks.push(
      st.mapAsync(GPUMapMode.READ).then(() => {
        const t = new BigUint64Array(st.getMappedRange());
        keys.forEach((k, j) =>
          addTime(p, k.key, k.kind, Number(t[2 * j + 1] - t[2 * j]) / 1e6, NaN)
        );
        st.destroy();
      }),
    );
}

function addTime(
  p: ProfileState,
  key: string,
  kind: ProfileKind,
  ms: number,
  cpuMs: number,
): void {
  const e = p.totals.get(key) ?? { ms: 0, cpuMs: 0, count: 0, kind };
  e.ms += ms;
  e.cpuMs += cpuMs;
  e.count++;
  p.totals.set(key, e);
}

/**
 * Replays each recorded piece of work that `which` selects alone (its own submit, synchronised, an
 * empty sync subtracted), by the wall clock and, where `p.cpu`, by this process's CPU time too.
 * Buffers and textures the pass destroyed were kept alive for this (see {@link profileGpu}).
 */
async function replayByWallClock(
  p: ProfileState,
  which: (r: RecordedWork) => boolean,
): Promise<string | null> {
  const d = gpu().device;
  const cpu = p.cpu ? threadCpuMs : () => NaN;
  const empty = await emptySyncMs();
  // The CPU an empty submit and sync costs, the two readings included (median of 5).
  const emptyCpu: number[] = [];
  for (let i = 0; i < 5; i++) {
    const c0 = cpu();
    d.queue.submit([d.createCommandEncoder().finish()]);
    await d.queue.onSubmittedWorkDone();
    emptyCpu.push(cpu() - c0);
  }
  const cpuBase = emptyCpu.sort((a, b) => a - b)[2];
  d.pushErrorScope("validation");
  for (const r of p.recorded) {
    if (!which(r)) continue;
    const enc = d.createCommandEncoder();
    r.encode?.(enc);
    const cb = enc.finish();
    const c0 = cpu();
    const t0 = performance.now();
    r.beforeSubmit?.();
    d.queue.submit([cb]);
    await d.queue.onSubmittedWorkDone();
    await r.afterSubmit?.();
    const t1 = performance.now();
    addTime(p, r.key, r.kind, Math.max(0, t1 - t0 - empty), Math.max(0, cpu() - c0 - cpuBase));
  }
  const err = await d.popErrorScope();
  return err ? err.message : null;
}

/** Time of one profile row: a kernel key, or a copy, upload or readback key. */
export interface KernelTime {
  /** The kernel key, or `copy/...`, `upload/write-buffer`, `readback/map`. */
  kernel: string;
  kind: ProfileKind;
  ms: number;
  /** This process's CPU time in the replays (software adapters; NaN where not taken). */
  cpuMs: number;
  count: number;
}

/** What {@link profileGpu} measured. */
export interface GpuProfile {
  /** Milliseconds per key (kernels, copies, uploads, readbacks), largest first. */
  kernels: KernelTime[];
  /**
   * How dispatches and in-batch copies were timed: "timestamp": per-pass timestamps; "wall": each
   * replayed alone by the wall clock. Uploads and readback maps are replayed by the wall clock
   * either way.
   */
  method: "timestamp" | "wall";
  /** Wall clock of the profiled pass (`fn` and its final sync). */
  wallMs: number;
  /** Sum of the kernel (dispatch) times. */
  kernelMs: number;
  /** Sum of the copy, upload and readback times. */
  copyMs: number;
  /** Kernel and copy times together add up to the wall time within 20 %. */
  accounted: boolean;
  /**
   * On a software adapter, where the GPU's work is this process's CPU time (engine/cpu_time.ts):
   * the CPU time of the pass, and the replays' CPU time of its kernels and of its copies — steadier
   * than the wall clock on a loaded machine; the pass's excess over the replays is host work
   * (the ops' code, encoding) and the rasteriser's own overhead. Null elsewhere.
   */
  cpu: { passMs: number; kernelMs: number; copyMs: number } | null;
  /** How the method was chosen and what the measured times leave out. */
  note: string;
}

/**
 * Whether a profile's measured times (`measuredMs`: kernels, copies, uploads and readbacks) add up
 * to the wall time of the pass within 20 % (and the replay, if any, ran without error), and the
 * sentence that says so or says how much they cannot account for.
 */
export function accountFor(
  measuredMs: number,
  wallMs: number,
  replayError: string | null = null,
): { accounted: boolean; rest: string } {
  const accounted = Math.abs(measuredMs - wallMs) <= 0.2 * wallMs && !replayError;
  const gap = wallMs - measuredMs;
  const rest = accounted
    ? "kernel and copy times add up to the wall time within 20 %"
    : gap > 0
    ? `cannot account for ${(gap / 1000).toFixed(2)} s (${
      (100 * gap / wallMs).toFixed(0)
    } %) of the wall time: host work the GPU waited for (the ops' own code, encoding, bind ` +
      `groups, submits) is not GPU time`
    : gap < 0
    ? `kernel and copy times exceed the wall time by ${(-gap / 1000).toFixed(2)} s (${
      (-100 * gap / wallMs).toFixed(0)
    } %): work overlaps in the pass, or each replay pays its own launch`
    : "the replay failed";
  return { accounted, rest };
}

/**
 * Runs `fn` and returns milliseconds per kernel key, and per kind of non-kernel GPU work: copies
 * encoded in the batch (`copy/buffer-to-texture`: matmul operands staged by a copy;
 * `copy/buffer-to-buffer (aliased operand)`; `copy/readback`: into a staging buffer), uploads
 * (`upload/write-buffer`) and readback maps (`readback/map`). Where the start-up probe found
 * per-pass timestamps reliable, every dispatch runs in its own timestamped pass and every copy
 * between two timestamping empty passes; otherwise the work runs as usual, is recorded, and each
 * dispatch and copy is replayed alone afterwards between two syncs (an empty sync subtracted); the
 * same replay is the fallback when per-pass timestamps disagree with the wall clock of the pass by
 * more than 2×. Uploads and readback maps are replayed that way in both cases (an upload as zeros
 * into the same range). Buffers and textures destroyed during the pass are kept alive until the
 * profile ends (so a profiled pass holds more memory), and the replay rewrites them: what the pass
 * computed is not to be used afterwards. The measured times are compared with the wall clock of the
 * pass: within 20 % they account for it, else `note` says how much they cannot account for. For
 * finding hot spots only. `forceTimestamps` (for tests): per-pass timestamps wherever the adapter
 * has them, even where the probe found them unreliable (the fallback above still applies).
 */
export async function profileGpu(
  fn: () => Promise<void> | void,
  opts: { forceTimestamps?: boolean } = {},
): Promise<GpuProfile> {
  const g = gpu();
  const pr = g.features.timestamp ? await timestampProbe() : null;
  const mode = pr?.perPass || (pr && opts.forceTimestamps) ? "timestamp" : "wall";
  await sync();
  const p: ProfileState = {
    mode,
    querySet: mode === "timestamp"
      ? g.device.createQuerySet({ type: "timestamp", count: 2 * PROFILE_PAIRS })
      : null,
    resolve: mode === "timestamp"
      ? g.device.createBuffer({
        size: PROFILE_PAIRS * 16,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      })
      : null,
    keys: [],
    readbacks: [],
    totals: new Map(),
    recorded: [],
    cpu: g.isSoftware && mode === "wall" && threadCpuMs() >= 0,
  };
  // A wall-clock replay needs every resource the pass used: defer destroys until it is done.
  const deferred: { destroy(): void }[] = [];
  const bufDestroy = GPUBuffer.prototype.destroy, texDestroy = GPUTexture.prototype.destroy;
  {
    GPUBuffer.prototype.destroy = function (this: GPUBuffer) {
      deferred.push({ destroy: () => bufDestroy.call(this) });
    };
    GPUTexture.prototype.destroy = function (this: GPUTexture) {
      deferred.push({ destroy: () => texDestroy.call(this) });
    };
  }
  let wallMs: number;
  let passCpuMs = NaN;
  let replayError: string | null = null;
  let method: "timestamp" | "wall" = mode;
  let fallback = "";
  try {
    profiling = p;
    const c0 = threadCpuMs();
    const t0 = performance.now();
    try {
      await fn();
      flush();
    } finally {
      profiling = null;
    }
    await Promise.all(p.readbacks);
    await sync();
    wallMs = performance.now() - t0;
    passCpuMs = threadCpuMs() - c0;
    const stamped = [...p.totals.values()].reduce((s, e) => s + e.ms, 0);
    if (
      mode === "timestamp" &&
      (stamped < wallMs / MAX_CLOCK_RATIO || stamped > wallMs * MAX_CLOCK_RATIO)
    ) {
      // The probe passed but this pass's stamps disagree with its wall clock: do not trust them.
      fallback = `per-pass timestamps summed ${(stamped / 1000).toFixed(3)} s against a wall of ${
        (wallMs / 1000).toFixed(3)
      } s (> 2×), so `;
      p.totals.clear();
      method = "wall";
      p.cpu = g.isSoftware && threadCpuMs() >= 0;
    }
    replayError = await replayByWallClock(p, (r) => method === "wall" || !r.stamped);
  } finally {
    GPUBuffer.prototype.destroy = bufDestroy;
    GPUTexture.prototype.destroy = texDestroy;
    for (const r of deferred) r.destroy();
    p.querySet?.destroy();
    p.resolve?.destroy();
  }
  const kernels = [...p.totals].map(([kernel, e]) => ({ kernel, ...e })).sort((a, b) =>
    b.ms - a.ms
  );
  const kernelMs = kernels.reduce((s, k) => s + (k.kind === "kernel" ? k.ms : 0), 0);
  const copyMs = kernels.reduce((s, k) => s + (k.kind === "kernel" ? 0 : k.ms), 0);
  const { accounted, rest } = accountFor(kernelMs + copyMs, wallMs, replayError);
  const sumCpu = (copy: boolean) =>
    kernels.reduce((s, k) => s + ((k.kind !== "kernel") === copy ? k.cpuMs : 0), 0);
  const cpu = p.cpu && !replayError
    ? { passMs: passCpuMs, kernelMs: sumCpu(false), copyMs: sumCpu(true) }
    : null;
  const transfers = "uploads and readback maps replayed alone by the wall clock";
  const why = method === "timestamp"
    ? `per-pass timestamps for dispatches and copies (${pr!.detail}); ${transfers}`
    : `${fallback}each dispatch, copy, upload and readback map replayed alone by the wall ` +
      `clock, an empty sync subtracted (${pr ? pr.detail : "no timestamp-query"})`;
  return {
    kernels,
    method,
    wallMs,
    kernelMs,
    copyMs,
    accounted,
    cpu,
    note: `${why}; ${rest}${
      cpu
        ? `; by this process's CPU time (software adapter) kernels and copies are ${
          (100 * (cpu.kernelMs + cpu.copyMs) / cpu.passMs).toFixed(0)
        } % of the pass's`
        : ""
    }${replayError ? `; replay failed: ${replayError}` : ""}`,
  };
}
