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
 * What Conv2d and ConvTranspose2d share: a square kernel, stride/padding/dilation, the weight of
 * `weightShape` and the optional bias of `biasSize`, both drawn from `rng` with fan-in `fanIn`
 * (PyTorch's kaiming-uniform defaults, in PyTorch's order: weight, then bias).
 */
abstract class ConvLayer extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly stride: number;
  readonly padding: number;
  readonly dilation: number;
  protected constructor(
    weightShape: number[],
    biasSize: number,
    fanIn: number,
    opts: ConvOptions,
  ) {
    super();
    const rng = opts.rng ?? new HostRng(0);
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    this.dilation = opts.dilation ?? 1;
    this.weight = this.param("weight", defaultWeight(weightShape, rng));
    this.bias = opts.bias === false ? null : this.param("bias", defaultBias(biasSize, fanIn, rng));
  }
  /** The functional options of this layer. */
  protected get convOptions(): { stride: number; padding: number; dilation: number } {
    return { stride: this.stride, padding: this.padding, dilation: this.dilation };
  }
}

export class Conv2d extends ConvLayer {
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    opts: ConvOptions = {},
  ) {
    super(
      [outChannels, inChannels, kernel, kernel],
      outChannels,
      inChannels * kernel * kernel,
      opts,
    );
  }
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias ?? undefined, this.convOptions);
  }
}

export class ConvTranspose2d extends ConvLayer {
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    opts: ConvOptions = {},
  ) {
    // torch: weight [in, out, k, k]; its fan-in for init is computed on dim 1 (out·k·k).
    super(
      [inChannels, outChannels, kernel, kernel],
      outChannels,
      outChannels * kernel * kernel,
      opts,
    );
  }
  forward(x: Tensor): Tensor {
    return F.convTranspose2d(x, this.weight, this.bias ?? undefined, this.convOptions);
  }
}
