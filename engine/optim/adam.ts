/**
 * Adam and AdamW with PyTorch's semantics (torch.optim.Adam / AdamW, amsgrad off):
 *   Adam:  g ← g + wd·p (L2 decay added to the gradient)
 *   AdamW: p ← p·(1 − lr·wd) (decoupled decay)
 *   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε)   (ε added after the square root)
 * Each step is one fused dispatch per parameter with a gradient, and no readback. Parameters
 * without `.grad` are skipped (their step counter does not advance), as in PyTorch.
 */
import { dispatch, grid1d } from "../dispatch.ts";
import { disposeCopy, empty, type Tensor, tensor } from "../tensor.ts";
import { keep } from "../scope.ts";
import { noGrad } from "../autograd.ts";
import { fill } from "../ops/elementwise.ts";
import { dense, writeInto } from "../ops/view.ts";
import { type StateEntry, uploadInto } from "../nn/module.ts";
import { toFloat32, toInt32 } from "../io/safetensors.ts";
import { ADAM_UNIFORMS, adamKernel, OPTIM_WORKGROUP } from "../../kernels/adam.ts";

/** Hyper-parameters of a parameter group. */
export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** A parameter group as the optimiser holds it; schedulers change `lr`. */
export interface ParamGroup {
  params: Tensor[];
  lr: number;
  /** The lr the group started with (schedulers' `base_lr`). */
  initialLr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

/** Per-parameter state: step count and the two moment estimates. */
export interface AdamState {
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
}

/** What an optimiser exposes to schedulers. */
export interface Optimizer {
  paramGroups: ParamGroup[];
}

function checkHyper(name: string, o: Required<AdamOptions>): void {
  const [b1, b2] = o.betas;
  if (!(o.lr >= 0)) throw new Error(`${name}: invalid learning rate ${o.lr}`);
  if (!(o.eps >= 0)) throw new Error(`${name}: invalid eps ${o.eps}`);
  if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1)) {
    throw new Error(`${name}: invalid betas [${o.betas}]`);
  }
  if (!(o.weightDecay >= 0)) throw new Error(`${name}: invalid weight decay ${o.weightDecay}`);
}

export class Adam implements Optimizer {
  readonly paramGroups: ParamGroup[];
  readonly state = new Map<Tensor, AdamState>();
  protected readonly decoupled: boolean = false;
  protected readonly name: string = "Adam";

  /**
   * `params`: a list of tensors, or groups `{params, ...overrides}` with their own
   * hyper-parameters (defaults from `opts`: lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 0).
   */
  constructor(params: Tensor[] | ({ params: Tensor[] } & AdamOptions)[], opts: AdamOptions = {}) {
    this.paramGroups = this.makeGroups(params, opts, 0);
  }

  protected makeGroups(
    params: Tensor[] | ({ params: Tensor[] } & AdamOptions)[],
    opts: AdamOptions,
    defaultDecay: number,
  ): ParamGroup[] {
    const specs = params.length && !("params" in params[0])
      ? [{ params: params as Tensor[] }]
      : params as ({ params: Tensor[] } & AdamOptions)[];
    const seen = new Set<Tensor>();
    return specs.map((s, gi) => {
      const o: Required<AdamOptions> = {
        lr: s.lr ?? opts.lr ?? 1e-3,
        betas: s.betas ?? opts.betas ?? [0.9, 0.999],
        eps: s.eps ?? opts.eps ?? 1e-8,
        weightDecay: s.weightDecay ?? opts.weightDecay ?? defaultDecay,
      };
      checkHyper(this.constructor.name, o);
      for (const p of s.params) {
        if (seen.has(p)) {
          throw new Error(`${this.constructor.name}: a parameter appears twice (group ${gi})`);
        }
        seen.add(p);
        if (p.dtype !== "f32") {
          throw new Error(`${this.constructor.name}: parameter ${p} is not f32`);
        }
      }
      return {
        params: s.params.slice(),
        lr: o.lr,
        initialLr: o.lr,
        betas: o.betas,
        eps: o.eps,
        weightDecay: o.weightDecay,
      };
    });
  }

  /** The first group's learning rate; setting it sets every group's. */
  get lr(): number {
    return this.paramGroups[0]?.lr ?? 0;
  }
  set lr(v: number) {
    for (const g of this.paramGroups) g.lr = v;
  }

