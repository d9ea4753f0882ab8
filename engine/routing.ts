/**
 * Which kernel path each op takes on this adapter, and why, in one place: matmul (workgroup-tiled,
 * register-blocked or texture-staged), conv2d (conv kernels or texture GEMMs) and their register
 * tiles, SAM's attention (fused flash kernel, composed, or composed through textures), with the
 * environment overrides (`ENGINE_MATMUL`, `ENGINE_CONV`, `ENGINE_WINOGRAD`, `SAM_ATTENTION`,
 * `ENGINE_FUSE_CONV_BN`, read here only) and the hooks tests and benchmarks use to force a path.
 * Ops ask; nothing here launches work.
 *
 * | op                | real GPU            | software adapter (llvmpipe/lavapipe)                      |
 * | ----------------- | ------------------- | --------------------------------------------------------- |
 * | matmul            | `tiled`             | `texture` (`register` without read-only storage textures, |
 * |                   |                     | and for products under {@link TEXTURE_MIN_MACS})          |
 * | conv2d (3 passes) | conv kernels        | texture GEMMs where {@link convPath}'s rule says so       |
 * | 3×3 stride 1      | conv kernels (Wino- | Winograd F(4,3) or F(2,3) on texture GEMMs, all three     |
 * |                   | grad when forced)   | passes unless `ENGINE_WINOGRAD=off` ({@link convWinograd})|
 * | conv tiles        | 4×8 (wt grad 8×8)   | 16×16                                                     |
 * | attention (SAM)   | `fused`             | `composed` (`texture` opt-in, without gradients)          |
 * | row kernels       | by row length       | a thread per row (softmax, LayerNorm)                     |
 * | conv+BN(+ReLU)    | one fused conv pass | the same (engine/ops/conv_fused.ts)                       |
 * |                   | (no grad, BN eval)  |                                                           |
 *
 * The measurements behind each rule are in BENCHMARKS.md ("Second session": why textures, the
 * texture tile table, the conv pass table; "What limits the software adapter"; "Attention";
 * "Fused conv + BN + ReLU (inference)"; "Winograd").
 */
import { gpu } from "./device.ts";
import { hasReadonlyStorageTextures } from "./texture_pool.ts";
import type { AnyMatmulTile, MatmulVariant } from "../kernels/matmul.ts";
import type { ConvTile } from "../kernels/conv/forward.ts";
import { type RowMode, rowMode } from "../kernels/softmax.ts";
import { LOOP_BUDGET } from "../kernels/common.ts";
import type { WeightGradTile } from "../kernels/conv/backward_weight.ts";
import type { WinogradTile } from "../kernels/conv/winograd.ts";
import type { ConvGeometry } from "../kernels/window.ts";

/** What the routing rules distinguish: a real GPU, or a CPU rasteriser (llvmpipe, lavapipe). */
type AdapterKind = "gpu" | "software";

function adapterKind(): AdapterKind {
  return gpu().isSoftware ? "software" : "gpu";
}

// ---------------------------------------------------------------- matmul

const MATMUL_ENV = Deno.env.get("ENGINE_MATMUL");
/**
 * `ENGINE_MATMUL=register|tiled|texture`, or null when unset or unknown (bench/kernels.ts benches
 * only that variant when it is set).
 */
export function matmulVariantFromEnv(): MatmulVariant | null {
  return MATMUL_ENV === "tiled" || MATMUL_ENV === "register" || MATMUL_ENV === "texture"
    ? MATMUL_ENV
    : null;
}

let forcedMatmulVariant: MatmulVariant | null = null;
let forcedRegisterTile: AnyMatmulTile | null = null;

/**
 * Matmul's variant on this adapter. GPUs: the workgroup-tiled kernel. Software adapters: every
 * storage-buffer load is a per-lane loop with a branch per component, while a read-only
 * `rgba32float` storage-texture load is a branch-free gather (bench/loads.ts on llvmpipe: 0.40–0.62
 * G vec4 loads/s from a storage buffer, 1.43–1.64 from such a texture), so operands are staged in
 * textures (1024³: 69 ms against 116 ms for the register variant from buffers; ViT qkv [4096,
 * 2304, 768]: 274 ms against 739 ms); without read-only storage textures in WGSL, the
 * register-blocked variant, whose loads per output are fewest. Workgroup-memory tiling is ~10×
 * slower there (shared-memory loads take the same per-lane loop, barriers switch coroutines).
 */
