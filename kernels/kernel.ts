/**
 * What a kernel file hands the engine: a WGSL program compiled on demand, named by a cache key.
 * It lives here, on the floor of the layering, so kernels/ needs nothing from engine/.
 */

/** A compiled-on-demand WGSL program. Binding 0 is the uniform block; storage bindings follow. */
export interface Kernel {
  /** Cache key: name plus every specialisation constant baked into `wgsl`. */
  key: string;
  /** WGSL source, built only on a cache miss. */
  wgsl: () => string;
}