  /** One update of every parameter that has a gradient (encoded, not waited for). */
  step(): void {
    // A thread per 4 values where the size allows (kernels/adam.ts: bit-identical, fewer loads).
    const kernels = [adamKernel(this.decoupled), adamKernel(this.decoupled, true)];
    noGrad(() => {
      for (const group of this.paramGroups) {
        const [b1, b2] = group.betas;
        for (const p of group.params) {
          const g = p.grad;
          if (!g) continue;
          p.assertAlive();
          g.assertAlive();
          if (g.size !== p.size || g.dtype !== "f32") {
            throw new Error(
              `${this.name}: gradient [${g.shape}] ${g.dtype} does not match parameter [${p.shape}]`,
            );
          }
          let st = this.state.get(p);
          if (!st) {
            st = { step: 0, expAvg: keep(fill(p.shape, 0)), expAvgSq: keep(fill(p.shape, 0)) };
            this.state.set(p, st);
          }
          st.step++;
          if (p.size === 0) continue;
          const t = st.step;
          const stepSize = group.lr / (1 - b1 ** t);
          const bc2Sqrt = Math.sqrt(1 - b2 ** t);
          const wd = this.decoupled ? 1 - group.lr * group.weightDecay : group.weightDecay;
          const gd = dense(g);
          const vec = p.size % 4 === 0 ? 1 : 0;
          const n = vec ? p.size / 4 : p.size;
          const params = ADAM_UNIFORMS.pack({
            n,
            beta1: b1,
            beta2: b2,
            omb1: 1 - b1,
            omb2: 1 - b2,
            eps: group.eps,
            wd,
            stepSize,
            bc2Sqrt,
          });
          dispatch(
            kernels[vec],
            [p.binding(), gd.binding(), st.expAvg.binding(), st.expAvgSq.binding()],
            params,
            grid1d(n, OPTIM_WORKGROUP),
          );
          disposeCopy(gd, g);
        }
      }
    });
  }

  /** Drops (disposes) the gradients of every parameter. */
  zeroGrad(): void {
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  }

  /** Every parameter in group order: the flat index is the state dict's `state.{i}` key. */
  private flatParams(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /**
   * The state needed to resume bit-exactly, as new tensors the caller owns (dispose them, or call
   * inside `tidy`): per parameter i (flat index over the groups in order) that has taken a step,
   * `state.{i}.step` (i32 [1]), `state.{i}.exp_avg` and `state.{i}.exp_avg_sq` (f32, the
   * parameter's shape); per group g, `param_groups.{g}.lr` and `param_groups.{g}.initial_lr` as
   * i32 [2]: the float64's bits, low word first (an f32 would round the lr schedulers computed).
   */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    noGrad(() => {
      this.flatParams().forEach((p, i) => {
        const st = this.state.get(p);
        if (!st) return;
        out.set(`state.${i}.step`, tensor(new Int32Array([st.step]), [1], "i32"));
        out.set(`state.${i}.exp_avg`, copy(st.expAvg));
        out.set(`state.${i}.exp_avg_sq`, copy(st.expAvgSq));
      });
      this.paramGroups.forEach((g, gi) => {
        out.set(`param_groups.${gi}.lr`, tensor(f64Bits(g.lr), [2], "i32"));
        out.set(`param_groups.${gi}.initial_lr`, tensor(f64Bits(g.initialLr), [2], "i32"));
      });
    });
    return out;
  }

