/**
 * `WebAssembly.Module` under a name the published declarations can use. TypeScript declares the
 * WebAssembly namespace only in the DOM library, which Node servers often leave out; a consumer
 * without it would fail to type-check our `.d.ts`. With the namespace declared (the DOM library,
 * or src/types/webassembly.d.ts while building) this is the real class; without it, an opaque
 * object the consumer can only pass back to the engine.
 */
export type WasmModule = typeof globalThis extends {
  readonly WebAssembly: { readonly Module: abstract new (...args: never) => infer M }
}
  ? M
  : object
