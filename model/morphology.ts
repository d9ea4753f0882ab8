/**
 * Binary/gray morphology with a square structuring element on uint8 maps, as OpenCV does it
 * (outside pixels ignored). One implementation for the CAM mask's opening (`model/cam.ts`) and
 * the tissue mask's closing (`pipeline/wsi/tissue.ts`); it lives in model/ so both layers can
 * import it.
 */

/**
 * Running max (dilate) or min (erode) over a centred k×k square, pixels outside the image
 * ignored (OpenCV's default border for morphology). Separable van Herk/Gil-Werman: O(1) per
 * pixel whatever k.
 */
export function morph(
  src: Uint8Array,
  width: number,
  height: number,
  k: number,
  op: "dilate" | "erode",
): Uint8Array {
  const tmp = new Uint8Array(width * height);
  const out = new Uint8Array(width * height);
  const line = new Uint8Array(Math.max(width, height));
  const res = new Uint8Array(Math.max(width, height));
  const maxOp = op === "dilate";
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) line[x] = src[y * width + x];
    run1d(line, width, k, maxOp, res);
    tmp.set(res.subarray(0, width), y * width);
  }
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) line[y] = tmp[y * width + x];
    run1d(line, height, k, maxOp, res);
    for (let y = 0; y < height; y++) out[y * width + x] = res[y];
  }
  return out;
}

/** 1-D van Herk: out[i] = max/min of in[i-r .. i+r] clipped to [0, n). */
function run1d(inp: Uint8Array, n: number, k: number, isMax: boolean, out: Uint8Array): void {
  const r = k >> 1;
  if (n === 0) return;
  // Pad with the neutral value so clipped windows ignore the outside.
  const neutral = isMax ? 0 : 255;
  const m = n + 2 * r;
  const padded = new Uint8Array(m + k).fill(neutral);
  padded.set(inp.subarray(0, n), r);
  // Van Herk/Gil-Werman: running best from each block start (prefix) and from its end (suffix).
  const prefix = new Uint8Array(m + k), suffix = new Uint8Array(m + k);
  const best = isMax
    ? (a: number, b: number) => (a > b ? a : b)
    : (a: number, b: number) => (a < b ? a : b);
  for (let s = 0; s < m; s += k) {
    const e = Math.min(s + k, m + k);
    prefix[s] = padded[s];
    for (let i = s + 1; i < e; i++) prefix[i] = best(prefix[i - 1], padded[i]);
    suffix[e - 1] = padded[e - 1];
    for (let i = e - 2; i >= s; i--) suffix[i] = best(suffix[i + 1], padded[i]);
  }
  // Window [i, i+k-1] in padded coordinates is centred on input i.
  for (let i = 0; i < n; i++) out[i] = best(suffix[i], prefix[i + k - 1]);
}

/** Morphological opening (erode then dilate) with a k×k square. */
export function openSquare(src: Uint8Array, width: number, height: number, k: number): Uint8Array {
  return morph(morph(src, width, height, k, "erode"), width, height, k, "dilate");
}
