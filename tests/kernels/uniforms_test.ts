/** The uniform-block declaration: WGSL struct text, WGSL's alignment rules, named packing. */
import assert from "node:assert/strict";
import { uniforms } from "../../kernels/uniforms.ts";

Deno.test("uniforms: struct text and packed bytes follow one declaration", () => {
  const layout = uniforms({ n: "u32", delta: "i32", alpha: "f32", _pad: "u32" });
  assert.equal(layout.wgsl("P"), "struct P { n: u32, delta: i32, alpha: f32, _pad: u32 }");
  const bytes = layout.pack({ alpha: 1.5, n: 7, delta: -2 }); // order of the object is irrelevant
  assert.equal(bytes.byteLength, 16);
  const dv = new DataView(bytes.buffer);
  assert.deepEqual([dv.getUint32(0, true), dv.getInt32(4, true), dv.getFloat32(8, true)], [
    7,
    -2,
    1.5,
  ]);
  assert.equal(dv.getUint32(12, true), 0);
});

Deno.test("uniforms: dims8 arrays start on 16 bytes and the block pads to 16", () => {
  const layout = uniforms({ n: "u32", rank: "u32", off: "u32", shape: "dims8", last: "f32" });
  assert.equal(
    layout.wgsl("P"),
    "struct P { n: u32, rank: u32, off: u32, shape: array<vec4<u32>, 2>, last: f32 }",
  );
  assert.equal(layout.byteSize, 64); // 12 → 16 (align) + 32 + 4 → 52 → 64
  const bytes = layout.pack({ n: 1, rank: 2, off: 3, shape: [1, 2, 3, 4, 5, 6, 7, 8], last: 9 });
  const dv = new DataView(bytes.buffer);
  assert.equal(dv.getUint32(12, true), 0, "alignment gap stays zero");
  assert.deepEqual(Array.from({ length: 8 }, (_, i) => dv.getUint32(16 + 4 * i, true)), [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
  ]);
  assert.equal(dv.getFloat32(48, true), 9);
  assert.equal(uniforms({ a: "u32" }).pack({ a: 1 }).byteLength, 16, "at least 16 bytes");
});

Deno.test("uniforms: a missing, extra or ill-sized field throws instead of binding wrong values", () => {
  const layout = uniforms({ M: "u32", N: "u32", shape: "dims8" });
  const shape = [1, 1, 1, 1, 1, 1, 1, 1];
  // deno-lint-ignore no-explicit-any
  const pack = (v: any) => layout.pack(v);
  assert.throws(() => pack({ M: 1, shape }), /field N is missing/);
  assert.throws(() => pack({ M: 1, N: 2, K: 3, shape }), /unexpected field K/);
  assert.throws(() => pack({ M: 1, N: 2, shape: [1, 2] }), /shape needs 8 u32 values/);
  assert.throws(() => pack({ M: [1], N: 2, shape }), /M needs a number/);
  assert.throws(() => uniforms({ "a b": "u32" }), /not a WGSL field name/);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => uniforms({ a: "vec3" as any }), /unknown type/);
});
