/**
 * Modules with PyTorch state-dict names. Parameters, buffers and children are registered
 * explicitly (`this.param("weight", t)`, `this.buffer("running_mean", t)`,
 * `this.child("conv1", m)`), so a key such as `layer1.0.conv1.weight` never depends on JavaScript
 * property order, and the order of `stateDict()` is PyTorch's: a module's parameters, then its
 * buffers, then each child's entries in registration order.
 *
 * Registered tensors are removed from any enclosing `tidy` scope: the module owns them until
 * `dispose()`.
 */
import { type DType, numel, type Tensor, tensor } from "../tensor.ts";
import { flush, writeBuffer } from "../dispatch.ts";
import { keep } from "../scope.ts";
import { noGrad } from "../autograd.ts";
import { writeInto } from "../ops/view.ts";
import { toFloat32, toInt32 } from "../io/safetensors.ts";
import type { HostTensor } from "../io/safetensors.ts";

/** Host data for {@link Module.loadStateDict}: a safetensors/.pth `HostTensor`, or plain typed data. */
export type StateEntry = HostTensor | {
  shape: readonly number[];
  data: Float32Array | Int32Array | Uint32Array | Float64Array | ArrayLike<number>;
  dtype?: undefined;
};

/** Options for {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Throw on missing or unexpected keys (mis-shaped keys always throw). Default true. */
  strict?: boolean;
  /** Named in the error (the checkpoint's path). */
  file?: string;
  /** Missing keys that are acceptable even when strict (e.g. buffers the model recomputes). */
  allowMissing?: (key: string) => boolean;
  /** Unexpected keys that are acceptable even when strict. */
  allowUnexpected?: (key: string) => boolean;
}

/** What {@link Module.loadStateDict} did. */
export interface LoadStateDictResult {
  loaded: string[];
  missing: string[];
  unexpected: string[];
}

const MAX_LISTED = 40;

/** Shapes match, treating a 0-d tensor and a one-element 1-d tensor as the same (torch does). */
function shapesMatch(got: readonly number[], want: readonly number[]): boolean {
  if (got.length === want.length && got.every((d, i) => d === want[i])) return true;
  return got.length <= 1 && want.length <= 1 && numel(got) === 1 && numel(want) === 1;
}

function listed(title: string, items: string[]): string {
  const shown = items.slice(0, MAX_LISTED).map((s) => `  ${s}`);
  if (items.length > MAX_LISTED) shown.push(`  ... and ${items.length - MAX_LISTED} more`);
  return `${title} (${items.length}):\n${shown.join("\n")}`;
}

/** Converts host data to the typed array a tensor of `dtype` uploads. */
function hostData(
  key: string,
  e: StateEntry,
  dtype: DType,
): Float32Array | Int32Array | Uint32Array {
  if (e.dtype !== undefined) {
    if (dtype === "f32" || dtype === "f16") return toFloat32(e);
    if (dtype === "i32") return toInt32(e, key);
    return Uint32Array.from(toInt32(e, key));
  }
  const d = e.data;
  if (dtype === "i32") {
    return d instanceof Int32Array ? d : Int32Array.from(d as ArrayLike<number>, Math.trunc);
  }
  if (dtype === "u32") {
    return d instanceof Uint32Array ? d : Uint32Array.from(d as ArrayLike<number>, Math.trunc);
  }
  return d instanceof Float32Array ? d : Float32Array.from(d as ArrayLike<number>);
}

/** Writes host values into an existing tensor (ordered after every dispatch encoded so far). */
export function uploadInto(t: Tensor, data: Float32Array | Int32Array | Uint32Array): void {
  t.assertAlive();
  if (data.length !== t.size) {
    throw new Error(`uploadInto: ${data.length} values for a tensor of shape [${t.shape}]`);
  }
  if (t.size === 0) return;
  if (t.isContiguous() && t.dtype !== "f16") {
    // queue.writeBuffer runs before work encoded but not yet submitted: submit that first.
    flush();
    writeBuffer(t.storage.buffer, t.storage.offset + t.offset * 4, data);
    return;
  }
  const src = tensor(data, t.shape, t.dtype === "f16" ? "f32" : t.dtype);
  noGrad(() => writeInto(t, src));
  src.dispose();
}

export class Module {
  /** Training mode (dropout-like layers, BatchNorm statistics); set with `train()`/`eval()`. */
  training = true;
  private readonly _params = new Map<string, Tensor>();
  private readonly _buffers = new Map<string, Tensor>();
  private readonly _children = new Map<string, Module>();

  private checkName(name: string): void {
    if (!name || name.includes(".")) {
      throw new Error(`${this.constructor.name}: invalid member name "${name}"`);
    }
    if (this._params.has(name) || this._buffers.has(name) || this._children.has(name)) {
      throw new Error(`${this.constructor.name}: "${name}" is already registered`);
    }
  }

  /** Registers a trainable parameter (sets requiresGrad) and returns it. */
  protected param(name: string, t: Tensor): Tensor {
    this.checkName(name);
    if (t.node) {
      throw new Error(
        `${this.constructor.name}.param("${name}"): a parameter must be a leaf tensor`,
      );
    }
    keep(t);
    t.requiresGrad = true;
    this._params.set(name, t);
    return t;
  }

  /** Registers non-trainable state saved in the state dict (BatchNorm running statistics). */
  protected buffer(name: string, t: Tensor): Tensor {
    this.checkName(name);
    keep(t);
    this._buffers.set(name, t);
    return t;
  }