export function matmulVariant(): MatmulVariant {
  if (forcedMatmulVariant) return forcedMatmulVariant;
  const env = matmulVariantFromEnv();
  if (env) return env;
  if (adapterKind() === "gpu") return "tiled";
  return hasReadonlyStorageTextures() ? "texture" : "register";
}

/**
 * Below this many multiply-adds the texture variant's two packing passes are not worth it: a
 * chosen-by-default texture variant gives way to plain registers (a guard for the many tiny
 * products of SAM's decoder; no timing of the crossover is recorded).
 */
const TEXTURE_MIN_MACS = 1 << 20;

/**
 * The variant one [M, K] × [K, N] product runs with: `requested` (an option of that call), else the
 * adapter's ({@link matmulVariant}), except that a texture variant nobody asked for (by option,
 * hook or environment) turns to registers for products under {@link TEXTURE_MIN_MACS}.
 */
export function matmulVariantFor(
  M: number,
  N: number,
  K: number,
  requested?: MatmulVariant,
): MatmulVariant {
  const variant = requested ?? matmulVariant();
  const forced = requested || forcedMatmulVariant || MATMUL_ENV;
  return variant === "texture" && !forced && M * N * K < TEXTURE_MIN_MACS ? "register" : variant;
}

/** The register tile forced by {@link setMatmulVariant}, or null (the op picks by shape). */
export function matmulForcedTile(): AnyMatmulTile | null {
  return forcedRegisterTile;
}

/** Forces a matmul variant and tile (tests, benchmarks); `null` restores the per-adapter choice. */
export function setMatmulVariant(v: MatmulVariant | null, tile: AnyMatmulTile | null = null): void {
  forcedMatmulVariant = v;
  forcedRegisterTile = tile;
}

// ---------------------------------------------------------------- conv2d

/** Register tiles of the three conv kernels. */
export interface ConvTiles {
  fwd: ConvTile;
  bwdData: ConvTile;
  bwdWeight: WeightGradTile;
}

/**
 * Register blocks per adapter. CPU rasterisers (llvmpipe) run 8 invocations per SIMD register and
 * gain from wide register blocks with the weight loads uniform (16×16: bench/conv.ts, BENCHMARKS.md
 * "Convolution"); GPUs get the same structure with blocks sized for occupancy (not yet timed on a
 * GPU). The tile is part of each kernel's key.
 */
export function convTiles(): ConvTiles {
  if (adapterKind() === "software") {
    return {
      fwd: { wg: 64, rm: 16, rn: 16 },
      bwdData: { wg: 64, rm: 16, rn: 16 },
      bwdWeight: { wg: 64, ro: 16, rj: 16 },
    };
  }
  return {
    fwd: { wg: 64, rm: 4, rn: 8 },
    bwdData: { wg: 64, rm: 4, rn: 8 },
    bwdWeight: { wg: 64, ro: 8, rj: 8 },
  };
}

/** Workgroups the split-K weight gradient aims for: enough to fill the adapter's cores. */
export function convSplitKTarget(): number {
  return adapterKind() === "software" ? 32 : 512;
}

let forcedConvTiles: ConvTiles | null = null;
let forcedSplitK: number | null = null;

/**
 * Forces tiles and optionally the split-K count of the weight gradient (benchmarks, and tests of
 * every tiling); `null` restores the per-adapter choice. Forced tiles keep the conv kernels.
 */
export function setConvTiles(t: ConvTiles | null, splitK: number | null = null): void {
  forcedConvTiles = t;
  forcedSplitK = splitK;
}

/** The tiles in force: forced ones, else the adapter's. */
export function convTilesInForce(): ConvTiles {
  return forcedConvTiles ?? convTiles();
}

/** The split-K count forced by {@link setConvTiles}, or null. */
export function convForcedSplitK(): number | null {
  return forcedSplitK;
}

/** The conv paths a test or benchmark may force. */
export type ConvPathChoice = "texture" | "kernel" | "winograd";

const CONV_ENV = Deno.env.get("ENGINE_CONV");
let forcedConvPath: ConvPathChoice | null = null;

/**
 * Forces the texture GEMMs (where available), the conv kernels, or Winograd (where
 * {@link convWinograd} may take a pass; other passes then follow the rule of {@link convPath});
 * null: the rules. `ENGINE_CONV=kernel|texture|winograd` does the same from the environment.
 */
export function setConvPath(p: ConvPathChoice | null): void {
  forcedConvPath = p;
}

