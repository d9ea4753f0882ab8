/** Linear layer (torch.nn.Linear: weight [out, in], bias [out]). */
import { F, type Tensor } from "../mod.ts";
import { Module } from "./module.ts";
import { defaultBias, defaultWeight, HostRng } from "./init.ts";

export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: { bias?: boolean; rng?: HostRng } = {},
  ) {
    super();
    const rng = opts.rng ?? new HostRng(0);
    this.weight = this.param("weight", defaultWeight([outFeatures, inFeatures], rng));
    this.bias = opts.bias === false
      ? null
      : this.param("bias", defaultBias(outFeatures, inFeatures, rng));
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias ?? undefined);
  }
}
