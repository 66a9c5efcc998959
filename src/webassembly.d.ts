/**
 * The part of the WebAssembly JS API that nat/siphash.ts uses. Node has it as a global, but
 * TypeScript declares it only in the DOM and web-worker libraries, which a Node program does
 * not load (tsconfig "lib": ES2022).
 */
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports?: Record<string, unknown>);
    readonly exports: Record<string, unknown>;
  }
  interface Memory {
    readonly buffer: ArrayBuffer;
  }
}
