/** Conv2d and ConvTranspose2d layers with PyTorch's parameter names, shapes and default init. */
import { F, type Tensor } from "../mod.ts";
import { Module } from "./module.ts";
import { defaultBias, defaultWeight, HostRng } from "./init.ts";

export interface ConvOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  bias?: boolean;
  rng?: HostRng;
}

/**
 * What Conv2d and ConvTranspose2d share: a square kernel, stride/padding/dilation, and the weight
 * and optional bias drawn from `rng` with PyTorch's kaiming-uniform defaults (weight first, then
 * bias) over the layout each layer gives in {@link weightLayout}.
 */
abstract class ConvLayer extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly stride: number;
  readonly padding: number;
  readonly dilation: number;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    opts: ConvOptions = {},
  ) {
    super();
    const rng = opts.rng ?? new HostRng(0);
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    this.dilation = opts.dilation ?? 1;
    const { shape, fanIn } = this.weightLayout();
    this.weight = this.param("weight", defaultWeight(shape, rng));
    this.bias = opts.bias === false
      ? null
      : this.param("bias", defaultBias(outChannels, fanIn, rng));
  }
  /** The weight's shape and the fan-in its initialisers use (runs inside the constructor). */
  protected abstract weightLayout(): { shape: number[]; fanIn: number };
  /** The functional options of this layer. */
  protected get convOptions(): { stride: number; padding: number; dilation: number } {
    return { stride: this.stride, padding: this.padding, dilation: this.dilation };
  }
}

export class Conv2d extends ConvLayer {
  protected weightLayout() {
    const { inChannels: i, outChannels: o, kernel: k } = this;
    return { shape: [o, i, k, k], fanIn: i * k * k };
  }
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias ?? undefined, this.convOptions);
  }
}

export class ConvTranspose2d extends ConvLayer {
  /** torch: weight [in, out, k, k]; its fan-in for init is computed on dim 1 (out·k·k). */
  protected weightLayout() {
    const { inChannels: i, outChannels: o, kernel: k } = this;
    return { shape: [i, o, k, k], fanIn: o * k * k };
  }
  forward(x: Tensor): Tensor {
    return F.convTranspose2d(x, this.weight, this.bias ?? undefined, this.convOptions);
  }
}
