/** A plugin spec for tests that drive the internal `WorkerPool` directly with a compiled module. */
import { defaultLogBudget, makeLogBudget, type PluginSpec } from "../../src/runtime/abi/protocol.js"

/** `key` is `<id>#<n>`; `userFunctions` are the `extism:host/user` names the module imports. */
export const poolSpec = (
  compiled: WebAssembly.Module,
  key: string,
  userFunctions: ReadonlyArray<string> = []
): PluginSpec => ({
  key,
  id: key.split("#")[0]!,
  module: compiled,
  config: {},
  userFunctions,
  workerFunctions: [],
  envHttp: false,
  logLevel: 2,
  freshInstance: false,
  mounts: [],
  limits: {
    maxHostMemoryBytes: 1 << 20,
    maxOutputBytes: 1 << 20,
    maxVarBytes: 1 << 20,
    maxLinearMemoryBytes: 16 << 20
  },
  logBudget: makeLogBudget(defaultLogBudget)
})
