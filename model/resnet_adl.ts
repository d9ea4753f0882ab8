/**
 * EP-SAM's patch classifier: ResNet-50 (Bottleneck) with ADL after layer3 block 0 and layer4
 * blocks 0 and 2, a fourth input channel (the FFT high-pass image) and one logit. Layer4 keeps
 * stride 1 (output stride 16), so a 512 patch gives a 32×32 CAM. State-dict names match the
 * reference: ADL modules take a slot in their Sequential, so layer4's second bottleneck is
 * `layer4.2`.
 */
import { checkpoint, F, isGradEnabled, type Tensor, tidy } from "../engine/mod.ts";
import { conv2dBatchNormEval } from "../engine/ops/conv_fused.ts";
import { isCheckpointForward } from "../engine/ops/checkpoint.ts";
import { convBnFusion } from "../engine/routing.ts";
import { Module } from "../engine/nn/module.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import { Linear } from "../engine/nn/linear.ts";
import { constant, HostRng, normal, xavierUniform } from "../engine/nn/init.ts";
import { Adl } from "./adl.ts";
import { highFrequency } from "./highfreq.ts";
import { InputError } from "../engine/io/errors.ts";

export interface ResNetAdlConfig {
  /** Bottlenecks per stage: ResNet-50 is [3, 4, 6, 3]. */
  layers: [number, number, number, number];
  /** Base width: 64 for ResNet-50 (the fixture's tiny model uses 16). */
  width: number;
  /** ADL positions per stage (block indices after which an ADL is inserted). */
  adlPositions: number[][];
  adlDropRate: number;
  adlThreshold: number;
  /** Add the FFT high-frequency channel (false: the "no FFT" ablation, 3 input channels). */
  highFreq: boolean;
  seed: number;
}

export const RESNET50_ADL: ResNetAdlConfig = {
  layers: [3, 4, 6, 3],
  width: 64,
  adlPositions: [[], [], [], [0], [0, 2]],
  adlDropRate: 0.75,
  adlThreshold: 0.8,
  highFreq: true,
  seed: 0,
};

const EXPANSION = 4;

/**
 * Checks a ResNet-ADL config before any layer is built, naming the field at fault (ResNet-50 is
 * width 64, [3, 4, 6, 3]; the bounds leave room for wider or deeper experiments, not for typos
 * that would allocate terabytes).
 */
function validateResNetAdlConfig(c: ResNetAdlConfig, where = "ResNet-ADL config"): void {
  const bad = (field: string, expected: string, got: unknown): never => {
    throw new InputError(
      `${where}: field ${field}: expected ${expected}, got ${JSON.stringify(got)}`,
      {
        field,
      },
    );
  };
  const int = (field: string, v: unknown, min: number, max: number) => {
    if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) {
      bad(field, `an integer in [${min}, ${max}]`, v);
    }
  };
  int("width", c.width, 1, 4096);
  if (!Array.isArray(c.layers) || c.layers.length !== 4) bad("layers", "4 block counts", c.layers);
  c.layers.forEach((n, i) => int(`layers[${i}]`, n, 1, 256));
  if (!Array.isArray(c.adlPositions)) bad("adlPositions", "an array of arrays", c.adlPositions);
  c.adlPositions.forEach((ps, s) => {
    if (!Array.isArray(ps)) bad(`adlPositions[${s}]`, "an array of block indices", ps);
    ps.forEach((b, j) => int(`adlPositions[${s}][${j}]`, b, 0, 255));
  });
  if (!(c.adlDropRate >= 0 && c.adlDropRate <= 1)) {
    bad("adlDropRate", "a number in [0, 1]", c.adlDropRate);
  }
  if (!(c.adlThreshold >= 0 && c.adlThreshold <= 1)) {
    bad("adlThreshold", "a number in [0, 1]", c.adlThreshold);
  }
}

/**
 * Whether conv → bn runs as one fused inference pass (engine/ops/conv_fused.ts): no gradient
 * recorded (nor a checkpointed segment's graph-free first forward, which backward reruns with a
 * graph), the BN in eval mode (running statistics), a bias-free conv, fusion not turned off
 * (engine/routing.ts `convBnFusion`).
 */
function fusable(conv: Conv2d, bn: BatchNorm2d): boolean {
  return !isGradEnabled() && !isCheckpointForward() && !bn.training && conv.bias === null &&
    convBnFusion();
}

/**
 * relu?(bn(conv(x)) + residual?): one fused conv pass where {@link fusable}, else the modules' own
 * forwards (unchanged: training and gradient passes run exactly these ops).
 */
