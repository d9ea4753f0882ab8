// LayerNorm's vec4 rows (kernels/norm/layer_norm.ts: the thread row mode, inner = 1, L a multiple
// of 4; taken from 128 rows on software adapters) against float64, with the backward, and the
// same rows with the vec4 form turned off; rows that cannot take it (L odd) still match.
import { backward, F, requireGrad, tensor } from "../../engine/mod.ts";
import { setLayerNormVec4Rows } from "../../kernels/norm/layer_norm.ts";
import { layerNormRowsRef } from "../reference/norm.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

await setup();

Deno.test("layerNorm: 130+ rows of vec4s match float64, forward and backward, shifted rows", async () => {
  for (const vec4 of [true, false]) {
    const old = setLayerNormVec4Rows(vec4);
    try {
      for (
        const [rows, L, affine, shift] of [[130, 768, true, 0], [131, 12, false, 300], [
          129,
          7,
          true,
          -50,
        ]] as const
      ) {
        const x = randArray(rows * L, rows + L, -3, 5).map((v) => v + shift);
        const g = randArray(rows * L, 77);
        const w = affine ? randArray(L, 3, 0.5, 1.5) : undefined;
        const b = affine ? randArray(L, 4, -1, 1) : undefined;
        const xt = requireGrad(tensor(x, [rows, L]));
        const wt = w && tensor(w), bt = b && tensor(b);
        const y = F.layerNorm(xt, [L], wt, bt, 1e-6);
        const ref = layerNormRowsRef(x, rows, L, 1, w, b, 1e-6, g);
        const what = `layerNorm [${rows}, ${L}] + ${shift} vec4 ${vec4}`;
        assertClose(await y.data(), ref.y, { what: `${what} y`, atol: 1e-4, rtol: 1e-4 });
        backward(y, tensor(g, [rows, L]));
        assertClose(await xt.grad!.data(), ref.dx, { what: `${what} dx`, atol: 1e-4, rtol: 1e-3 });
        for (const t of [xt.grad!, xt, y, wt, bt]) t?.dispose();
      }
    } finally {
      setLayerNormVec4Rows(old);
    }
  }
});
