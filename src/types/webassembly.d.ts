/**
 * The part of the WebAssembly JS API the engine uses. TypeScript only declares it in the DOM
 * libraries, which would also bring browser globals (fetch, WebSocket…) that Node 20 lacks.
 */
declare namespace WebAssembly {
  type ImportExportKind = "function" | "global" | "memory" | "table" | "tag"
  interface ModuleImportDescriptor {
    readonly kind: ImportExportKind
    readonly module: string
    readonly name: string
  }
  interface ModuleExportDescriptor {
    readonly kind: ImportExportKind
    readonly name: string
  }
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  type ExportValue = Function | Global | Memory | Table
  type Exports = Record<string, ExportValue>
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  type ImportValue = ExportValue | number | bigint | Function
  type ModuleImports = Record<string, ImportValue>
  type Imports = Record<string, ModuleImports>
  type BufferSource = ArrayBufferView | ArrayBuffer

  class Module {
    constructor(bytes: BufferSource)
    static imports(module: Module): Array<ModuleImportDescriptor>
    static exports(module: Module): Array<ModuleExportDescriptor>
    static customSections(module: Module, name: string): Array<ArrayBuffer>
  }
  class Instance {
    constructor(module: Module, imports?: Imports)
    readonly exports: Exports
  }
  interface MemoryDescriptor {
    initial: number
    maximum?: number
    shared?: boolean
  }
  class Memory {
    constructor(descriptor: MemoryDescriptor)
    readonly buffer: ArrayBuffer
    grow(delta: number): number
  }
  class Table {
    readonly length: number
  }
  class Global {
    value: unknown
  }
  class CompileError extends Error {}
  class LinkError extends Error {}
  class RuntimeError extends Error {}
  function validate(bytes: BufferSource): boolean
  function compile(bytes: BufferSource): Promise<Module>
  function instantiate(module: Module, imports?: Imports): Promise<Instance>
}