function convBn(
  conv: Conv2d,
  bn: BatchNorm2d,
  x: Tensor,
  relu: boolean,
  residual?: Tensor,
): Tensor {
  if (fusable(conv, bn)) {
    return conv2dBatchNormEval(x, conv.weight, {
      weight: bn.weight,
      bias: bn.bias,
      runningMean: bn.runningMean,
      runningVar: bn.runningVar,
      eps: bn.opts.eps ?? 1e-5,
    }, { stride: conv.stride, padding: conv.padding, dilation: conv.dilation, residual, relu });
  }
  return bn.forward(conv.forward(x), { relu, residual });
}

class Bottleneck extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  conv2: Conv2d;
  bn2: BatchNorm2d;
  conv3: Conv2d;
  bn3: BatchNorm2d;
  downsample: Sequential2 | null;
  constructor(inplanes: number, planes: number, stride: number, downsample: boolean, rng: HostRng) {
    super();
    const w = planes;
    this.conv1 = this.child("conv1", new Conv2d(inplanes, w, 1, { bias: false, rng }));
    this.bn1 = this.child("bn1", new BatchNorm2d(w));
    this.conv2 = this.child("conv2", new Conv2d(w, w, 3, { stride, padding: 1, bias: false, rng }));
    this.bn2 = this.child("bn2", new BatchNorm2d(w));
    this.conv3 = this.child("conv3", new Conv2d(w, planes * EXPANSION, 1, { bias: false, rng }));
    this.bn3 = this.child("bn3", new BatchNorm2d(planes * EXPANSION));
    this.downsample = downsample
      ? this.child(
        "downsample",
        new Sequential2(
          new Conv2d(inplanes, planes * EXPANSION, 1, { stride, bias: false, rng }),
          new BatchNorm2d(planes * EXPANSION),
        ),
      )
      : null;
  }
  /** Keep only the block's input for backward and run the block again there (see checkpoint). */
  checkpointed = false;
  /**
   * One scope per block: the BN outputs and the sum before the last ReLU are freed as soon as the
   * block returns (backward keeps only what each op saved: conv inputs, BN inputs, ReLU outputs).
   */
  forward(x: Tensor): Tensor {
    return this.checkpointed
      ? checkpoint(x, this.parameters(), (xi) => this.body(xi))
      : this.body(x);
  }
  private body(x: Tensor): Tensor {
    if (fusable(this.conv3, this.bn3)) {
      // Inference: each conv with its BN (and ReLU, and for conv3 the residual add) in one pass.
      return tidy(() => {
        let out = convBn(this.conv1, this.bn1, x, true);
        out = convBn(this.conv2, this.bn2, out, true);
        const identity = this.downsample ? this.downsample.forward(x) : x;
        return convBn(this.conv3, this.bn3, out, true, identity);
      });
    }
    return tidy(() => {
      // BatchNorm's ReLU in its own pass (F.batchNorm2d's `relu`: the same values and gradients).
      let out = this.bn1.forward(this.conv1.forward(x), { relu: true });
      out = this.bn2.forward(this.conv2.forward(out), { relu: true });
      const identity = this.downsample ? this.downsample.forward(x) : x;
      // relu(bn3(conv3(out)) + identity) in BN's pass (the same sums as F.add then F.relu).
      return this.bn3.forward(this.conv3.forward(out), { relu: true, residual: identity });
    });
  }
}

/** The downsample branch: `downsample.0` conv, `downsample.1` BN. */
class Sequential2 extends Module {
  constructor(readonly conv: Conv2d, readonly bn: BatchNorm2d) {
    super();
    this.child("0", conv);
    this.child("1", bn);
  }
  forward(x: Tensor): Tensor {
    return convBn(this.conv, this.bn, x, false);
  }
}

/** A stage: bottlenecks and ADLs in one numbered sequence (state-dict indices count ADLs). */
class Stage extends Module {
  readonly items: (Bottleneck | Adl)[] = [];
  add(m: Bottleneck | Adl): void {
    this.child(String(this.items.length), m);
    this.items.push(m);
  }
  /** Runs items [from, to). */
  forward(x: Tensor, from = 0, to = this.items.length): Tensor {
    let y = x;
    for (let i = from; i < to; i++) {
      // One scope per block: intermediates not saved for backward are freed when it ends.
      const prev = y;
      y = tidy(() => this.items[i].forward(prev));
    }
    return y;
  }
}

