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

export class Conv2d extends Module {
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
    this.weight = this.param(
      "weight",
      defaultWeight([outChannels, inChannels, kernel, kernel], rng),
    );
    this.bias = opts.bias === false
      ? null
      : this.param("bias", defaultBias(outChannels, inChannels * kernel * kernel, rng));
  }
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias ?? undefined, {
      stride: this.stride,
      padding: this.padding,
      dilation: this.dilation,
    });
  }
}

export class ConvTranspose2d extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly stride: number;
  readonly padding: number;
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
    // torch: weight [in, out, k, k]; its fan-in for init is computed on dim 1 (out·k·k).
    const shape = [inChannels, outChannels, kernel, kernel];
    this.weight = this.param("weight", defaultWeight(shape, rng));
    this.bias = opts.bias === false
      ? null
      : this.param("bias", defaultBias(outChannels, outChannels * kernel * kernel, rng));
  }
  forward(x: Tensor): Tensor {
    return F.convTranspose2d(x, this.weight, this.bias ?? undefined, {
      stride: this.stride,
      padding: this.padding,
    });
  }
}
