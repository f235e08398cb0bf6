/**
 * Link-time permission gating: every import of a module is checked against the Extism kernel,
 * WASI, and the host functions the manifest's permissions grant, before any instance exists.
 */
import type { Manifest } from "../manifest/Manifest.js"
import { hostFunctionCatalog } from "../host/HostCatalog.js"
import { type HostServiceProvider, isGranted } from "../host/HostProvider.js"
import type { WasmImport } from "../runtime/WasmBinary.js"
import {
  EXTISM_ENV,
  EXTISM_USER,
  kernelFunctionNames,
  kernelHttpFunctionNames,
  WASI,
  wasiFunctionNames
} from "../runtime/abi/Imports.js"

/** An import that cannot be satisfied, with the permission that would grant it when there is one. */
export interface LinkProblem {
  readonly module: string
  readonly name: string
  readonly permission?: string
  readonly message: string
}

/** What the worker must provide to a plugin whose imports all link. */
export interface LinkPlan {
  readonly userFunctions: ReadonlyArray<string>
  readonly envHttp: boolean
}

const describe = (i: WasmImport): string => `"${i.module}" "${i.name}"`

/** Checks every import; returns the plan, and every problem found (empty when the module links). */
export const planImports = (
  manifest: Manifest,
  imports: ReadonlyArray<WasmImport>,
  providers: ReadonlyArray<HostServiceProvider>
): { readonly plan: LinkPlan; readonly problems: ReadonlyArray<LinkProblem> } => {
  const provided = new Set(providers.flatMap((p) => p.functions))
  const problems: Array<LinkProblem> = []
  const userFunctions: Array<string> = []
  let envHttp = false
  for (const i of imports) {
    const problem = (message: string, permission?: string): void => {
      problems.push({
        module: i.module,
        name: i.name,
        message,
        ...(permission === undefined ? {} : { permission })
      })
    }
    if (i.kind !== "function") {
      problem(`imports ${describe(i)} as a ${i.kind}; plugins may import only functions`)
      continue
    }
    switch (i.module) {
      case EXTISM_ENV: {
        if (kernelHttpFunctionNames.has(i.name)) {
          if (!isGranted(manifest, "http")) {
            problem(
              `imports ${describe(i)}, which needs the "http" permission; declare it in manifest.json`,
              "http"
            )
          } else if (!provided.has("http_request")) {
            problem(`imports ${describe(i)}, whose "http" service is not installed in this engine`, "http")
          } else {
            envHttp = true
          }
        } else if (!kernelFunctionNames.has(i.name)) {
          problem(
            `imports ${describe(i)}, which is not an Extism kernel function; rebuild the plugin with a current PDK`
          )
        }
        break
      }
      case EXTISM_USER: {
        const grant = hostFunctionCatalog.get(i.name)
        if (grant === undefined) {
          problem(`imports ${describe(i)}, which is not a host function this engine knows`)
        } else if (!isGranted(manifest, grant)) {
          problem(
            `imports ${describe(i)}, which needs the "${grant}" permission; declare it in manifest.json`,
            grant
          )
        } else if (!provided.has(i.name)) {
          problem(`imports ${describe(i)}, whose "${grant}" service is not installed in this engine`, grant)
        } else {
          userFunctions.push(i.name)
        }
        break
      }
      case WASI: {
        if (!wasiFunctionNames.has(i.name))
          problem(`imports ${describe(i)}, which is not a WASI preview 1 function`)
        break
      }
      default: {
        const hint =
          i.module === "env" && i.name === "abort"
            ? " (AssemblyScript adds it: build with --use abort=<your handler>)"
            : ""
        problem(
          `imports ${describe(i)} from an unknown module${hint}; plugins may import only Extism, host and WASI functions`
        )
      }
    }
  }
  return { plan: { userFunctions, envHttp }, problems }
}
