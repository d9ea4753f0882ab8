/** Float64/plain-array references for the data-moving shape ops (row-major arrays + shapes). */

export const numelOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Row-major strides of `shape`. */
export function stridesOf(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

/** Coordinates of flat index i in `shape`. */
export function coordsOf(i: number, shape: readonly number[]): number[] {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return c;
}

/** Flat index of coordinates `c` in `shape`. */
export function flatOf(c: readonly number[], shape: readonly number[]): number {
  let i = 0;
  for (let d = 0; d < shape.length; d++) i = i * shape[d] + c[d];
  return i;
}

/** out[c] = x[src(c)] over an output shape. */
function mapRef(
  x: ArrayLike<number>,
  shape: number[],
  outShape: number[],
  src: (c: number[]) => number[] | null,
): number[] {
  return Array.from({ length: numelOf(outShape) }, (_, i) => {
    const s = src(coordsOf(i, outShape));
    return s ? x[flatOf(s, shape)] : 0;
  });
}

export function concatRef(
  xs: ArrayLike<number>[],
  shapes: number[][],
  axis: number,
): { data: number[]; shape: number[] } {
  const shape = shapes[0].slice();
  shape[axis] = shapes.reduce((s, sh) => s + sh[axis], 0);
  const data = Array.from({ length: numelOf(shape) }, (_, i) => {
    const c = coordsOf(i, shape);
    let k = 0, p = c[axis];
    while (p >= shapes[k][axis]) p -= shapes[k++][axis];
    const cc = c.slice();
    cc[axis] = p;
    return xs[k][flatOf(cc, shapes[k])];
  });
  return { data, shape };
}

export function padRef(
  x: ArrayLike<number>,
  shape: number[],
  pads: number[],
  value: number,
): { data: number[]; shape: number[] } {
  const lo = shape.map(() => 0), hi = shape.map(() => 0);
  for (let k = 0; k < pads.length / 2; k++) {
    lo[shape.length - 1 - k] = pads[2 * k];
    hi[shape.length - 1 - k] = pads[2 * k + 1];
  }
  const out = shape.map((s, d) => s + lo[d] + hi[d]);
  const data = Array.from({ length: numelOf(out) }, (_, i) => {
    const c = coordsOf(i, out).map((v, d) => v - lo[d]);
    return c.every((v, d) => v >= 0 && v < shape[d]) ? x[flatOf(c, shape)] : value;
  });
  return { data, shape: out };
}

export function flipRef(x: ArrayLike<number>, shape: number[], axes: number[]): number[] {
  return mapRef(x, shape, shape, (c) => c.map((v, d) => (axes.includes(d) ? shape[d] - 1 - v : v)));
}

export function rollRef(
  x: ArrayLike<number>,
  shape: number[],
  shifts: number[],
  axes: number[],
): number[] {
  return mapRef(x, shape, shape, (c) =>
    c.map((v, d) => {
      const k = axes.indexOf(d);
      if (k < 0) return v;
      const n = shape[d];
      return (((v - shifts[k]) % n) + n) % n;
    }));
}

export function transposeRef(
  x: ArrayLike<number>,
  shape: number[],
  a: number,
  b: number,
): { data: number[]; shape: number[] } {
  const out = shape.slice();
  [out[a], out[b]] = [out[b], out[a]];
  const data = mapRef(x, shape, out, (c) => {
    const s = c.slice();
    [s[a], s[b]] = [s[b], s[a]];
    return s;
  });
  return { data, shape: out };
}

/** torch.rot90 by repeated quarter turns, each = flip(dims[1]) then transpose(dims). */
export function rot90Ref(
  x: ArrayLike<number>,
  shape: number[],
  k: number,
  a: number,
  b: number,
): { data: number[]; shape: number[] } {
  let cur = { data: Array.from(x), shape: shape.slice() };
  for (let t = 0; t < (((k % 4) + 4) % 4); t++) {
    cur = transposeRef(flipRef(cur.data, cur.shape, [b]), cur.shape, a, b);
  }
  return cur;
}

/** x[..., idx, ...] along `axis` with a 1-D index (negative wraps). */
export function indexSelectRef(
  x: ArrayLike<number>,
  shape: number[],
  axis: number,
  idx: number[],
): { data: number[]; shape: number[] } {
  const out = shape.slice();
  out[axis] = idx.length;
  const data = mapRef(x, shape, out, (c) => {
    const s = c.slice();
    s[axis] = idx[c[axis]] < 0 ? idx[c[axis]] + shape[axis] : idx[c[axis]];
    return s;
  });
  return { data, shape: out };
}

export function gatherRef(
  x: ArrayLike<number>,
  shape: number[],
  axis: number,
  idx: ArrayLike<number>,
  idxShape: number[],
): number[] {
  return Array.from({ length: numelOf(idxShape) }, (_, i) => {
    const c = coordsOf(i, idxShape);
    c[axis] = idx[i];
    return x[flatOf(c, shape)];
  });
}

/** torch.Tensor.repeat. */
export function repeatRef(
  x: ArrayLike<number>,
  shape: number[],
  reps: number[],
): { data: number[]; shape: number[] } {
  const sh = [...new Array<number>(reps.length - shape.length).fill(1), ...shape];
  const out = sh.map((s, d) => s * reps[d]);
  return { data: mapRef(x, sh, out, (c) => c.map((v, d) => v % sh[d])), shape: out };
}
