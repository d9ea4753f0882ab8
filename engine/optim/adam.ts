/**
 * Adam and AdamW with PyTorch's semantics (torch.optim.Adam / AdamW, amsgrad off):
 *   Adam:  g ← g + wd·p (L2 decay added to the gradient)
 *   AdamW: p ← p·(1 − lr·wd) (decoupled decay)
 *   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε)   (ε added after the square root)
 * Each step is one fused dispatch per parameter with a gradient, and no readback. Parameters
 * without `.grad` are skipped (their step counter does not advance), as in PyTorch.
 */
import { dispatch, grid1d, Params } from "../dispatch.ts";
import type { Tensor } from "../tensor.ts";
import { keep } from "../scope.ts";
import { noGrad } from "../autograd.ts";
import { fill } from "../ops/elementwise.ts";
import { dense } from "../ops/view.ts";
import { adamKernel, OPTIM_WORKGROUP } from "../../kernels/optim.ts";

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
    const kernel = adamKernel(this.decoupled);
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
          const params = new Params().u32(p.size, 0, 0, 0).f32(
            b1,
            b2,
            1 - b1,
            1 - b2,
            group.eps,
            wd,
            stepSize,
            bc2Sqrt,
          );
          dispatch(
            kernel,
            [p.binding(), gd.binding(), st.expAvg.binding(), st.expAvgSq.binding()],
            params,
            grid1d(p.size, OPTIM_WORKGROUP),
          );
          if (gd !== g) gd.dispose();
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
