/**
 * The slice of the WebAssembly JS API the plugin host uses. TypeScript declares WebAssembly only in
 * its DOM library, which this Node-only project does not load.
 */
declare namespace WebAssembly {
  class Module {
    constructor(bytes: BufferSource);
  }
  class Instance {
    constructor(module: Module, imports?: Imports);
    readonly exports: Record<string, unknown>;
  }
  class Global {
    value: number | bigint;
  }
  type Imports = Record<string, Record<string, unknown>>;
  function compile(bytes: BufferSource): Promise<Module>;
}
