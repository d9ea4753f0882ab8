/**
 * Worker side of the tile encoder pool (pipeline/viewer/encoder.ts): JPEG-encodes RGBA pixels off
 * the server's thread, so tiles already cached keep being served while new ones are encoded.
 */
import { encode as encodeJpeg } from "jpeg-js";

interface Job {
  id: number;
  rgba: Uint8Array;
  width: number;
  height: number;
  quality: number;
}

/** The worker's global scope (the project's compiler options carry window types only). */
const scope = self as unknown as {
  onmessage: ((e: MessageEvent<Job>) => void) | null;
  postMessage(msg: unknown, transfer?: Transferable[]): void;
};

scope.onmessage = (e: MessageEvent<Job>) => {
  const { id, rgba, width, height, quality } = e.data;
  try {
    const j = encodeJpeg({ data: rgba, width, height }, quality).data;
    const bytes = new Uint8Array(j.buffer, j.byteOffset, j.byteLength).slice();
    scope.postMessage({ id, bytes }, [bytes.buffer]);
  } catch (err) {
    scope.postMessage({ id, error: (err as Error).message });
  }
};
