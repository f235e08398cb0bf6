/**
 * What `ndp inspect` and `ndp pack` add to the loader's report: which ABI a module seems to target
 * when it is not an Extism plugin (so the user learns why its imports are refused), and a warning
 * when it exports none of the functions Navidrome calls.
 */
import { capabilityExports } from "../capabilities/Capabilities.js"

/** The ABI a module's imports and exports point to. */
export type Abi =
  "extism" | "wasm-bindgen" | "emscripten" | "go-js" | "wasi-command" | "wasi-unstable" | "plain-env" | "none"

export interface ModuleShape {
  readonly capabilities: ReadonlyArray<string>
  readonly exports: ReadonlyArray<string>
  readonly imports: ReadonlyArray<{ readonly module: string; readonly name: string }>
}

const sample = (names: ReadonlyArray<string>) =>
  names.slice(0, 3).join(", ") + (names.length > 3 ? `, … (${names.length} in all)` : "")

const EXTISM_ADVICE = "build it with an Extism PDK (Rust, Go, AssemblyScript, …) as a Navidrome plugin"

/** The module's likely ABI and the warnings that follow from its shape. */
export const describeModule = (shape: ModuleShape): { abi: Abi; warnings: Array<string> } => {
  const warnings: Array<string> = []
  const from = (module: string) => shape.imports.filter((i) => i.module === module).map((i) => i.name)
  const all = shape.imports.map((i) => i.name)
  const extism = shape.imports.some((i) => i.module.startsWith("extism:"))
  const bindgen = all.filter((n) => n.startsWith("__wbindgen_") || n.startsWith("__wbg_"))
  const emscripten = all.filter(
    (n) => n.startsWith("emscripten_") || n.startsWith("_emscripten_") || n.startsWith("__syscall_")
  )
  const goJs = [...from("go"), ...from("gojs")]
  const env = from("env")
  const wasi = from("wasi_snapshot_preview1")

  let abi: Abi = extism ? "extism" : "none"
  if (bindgen.length > 0) {
    abi = "wasm-bindgen"
    warnings.push(
      `seems built with wasm-bindgen (imports ${sample(bindgen)}): it expects JavaScript glue code, which no plugin host provides; ${EXTISM_ADVICE}`
    )
  } else if (emscripten.length > 0) {
    abi = "emscripten"
    warnings.push(
      `seems built with Emscripten (imports ${sample(emscripten)}): it expects Emscripten's JavaScript runtime; ${EXTISM_ADVICE}`
    )
  } else if (goJs.length > 0) {
    abi = "go-js"
    warnings.push(
      `seems built with GOOS=js (imports from "go"/"gojs": ${sample(goJs)}): that targets a browser; build with TinyGo or Go for wasip1 and the Extism Go PDK`
    )
  } else if (from("wasi_unstable").length > 0) {
    abi = "wasi-unstable"
    warnings.push(
      `imports the pre-release WASI module "wasi_unstable"; rebuild for wasi_snapshot_preview1 (wasm32-wasip1) with an Extism PDK`
    )
  } else if (
    !extism &&
    wasi.length > 0 &&
    wasi.length === shape.imports.length &&
    shape.exports.includes("_start")
  ) {
    abi = "wasi-command"
    warnings.push(
      `seems to be a WASI command (exports _start and imports only wasi_snapshot_preview1): it is a program to run, not a plugin to call; ${EXTISM_ADVICE}`
    )
  } else if (!extism && env.length > 0) {
    abi = "plain-env"
    warnings.push(
      `imports from "env" (${sample(env)}) and nothing from Extism: no plugin host provides those; ${EXTISM_ADVICE}`
    )
  } else if (!extism && shape.exports.length > 0) {
    warnings.push(
      `imports nothing from Extism (extism:host/env), so it cannot read its input or write its output; ${EXTISM_ADVICE}`
    )
  }

  if (shape.capabilities.length === 0) {
    const examples = Object.values(capabilityExports)
      .map((fns) => fns[0]!)
      .slice(0, 4)
      .join(", ")
    warnings.push(
      `exports none of the capability functions (${examples}, …): it loads, but Navidrome will never call it`
    )
  }
  return { abi, warnings }
}

/** A hint for a binary WebAssembly cannot compile as a core module, from its header. */
export const binaryHint = (wasm: Uint8Array): string | undefined => {
  const magic = wasm[0] === 0x00 && wasm[1] === 0x61 && wasm[2] === 0x73 && wasm[3] === 0x6d
  if (!magic) return "plugin.wasm is not WebAssembly (it does not start with \\0asm)"
  // Core modules are version 1 (01 00 00 00); components carry a layer field of 1 (0d 00 01 00).
  if (wasm[4] !== 0x01 && wasm[6] === 0x01 && wasm[7] === 0x00) {
    return `plugin.wasm is a WebAssembly component (component model), not a core module; ${EXTISM_ADVICE} (e.g. target wasm32-wasip1, not wasm32-wasip2 or cargo component)`
  }
  return undefined
}