  /**
   * Restores a state dict written by {@link stateDict} (downloaded, e.g. through safetensors) into
   * this optimiser, built over the same parameters in the same groups. State of parameters the
   * dict does not mention is dropped. Throws one error naming `file` and listing every unknown,
   * incomplete or mis-shaped key.
   */
  loadStateDict(map: Map<string, StateEntry>, opts: { file?: string } = {}): void {
    const file = opts.file ?? "optimizer state dict";
    const params = this.flatParams();
    const problems: string[] = [];
    const steps = new Map<number, number>();
    const moments = new Map<number, [Float32Array, Float32Array]>();
    const lrs: { lr?: number; initialLr?: number }[] = this.paramGroups.map(() => ({}));
    const ints = (k: string, e: StateEntry, n: number): Int32Array | null => {
      const d = e.dtype !== undefined
        ? toInt32(e, `${file}: ${k}`)
        : Int32Array.from(e.data as ArrayLike<number>);
      if (d.length !== n) {
        problems.push(`${k}: ${d.length} values, expected ${n}`);
        return null;
      }
      return d;
    };
    for (const [k, e] of map) {
      let m = /^state\.(\d+)\.(step|exp_avg|exp_avg_sq)$/.exec(k);
      if (m) {
        const i = Number(m[1]);
        const p = params[i];
        if (!p) {
          problems.push(`${k}: this optimiser has ${params.length} parameters`);
          continue;
        }
        if (m[2] === "step") {
          const d = ints(k, e, 1);
          if (d && d[0] >= 1) steps.set(i, d[0]);
          else if (d) problems.push(`${k}: step ${d[0]} is not positive`);
          continue;
        }
        const d = e.dtype !== undefined
          ? toFloat32(e)
          : Float32Array.from(e.data as ArrayLike<number>);
        if (
          d.length !== p.size || e.shape.length !== p.rank ||
          e.shape.some((x, j) => x !== p.shape[j])
        ) {
          problems.push(`${k}: got [${e.shape.join(", ")}], expected [${p.shape.join(", ")}]`);
          continue;
        }
        const pair = moments.get(i) ?? [new Float32Array(0), new Float32Array(0)];
        pair[m[2] === "exp_avg" ? 0 : 1] = d;
        moments.set(i, pair);
        continue;
      }
      m = /^param_groups\.(\d+)\.(lr|initial_lr)$/.exec(k);
      if (m && Number(m[1]) < lrs.length) {
        const d = ints(k, e, 2);
        if (d) lrs[Number(m[1])][m[2] === "lr" ? "lr" : "initialLr"] = bitsF64(d);
        continue;
      }
      problems.push(`${k}: unexpected key`);
    }
    for (const i of new Set([...steps.keys(), ...moments.keys()])) {
      const mo = moments.get(i);
      if (
        !steps.has(i) || !mo || mo[0].length !== params[i].size || mo[1].length !== params[i].size
      ) {
        problems.push(`state.${i}: needs step, exp_avg and exp_avg_sq`);
      }
    }
    lrs.forEach((l, gi) => {
      if (l.lr === undefined) problems.push(`param_groups.${gi}.lr: missing`);
    });
    if (problems.length) {
      throw new Error(
        `${file}: does not match this ${this.name} optimiser (${params.length} parameters in ` +
          `${this.paramGroups.length} groups):\n  ${problems.slice(0, 40).join("\n  ")}`,
      );
    }
    for (const [p, st] of [...this.state]) {
      if (!steps.has(params.indexOf(p))) {
        st.expAvg.dispose();
        st.expAvgSq.dispose();
        this.state.delete(p);
      }
    }
    for (const [i, step] of steps) {
      const p = params[i];
      const [m1, m2] = moments.get(i)!;
      let st = this.state.get(p);
      if (!st) {
        st = { step, expAvg: keep(tensor(m1, p.shape)), expAvgSq: keep(tensor(m2, p.shape)) };
        this.state.set(p, st);
      } else {
        st.step = step;
        uploadInto(st.expAvg, m1);
        uploadInto(st.expAvgSq, m2);
      }
    }
    lrs.forEach((l, gi) => {
      this.paramGroups[gi].lr = l.lr!;
      if (l.initialLr !== undefined) this.paramGroups[gi].initialLr = l.initialLr;
    });
  }

  /** Frees the moment buffers. */
  dispose(): void {
    for (const s of this.state.values()) {
      s.expAvg.dispose();
      s.expAvgSq.dispose();
    }
    this.state.clear();
  }
}

/** AdamW: Adam with decoupled weight decay (default weightDecay 1e-2, as torch.optim.AdamW). */
export class AdamW extends Adam {
  protected override readonly decoupled: boolean = true;
  protected override readonly name: string = "AdamW";
  constructor(params: Tensor[] | ({ params: Tensor[] } & AdamOptions)[], opts: AdamOptions = {}) {
    super([], opts);
    this.paramGroups.push(...this.makeGroups(params, opts, 1e-2));
  }
}

/** A float64's bits as two i32 (low word first). */
function f64Bits(x: number): Int32Array {
  return new Int32Array(new Float64Array([x]).buffer);
}

function bitsF64(d: Int32Array): number {
  return new Float64Array(Int32Array.from(d).buffer)[0];
}

/** A new tensor holding `t`'s values now (later steps do not change it). */
function copy(t: Tensor): Tensor {
  const c = empty(t.shape);
  writeInto(c, t);
  return c;
}
