/** Parameter-free and container layers built from existing ops (Sequential, Identity, ReLU). */
import type { Tensor } from "../tensor.ts";
import { relu } from "../ops/elementwise.ts";
import { Module } from "./module.ts";

/** A module with a one-tensor forward (what `Sequential` chains). */
export interface Layer extends Module {
  forward(x: Tensor): Tensor;
}

/** torch.nn.Sequential: children named "0", "1", ... run in order. */
export class Sequential extends Module {
  readonly layers: Layer[] = [];
  constructor(...layers: Layer[]) {
    super();
    for (const l of layers) this.push(l);
  }
  /** Appends a layer under the next index. */
  push(layer: Layer): this {
    this.child(String(this.layers.length), layer);
    this.layers.push(layer);
    return this;
  }
  get length(): number {
    return this.layers.length;
  }
  at(i: number): Layer {
    const l = this.layers[i < 0 ? i + this.layers.length : i];
    if (!l) throw new Error(`Sequential: no layer ${i} (length ${this.layers.length})`);
    return l;
  }
  forward(x: Tensor): Tensor {
    let y = x;
    for (const l of this.layers) y = l.forward(y);
    return y;
  }
}

/** torch.nn.Identity. */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** torch.nn.ReLU. */
export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}
