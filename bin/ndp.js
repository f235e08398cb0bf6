#!/usr/bin/env node
// The `ndp` program: the compiled entry (npm run build writes dist/). Node 22 and later keep a
// compile cache of the modules it loads, which roughly halves the start of later runs.
import module from "node:module"

module.enableCompileCache?.()
await import("../dist/cli/main.js")