/** The conv geometry fields the path rule reads. */
export type ConvRouteShape = Pick<
  ConvGeometry,
  "N" | "C" | "O" | "OH" | "OW" | "kh" | "kw" | "sh" | "sw"
>;

/**
 * Whether a conv pass runs as texture GEMMs (engine/ops/conv_texture.ts) or on the conv kernels.
 * Textures only where matmul stages its operands in textures (software adapters), ungrouped convs
 * whose textures and bindings fit (`texturesFit`), no bias in the forward (the GEMM's bias would
 * run along pixels; a per-channel epilogue in the store serves the fused inference op instead,
 * engine/ops/conv_fused.ts), and no forced tiles. Then, by bench/conv.ts on llvmpipe
 * (BENCHMARKS.md, the conv pass table): the GEMM's row count (O for the forward and weight
 * gradient, C for the input gradient) must reach 128 unless the kernel is 1×1 — with 64 rows the
 * im2col packing of a 3×3 or 7×7 kernel costs more than it saves (layer1 3×3 64→64: forward 69 ms
 * kernel, 82 ms texture) — and the input gradient needs stride 1 (with stride s its gather is zero
 * for all but 1/s² of the taps: layer2 3×3/2, 99 ms kernel, 230 ms texture; engine/ops/conv.ts then
 * takes it as a texture GEMM + col2im where this rule gives the stride-1 pass textures,
 * engine/ops/conv_col2im.ts: 2.3× less CPU than the kernel). `ENGINE_CONV=texture`
 * or `setConvPath("texture")` skips that rule; `kernel` never takes textures.
 */
export function convPath(
  g: ConvRouteShape,
  pass: "forward" | "input" | "weight",
  hasBias: boolean,
  texturesFit: () => boolean,
): "texture" | "kernel" {
  const path = forcedConvPath ?? CONV_ENV;
  if (hasBias || forcedConvTiles || path === "kernel" || g.N * g.OH * g.OW === 0) return "kernel";
  if (path !== "texture") {
    const rows = pass === "input" ? g.C : g.O;
    if (g.kh * g.kw > 1 && rows < 128) return "kernel";
    if (pass === "input" && (g.sh > 1 || g.sw > 1)) return "kernel";
  }
  return matmulVariant() === "texture" && texturesFit() ? "texture" : "kernel";
}

const WINOGRAD_ENV = Deno.env.get("ENGINE_WINOGRAD");
let forcedWinogradTile: WinogradTile | null = WINOGRAD_ENV === "2"
  ? 2
  : WINOGRAD_ENV === "4"
  ? 4
  : null;
let forcedWinogradRule: boolean | null = null;

/**
 * Whether the Winograd rule may take passes nobody forced: on by default, off with
 * `ENGINE_WINOGRAD=off` (or `0`); {@link setWinogradRule} overrides both (A/B benchmarks, tests).
 */
function winogradRuleOn(): boolean {
  return forcedWinogradRule ?? !(WINOGRAD_ENV === "off" || WINOGRAD_ENV === "0");
}

/** Turns the Winograd rule on or off; null restores the default (on unless `ENGINE_WINOGRAD=off`). */
export function setWinogradRule(on: boolean | null): void {
  forcedWinogradRule = on;
}

/** Forces Winograd's output tile m of F(m×m, 3×3) (tests, benchmarks); null: the rule's. */
export function setWinogradTile(m: WinogradTile | null): void {
  forcedWinogradTile = m;
}

