/**
 * The one WebGPU device the engine runs on: adapter selection, the adapter's real limits (not the
 * spec defaults), optional features, and the failure modes that must never pass silently
 * (no WebGPU, no adapter, uncaptured errors, device loss).
 */

/** What the engine knows about its device. */
export interface Gpu {
  device: GPUDevice;
  adapterName: string;
  /** The adapter's identity as WebGPU reports it (keys per-adapter caches: engine/autotune.ts). */
  adapterInfo: { vendor: string; architecture: string; device: string; description: string };
  /** "vulkan", "gl" or "unknown": Deno does not expose it, so it is inferred (see `backendOf`). */
  backend: string;
  isFallback: boolean;
  features: { f16: boolean; subgroups: boolean; timestamp: boolean };
  limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
    maxStorageBuffersPerShaderStage: number;
    minStorageBufferOffsetAlignment: number;
    maxTextureDimension2D: number;
  };
  /** True for CPU rasterisers (llvmpipe/lavapipe, SwiftShader): kernels pick register blocking. */
  isSoftware: boolean;
}

let current: Gpu | null = null;
let pending: Promise<Gpu> | null = null;
let lostReason: string | null = null;
const uncaptured: string[] = [];

const INSTALL_HINT = "install Mesa's software drivers (Debian/Ubuntu: `apt-get install " +
  "mesa-vulkan-drivers`, or `libgl1-mesa-dri` for the GL backend) or run on a machine with a GPU";

/** Infers the backend from the adapter (Mesa's Vulkan vendor id is 0x10005). */
function backendOf(info: GPUAdapterInfo): string {
  const forced = Deno.env.get("DENO_WEBGPU_BACKEND");
  if (forced) return forced;
  const vendor = Number(info.vendor);
  if (vendor === 0x10005 || /lavapipe|vulkan/i.test(info.description)) return "vulkan";
  if (/llvmpipe|mesa|opengl/i.test(info.description) && vendor === 0) return "gl";
  return "unknown";
}

const newDeviceHooks: (() => void)[] = [];

/**
 * Registers `fn` to run whenever a new device is created (after a device loss, caches holding
 * objects of the old device — pipelines, bind groups, pooled buffers — must be dropped).
 */
export function onNewDevice(fn: () => void): void {
  newDeviceHooks.push(fn);
}

/** Options for {@link initGpu}. */
export interface InitGpuOptions {
  /**
   * The `navigator.gpu` to request the adapter from (tests inject fakes). When the key is present
   * the cached device is bypassed; a device created this way becomes the engine's device.
   */
  gpu?: GPU | null;
}

/** Initialises (once; again after a device loss) and returns the engine's device. */
export function initGpu(opts: InitGpuOptions = {}): Promise<Gpu> {
  if ("gpu" in opts) return create(opts.gpu);
  if (current) return Promise.resolve(current);
  pending ??= create(defaultNavigatorGpu()).catch((e) => {
    pending = null;
    throw e;
  });
  return pending;
}

function defaultNavigatorGpu(): GPU | undefined {
  return typeof navigator === "undefined" || !("gpu" in navigator) ? undefined : navigator.gpu;
}

async function create(navigatorGpu: GPU | null | undefined): Promise<Gpu> {
  if (!navigatorGpu) {
    throw new Error(
      `WebGPU is not available in this runtime (navigator.gpu is missing); ${INSTALL_HINT}`,
    );
  }
  const adapter = await navigatorGpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(`no WebGPU adapter was found; ${INSTALL_HINT}`);
  const want: GPUFeatureName[] = ["shader-f16", "timestamp-query", "subgroups" as GPUFeatureName];
  const requiredFeatures = want.filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxBufferSize: l.maxBufferSize,
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    maxComputeWorkgroupSizeZ: l.maxComputeWorkgroupSizeZ,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    maxTextureDimension2D: l.maxTextureDimension2D,
  };
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  device.lost.then((info) => {
    if (current && current.device !== device) return; // an older device, already replaced
    lostReason = `${info.reason}: ${info.message}`;
    current = null;
    pending = null;
  });
  device.addEventListener("uncapturederror", (ev) => {
    uncaptured.push((ev as GPUUncapturedErrorEvent).error.message);
  });
  const info = adapter.info;
  const name = info.description || `${info.vendor} ${info.device}`.trim();
  current = {
    device,
    adapterName: name,
    adapterInfo: {
      vendor: info.vendor ?? "",
      architecture: info.architecture ?? "",
      device: info.device ?? "",
      description: info.description ?? "",
    },
    backend: backendOf(info),
    isFallback: (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
    features: {
      f16: device.features.has("shader-f16"),
      subgroups: device.features.has("subgroups" as GPUFeatureName),
      timestamp: device.features.has("timestamp-query"),
    },
    limits: {
      maxBufferSize: device.limits.maxBufferSize,
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
      minStorageBufferOffsetAlignment: device.limits.minStorageBufferOffsetAlignment,
      maxTextureDimension2D: device.limits.maxTextureDimension2D,
    },
    isSoftware: /llvmpipe|lavapipe|swiftshader|software/i.test(name) ||
      ((info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false),
  };
  lostReason = null;
  uncaptured.length = 0;
  for (const fn of newDeviceHooks) fn();
  return current;
}

/** The initialised device; throws if `initGpu()` has not completed or the device was lost. */
export function gpu(): Gpu {
  if (current) return current;
  if (lostReason) throw new Error(`the WebGPU device was lost (${lostReason}); re-run initGpu()`);
  throw new Error("the engine is not initialised: await initGpu() first");
}

/** Throws (once) any error the device reported outside an error scope. */
export function throwUncaptured(): void {
  if (lostReason) throw new Error(`the WebGPU device was lost (${lostReason})`);
  if (uncaptured.length) {
    const msgs = uncaptured.splice(0);
    throw new Error(`WebGPU reported an error: ${msgs.join("; ")}`);
  }
}

/** A one-line description for logs and benchmark tables. */
export function describeGpu(g: Gpu = gpu()): string {
  const f = Object.entries(g.features).filter(([, v]) => v).map(([k]) => k).join(",") || "none";
  return `${g.adapterName} [${g.backend}${g.isFallback ? ", fallback" : ""}] features: ${f}; ` +
    `max binding ${(g.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`;
}