export class ResNetAdl extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  stages: Stage[] = [];
  fc: Linear;
  readonly adls: Adl[] = [];

  constructor(readonly config: ResNetAdlConfig = RESNET50_ADL) {
    super();
    validateResNetAdlConfig(config);
    const rng = new HostRng(config.seed);
    const w = config.width;
    this.conv1 = this.child(
      "conv1",
      new Conv2d(config.highFreq ? 4 : 3, w, 7, { stride: 2, padding: 3, bias: false, rng }),
    );
    this.bn1 = this.child("bn1", new BatchNorm2d(w));
    let inplanes = w;
    const strides = [1, 2, 2, 1];
    for (let s = 0; s < 4; s++) {
      const planes = w * 2 ** s;
      const stage = this.child(`layer${s + 1}`, new Stage());
      const stride = strides[s];
      const adlAfter = config.adlPositions[s + 1] ?? [];
      for (let b = 0; b < config.layers[s]; b++) {
        const ds = b === 0 && (stride !== 1 || inplanes !== planes * EXPANSION);
        stage.add(new Bottleneck(inplanes, planes, b === 0 ? stride : 1, ds, rng));
        inplanes = planes * EXPANSION;
        if (adlAfter.includes(b)) {
          const adl = new Adl({
            dropRate: config.adlDropRate,
            threshold: config.adlThreshold,
            seed: config.seed * 131 + this.adls.length + 1,
          });
          stage.add(adl);
          this.adls.push(adl);
        }
      }
      this.stages.push(stage);
    }
    this.fc = this.child("fc", new Linear(inplanes, 1, { rng }));
    this.initReference(rng);
  }

  /** The reference's initialisation: Xavier-uniform convs, N(0, 0.01) fc weight, zero biases. */
  private initReference(rng: HostRng): void {
    for (const [name, p] of this.namedParameters()) {
      let fresh: Tensor | null = null;
      if (name === "fc.weight") fresh = normal(p.shape.slice(), 0, 0.01, rng);
      else if (name === "fc.bias") fresh = constant(p.shape.slice(), 0);
      else if (p.rank === 4) fresh = xavierUniform(p.shape.slice(), rng);
      if (fresh) {
        this.assignParameter(name, fresh);
      }
    }
  }

  /** Enables/disables every ADL (the "no ADL" ablation keeps them as identity). */
  /** The ADL layers' draw states (saved with training checkpoints; see Adl.rngState). */
  adlStates(): number[] {
    return this.adls.map((a) => a.rngState);
  }
  setAdlStates(states: number[]): void {
    if (states.length !== this.adls.length) {
      throw new Error(
        `ResNetAdl: ${states.length} ADL draw states for ${this.adls.length} ADL layers`,
      );
    }
    states.forEach((s, i) => this.adls[i].rngState = s);
  }

  setAdl(enabled: boolean): void {
    for (const a of this.adls) a.enabled = enabled;
  }

  private checkpointed = false;

  /**
   * Activation checkpointing of the stem and every bottleneck: backward keeps only their inputs
   * and runs each again, trading one more forward for most of the activation memory (the paper
   * profile's 512², batch 16 training step). Gradients and BN statistics are unchanged.
   */
  setCheckpointing(on: boolean): this {
    this.checkpointed = on;
    for (const [, m] of this.namedModules()) if (m instanceof Bottleneck) m.checkpointed = on;
    return this;
  }

  /** The 4-channel input: RGB in [0,1] plus the high-pass channel. */
  inputWithHighFreq(x: Tensor): Tensor {
    if (x.rank !== 4 || x.shape[1] !== 3) {
      throw new Error(`ResNetAdl: expected input [N,3,H,W], got [${x.shape}]`);
    }
    if (!this.config.highFreq) return x;
    return F.concat([x, highFrequency(x)], 1);
  }

  /** Stem and stages up to the output of layer4 block 0 (the CAM features). */
  private trunk(x: Tensor, untilCam: boolean): Tensor {
    const stem = (z: Tensor) =>
      tidy(() =>
        F.maxPool2d(convBn(this.conv1, this.bn1, z, true), {
          kernel: 3,
          stride: 2,
          padding: 1,
        })
      );
    let y = this.inputWithHighFreq(x);
    y = this.checkpointed
      ? checkpoint(y, [...this.conv1.parameters(), ...this.bn1.parameters()], stem)
      : stem(y);
    for (let s = 0; s < 3; s++) y = this.stages[s].forward(y);
    return untilCam ? this.stages[3].forward(y, 0, 1) : this.stages[3].forward(y);
  }

  /** Logits [N, 1]. */
  forward(x: Tensor): Tensor {
    const feat = this.trunk(x, false);
    const pooled = F.reshape(F.adaptiveAvgPool2d(feat, [1, 1]), [feat.shape[0], feat.shape[1]]);
    return this.fc.forward(pooled);
  }

  /** Features after layer4 block 0, [N, C, h, w] (what EP-SAM's CAM uses). */
  camFeatures(x: Tensor): Tensor {
    return this.trunk(x, true);
  }

  /** Raw CAM: fc.weight[0] · features, before ReLU and normalisation, [N, h, w]. */
  camRaw(x: Tensor): Tensor {
    const f = this.camFeatures(x);
    const [n, c, h, w] = f.shape;
    const wv = F.reshape(this.fc.weight, [1, 1, c]);
    const cam = F.matmul(wv, F.reshape(f, [n, c, h * w]));
    return F.reshape(cam, [n, h, w]);
  }
}