/**
 * Whether a 3×3 stride-1 pass (forward, input or weight gradient) runs as Winograd F(m×m, 3×3)
 * (engine/ops/conv_winograd.ts), and with which m; null: {@link convPath} decides. Not with bias,
 * forced tiles or a forced `texture`/`kernel` path; only where `fits` (3×3, stride 1, dilation 1,
 * ungrouped, bindings and texture rows within limits). Where matmul does not stage its operands in
 * textures (GPUs: the component GEMMs are then one batched tiled matmul) only when forced
 * (`ENGINE_CONV=winograd`, `setConvPath("winograd")`): no GPU has timed it yet. **On by default**
 * on the software adapter (`ENGINE_WINOGRAD=off` opts out, `=2|4` forces the tile as
 * {@link setWinogradTile} does; {@link setWinogradRule}). It was opt-in while the tiny end-to-end
 * runs' outcomes moved with the summation order: F(2,3) changes which tiny activations round to
 * zero, and the short profiles' classifier, evaluated with BatchNorm running averages far from its
 * weights, then scored its own positives negative (50 all-zero CAMs at 3 epochs) or not. The
 * pipeline now recalibrates BatchNorm before each validation (pipeline/classifier/precise_bn.ts,
 * `classifier.preciseBn`), and the tiny runs end the same way with Winograd on or off (seed 7
 * above its CAM masks on, off and with texture convs; seed 8 below them both ways, its small SAM
 * collapsing; BENCHMARKS.md "Winograd", seventh pass). The ops match float64 past one chunk
 * (tests/ops/conv_winograd_test.ts "past one chunk").
 *
 * Where on, every such pass takes it: on llvmpipe (bench/conv.ts `winograd`, BENCHMARKS.md
 * "Winograd", two runs under load 7–18, interleaved in-process) the rule's choice beat the routed
 * path (conv kernels for 64 channels, texture GEMMs above) on the 24 ResNet-50 3×3 stride-1 forward, input-
 * and weight-gradient shapes at 256² b2 and 512² b1 by 1.1–5× in run 1; run 2's three losses
 * (0.8–0.94×) were wins when measured again (1.2–1.9×), and layer1 @128² b1's weight gradient is
 * near break-even (1.14×, 2.42×, 0.76×). Forward and input gradient: m = 4 (F(4,3): 2.25
 * multiplies per output and channel pair instead of 9) where both channel counts are at most
 * {@link WINOGRAD_F4_MAX_CHANNELS}: layer1 @128² forward 406 → 110 ms (F(2,3) 354), layer2 @64²
 * 268 → 53 ms (F(2,3) 108). Wider convs take m = 2: at 256 channels F(2,3) and F(4,3) are within
 * the noise of each other, at 512 F(2,3) is faster (small tile counts — 16×16 outputs are 16
 * F(4,3) tiles a sample — make F(4,3)'s GEMMs thin while its 36 filter components per channel pair
 * cost more to transform: layer4 @32² forward 408 ms routed, F(2,3) 197, F(4,3) 251), and F(4,3)'s
 * rounding grows with the channel count (max abs error 6–10e-5 at 512 channels on outputs of
 * magnitude ~3.5, against 1e-5 for F(2,3)). Weight gradient: m = 2 everywhere (F(4,3) lost to it
 * on 6 of 8 shapes in both runs: its per-tile transforms of x and dy are the larger share when the
 * sum runs over tiles).
 */
export function convWinograd(
  g: ConvRouteShape,
  pass: "forward" | "input" | "weight",
  hasBias: boolean,
  fits: () => boolean,
): WinogradTile | null {
  const path = forcedConvPath ?? CONV_ENV;
  if (hasBias || forcedConvTiles || path === "kernel" || path === "texture") return null;
  if (!winogradRuleOn() && path !== "winograd") return null;
  if (g.N * g.OH * g.OW === 0 || !fits()) return null;
  // Off the texture matmul (GPUs) the buffer variant is correct but not yet timed: forced only.
  if (matmulVariant() !== "texture" && path !== "winograd") return null;
  if (forcedWinogradTile) return forcedWinogradTile;
  if (pass === "weight") return 2;
  // The GEMM's rows (output channels of this pass) and its K (input channels).
  const rows = pass === "input" ? g.C : g.O, k = pass === "input" ? g.O : g.C;
  return Math.max(rows, k) <= WINOGRAD_F4_MAX_CHANNELS ? 4 : 2;
}

/** Widest conv (input or output channels) that takes F(4,3) rather than F(2,3). */
const WINOGRAD_F4_MAX_CHANNELS = 128;

let convTextureRowsLimit: number | null = null;

/** Lowers the texture rows per chunk (pixels per GEMM) so tests reach the chunked paths. */
export function setConvTextureRowsForTests(rows: number | null): void {
  convTextureRowsLimit = rows;
}

/** Most texture rows one conv GEMM chunk may have. */
export function convTextureMaxRows(): number {
  return Math.min(convTextureRowsLimit ?? Infinity, gpu().limits.maxTextureDimension2D);
}

// ---------------------------------------------------------------- inference fusion

const FUSE_ENV = Deno.env.get("ENGINE_FUSE_CONV_BN");
let forcedConvBnFusion: boolean | null = null;

