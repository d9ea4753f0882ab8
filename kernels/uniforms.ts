/**
 * A kernel's uniform block, declared once: `uniforms({n: "u32", alpha: "f32", shape: "dims8"})`
 * gives both the WGSL struct (`layout.wgsl("P")`) and a packer with named fields
 * (`layout.pack({n, alpha, shape})`), so the struct and the bytes cannot drift apart: a missing,
 * extra or misspelt name throws, and field order lives in one place only.
 *
 * Layout follows WGSL's uniform address space: 4-byte scalars at 4-byte alignment, a `dims8`
 * (`array<vec4<u32>, 2>`, up to 8 dims: kernels/common.ts `dims8`) at 16-byte alignment, the block
 * padded to a multiple of 16 bytes (and at least 16). Fields whose names start with `_` are
 * padding: always zero, never passed.
 */

/** WGSL type of a uniform field. `dims8` is `array<vec4<u32>, 2>` (8 u32s, 16-byte aligned). */
export type UniformType = "u32" | "i32" | "f32" | "dims8";

type FieldValue<T extends UniformType> = T extends "dims8" ? readonly number[] : number;

/** The values `pack` takes: every field not named `_...`, nothing else. */
export type UniformValues<F extends Record<string, UniformType>> = {
  [K in keyof F as K extends `_${string}` ? never : K]: FieldValue<F[K]>;
};

export interface UniformLayout<F extends Record<string, UniformType>> {
  readonly fields: F;
  /** Bytes the packed block takes (a multiple of 16). */
  readonly byteSize: number;
  /** `struct <name> { a: u32, b: f32, ... }` */
  wgsl(structName: string): string;
  /** The block's bytes; throws on a missing, extra or ill-sized field. */
  pack(values: UniformValues<F>): Uint8Array;
}

const WGSL_TYPE: Record<UniformType, string> = {
  u32: "u32",
  i32: "i32",
  f32: "f32",
  dims8: "array<vec4<u32>, 2>",
};

interface Slot {
  name: string;
  type: UniformType;
  offset: number;
}

/** Declares a uniform block (see the module comment). */
export function uniforms<const F extends Record<string, UniformType>>(
  fields: F,
): UniformLayout<F> {
  const slots: Slot[] = [];
  let offset = 0;
  for (const [name, type] of Object.entries(fields)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || name.startsWith("__")) {
      throw new Error(`uniforms: ${JSON.stringify(name)} is not a WGSL field name`);
    }
    if (!(type in WGSL_TYPE)) throw new Error(`uniforms: field ${name} has unknown type ${type}`);
    if (type === "dims8") offset = Math.ceil(offset / 16) * 16;
    slots.push({ name, type, offset });
    offset += type === "dims8" ? 32 : 4;
  }
  const byteSize = Math.max(16, Math.ceil(offset / 16) * 16);
  const names = new Set(slots.filter((s) => !s.name.startsWith("_")).map((s) => s.name));
  const text = slots.map((s) => `${s.name}: ${WGSL_TYPE[s.type]}`).join(", ");
  return {
    fields,
    byteSize,
    wgsl: (structName) => `struct ${structName} { ${text} }`,
    pack(values) {
      const given = values as Record<string, number | readonly number[]>;
      for (const k of Object.keys(given)) {
        if (!names.has(k)) {
          throw new Error(
            `uniforms: unexpected field ${k} (the block declares ${[...names].join(", ")})`,
          );
        }
      }
      const bytes = new Uint8Array(byteSize);
      const view = new DataView(bytes.buffer);
      for (const s of slots) {
        if (s.name.startsWith("_")) continue;
        const v = given[s.name];
        if (v === undefined) throw new Error(`uniforms: field ${s.name} is missing`);
        if (s.type === "dims8") {
          if (typeof v === "number" || v.length !== 8) {
            throw new Error(`uniforms: field ${s.name} needs 8 u32 values (dims8)`);
          }
          for (let i = 0; i < 8; i++) view.setUint32(s.offset + 4 * i, v[i] >>> 0, true);
        } else if (typeof v !== "number") {
          throw new Error(`uniforms: field ${s.name} needs a number, got a list`);
        } else if (s.type === "u32") view.setUint32(s.offset, v >>> 0, true);
        else if (s.type === "i32") view.setInt32(s.offset, v | 0, true);
        else view.setFloat32(s.offset, v, true);
      }
      return bytes;
    },
  };
}