  /** Registers a submodule and returns it. */
  protected child<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    if (m === (this as Module)) {
      throw new Error(`${this.constructor.name}: a module cannot be its own child`);
    }
    this._children.set(name, m);
    return m;
  }

  /** Direct children in registration order. */
  namedChildren(): [string, Module][] {
    return [...this._children];
  }

  /** This module ("" or `prefix`) and every descendant, depth first, with dotted names. */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this._children) out.push(...c.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Every parameter with its state-dict name. */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [p, m] of this.namedModules()) {
      for (const [n, t] of m._params) out.push([p ? `${p}.${n}` : n, t]);
    }
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Every buffer with its state-dict name. */
  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [p, m] of this.namedModules()) {
      for (const [n, t] of m._buffers) out.push([p ? `${p}.${n}` : n, t]);
    }
    return out;
  }

  /** Parameters and buffers by state-dict name, in PyTorch's order (the module's tensors, not copies). */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    const visit = (m: Module, prefix: string) => {
      for (const [n, t] of m._params) out.set(prefix + n, t);
      for (const [n, t] of m._buffers) out.set(prefix + n, t);
      for (const [n, c] of m._children) visit(c, `${prefix}${n}.`);
    };
    visit(this, "");
    return out;
  }

  /** The registered tensor named `key` (dotted), or throws. */
  private owner(key: string): { m: Module; name: string; kind: "param" | "buffer"; t: Tensor } {
    const parts = key.split(".");
    const m = parts.slice(0, -1).reduce<Module>((at, p) => {
      const c = at._children.get(p);
      if (!c) {
        throw new Error(`${this.constructor.name}: no submodule "${p}" on the way to "${key}"`);
      }
      return c;
    }, this);
    const name = parts[parts.length - 1];
    const p = m._params.get(name);
    if (p) return { m, name, kind: "param", t: p };
    const b = m._buffers.get(name);
    if (b) return { m, name, kind: "buffer", t: b };
    throw new Error(`${this.constructor.name}: no parameter or buffer named "${key}"`);
  }

  /**
   * Copies `value` into the parameter or buffer `key` (same shape) on the GPU and disposes
   * `value`; fields holding the tensor stay valid because the tensor object is unchanged.
   */
  assignParameter(key: string, value: Tensor): void {
    const { t } = this.owner(key);
    if (!shapesMatch(value.shape, t.shape) || value.size !== t.size) {
      throw new Error(
        `assignParameter("${key}"): shape [${value.shape}] does not match [${t.shape}]`,
      );
    }
    noGrad(() => writeInto(t, value));
    value.dispose();
  }

  /**
   * Uploads a host state dict into the existing tensors. Throws one error naming the file and
   * listing every missing, unexpected and mis-shaped key (missing/unexpected only when strict).
   */
  loadStateDict(
    map: Map<string, StateEntry>,
    opts: LoadStateDictOptions = {},
  ): LoadStateDictResult {
    const strict = opts.strict ?? true;
    const file = opts.file ?? "state dict";
    const own = this.stateDict();
    const missing: string[] = [];
    const misshaped: string[] = [];
    const unexpected: string[] = [];
    const loaded: string[] = [];
    for (const [k, t] of own) {
      const e = map.get(k);
      if (!e) {
        if (!opts.allowMissing?.(k)) missing.push(k);
      } else if (!shapesMatch(e.shape, t.shape)) {
        misshaped.push(`${k}: got [${e.shape.join(", ")}], expected [${t.shape.join(", ")}]`);
      } else if (e.data.length !== t.size) {
        misshaped.push(`${k}: ${e.data.length} values for shape [${e.shape.join(", ")}]`);
      }
    }
    for (const k of map.keys()) if (!own.has(k) && !opts.allowUnexpected?.(k)) unexpected.push(k);
    if (misshaped.length || (strict && (missing.length || unexpected.length))) {
      const parts = [`${file}: state dict does not match ${this.constructor.name}`];
      if (strict && missing.length) parts.push(listed("missing keys", missing));
      if (strict && unexpected.length) parts.push(listed("unexpected keys", unexpected));
      if (misshaped.length) parts.push(listed("mis-shaped keys", misshaped));
      throw new Error(parts.join("\n"));
    }
    const converted: [Tensor, Float32Array | Int32Array | Uint32Array][] = [];
    for (const [k, t] of own) {
      const e = map.get(k);
      if (!e) continue;
      converted.push([t, hostData(`${file}: ${k}`, e, t.dtype)]);
      loaded.push(k);
    }
    for (const [t, d] of converted) uploadInto(t, d);
    return { loaded, missing, unexpected };
  }

  /** Sets training mode on this module and every descendant. */
  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Drops (disposes) every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Freezes (false) or unfreezes this subtree's parameters; frozen ones get no `.grad`. */
  requiresGrad(on = true): this {
    for (const p of this.parameters()) {
      p.requiresGrad = on;
      if (!on) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
    return this;
  }

  /** Number of trainable elements (parameters with requiresGrad). */
  numParameters(trainableOnly = false): number {
    return this.parameters().filter((p) => !trainableOnly || p.requiresGrad).reduce(
      (a, p) => a + p.size,
      0,
    );
  }

  /** Disposes every parameter (and its gradient) and buffer of the subtree. */
  dispose(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
      p.dispose();
    }
    for (const [, b] of this.namedBuffers()) b.dispose();
  }
}