/**
 * Whether models fuse conv + BatchNorm (+ residual) (+ ReLU) into one conv pass where no gradient
 * is recorded and the BN uses its running statistics (engine/ops/conv_fused.ts: the BN folded
 * into a per-channel scale and shift applied with the residual and ReLU in the store of either
 * conv path, the conv kernels or the texture GEMMs). On by default on every adapter: it removes
 * passes over the activations, which pays wherever memory traffic or dispatch count costs time.
 * `ENGINE_FUSE_CONV_BN=0` or {@link setConvBnFusion} turns it off (A/B benchmarks, tests).
 * Training-mode BN and passes with gradients never fuse.
 */
export function convBnFusion(): boolean {
  return forcedConvBnFusion ?? FUSE_ENV !== "0";
}

/** Forces the conv + BN fusion on or off; null restores the default ({@link convBnFusion}). */
export function setConvBnFusion(on: boolean | null): void {
  forcedConvBnFusion = on;
}

// ---------------------------------------------------------------- attention

/**
 * SAM's attention: the fused flash kernel, the composed one (matmuls + bias softmax), or the
 * composed one through textures (engine/ops/attention_texture.ts: scores and probabilities in
 * textures, heads written merged; passes without gradients only, others compose).
 */
export type AttentionImpl = "fused" | "composed" | "texture";

const ATTENTION_ENV = Deno.env.get("SAM_ATTENTION");
let forcedAttention: AttentionImpl | null =
  ATTENTION_ENV === "composed" || ATTENTION_ENV === "fused" || ATTENTION_ENV === "texture"
    ? ATTENTION_ENV
    : null;

/**
 * The fused flash kernel on GPUs; the composed path on software adapters: the flash kernel (one
 * query per thread) reaches 0.17–0.3 GFLOP/s on llvmpipe, the composed path (texture matmuls and
 * the fused bias-softmax) is ~20× faster there (BENCHMARKS.md "Attention") and never holds more
 * than one head-group's scores (64 MiB for a 4096-token head). The texture path (no gradient; the
 * softmax writes the product's texture itself) beat it by 1.29× in CPU time until the texture
 * matmul learnt to copy a dense operand into its texture instead of packing it: since then the
 * composed path's buffer softmax + copy is cheaper than a texel store per probability, and the
 * texture path takes 1.25× its CPU time (BENCHMARKS.md "SAM attention through textures"), so it is
 * opt-in. `SAM_ATTENTION=fused|composed|texture` or {@link setAttentionImpl} overrides.
 */
export function attentionImpl(): AttentionImpl {
  return forcedAttention ?? (adapterKind() === "software" ? "composed" : "fused");
}

/** Forces one implementation (null: back to the per-adapter default). */
export function setAttentionImpl(i: AttentionImpl | null): void {
  forcedAttention = i;
}

// ---------------------------------------------------------------- row kernels

/** Fewest rows for which a software adapter takes a thread per row whatever the row length. */
const SOFTWARE_THREAD_ROWS_MIN = 128;

/**
 * Row mode of the row kernels (softmax, log-softmax, the bias softmax's backward, LayerNorm) for
 * `rows` rows of `len` elements `inner` apart. GPUs: kernels/softmax.ts's rule by row length. On
 * software adapters a workgroup per row pays a barrier per reduction step and leaves lanes idle: a
 * thread per row measured 20× faster on 32768 rows of 55 (the mask decoder's image→token
 * scores), 2.5× on 4096 rows of 768 (ViT-B's LayerNorm) and 2.2× on 440 rows of 4096
 * (BENCHMARKS.md "SAM: host overhead and attention"), so it is taken wherever there are enough rows
 * to fill the lanes and the row's three passes fit the loop budget.
 */
export function rowModeFor(rows: number, len: number, inner: number): RowMode {
  if (
    adapterKind() === "software" && rows >= SOFTWARE_THREAD_ROWS_MIN &&
    3 * (len + 1) <= LOOP_BUDGET
  ) {
    return { wg: 0 };
  }
  return rowMode(len, inner);
}

// ---------------------------------------------------------------- binding limit

let bindingLimitForTests: number | null = null;

/**
 * Lowers the binding limit the split planners use (engine/split.ts; not the limit `dispatch`
 * enforces) so tests run the split paths on small tensors; `null` restores the adapter's limit.
 */
export function setBindingLimitForTests(bytes: number | null): void {
  bindingLimitForTests = bytes;
}

/** The per-binding limit the planners split for, in bytes. */
export function bindingLimit(): number {
  const real = gpu().limits.maxStorageBufferBindingSize;
  return bindingLimitForTests === null ? real : Math.min(real, bindingLimitForTests);
}
