// Lint rules for the whole monorepo: typescript-eslint's recommended set,
// plus the few rules that guard what the architecture asks of code.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "libs/contracts/src/gen/**", "deploy/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly", Buffer: "readonly", URL: "readonly", setTimeout: "readonly", clearTimeout: "readonly", setInterval: "readonly", clearInterval: "readonly", performance: "readonly", TextEncoder: "readonly", Headers: "readonly", AbortController: "readonly", AbortSignal: "readonly", NodeJS: "readonly" } },
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": ["error", { allow: ["error"] }],
      eqeqeq: ["error", "always"],
    },
  },
  {
    files: ["scripts/**", "bench/**", "deploy/**"],
    rules: { "no-console": "off" },
  },
);
