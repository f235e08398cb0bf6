// One lint config for the TypeScript project; fixture sources (AssemblyScript, WAT) are not TypeScript we ship.
import effect from "@effect/eslint-plugin"
import tseslint from "typescript-eslint"

export default tseslint.config(
  {
    ignores: [
      "node_modules/**",
      "build/**",
      "dist/**",
      "fixtures/**",
      "bench/results/**",
      "bin/**",
      "**/*.mjs"
    ]
  },
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    plugins: { "@effect": effect },
    rules: {
      "@effect/no-import-from-barrel-package": ["error", { packageNames: ["effect"] }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "error",
      // Effect's idiom `interface X extends Schema.Schema.Type<typeof X> {}` names a schema's type.
      "@typescript-eslint/no-empty-object-type": ["error", { allowInterfaces: "with-single-extends" }],
      "@typescript-eslint/consistent-type-imports": "error"
    }
  },
  {
    // Main-thread code never loads worker code: what both sides need lives in src/runtime/abi/.
    files: ["src/**/*.ts"],
    ignores: ["src/runtime/worker/**"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["**/worker/*"], message: "import the shared ABI from src/runtime/abi/" }] }
      ]
    }
  }
)
