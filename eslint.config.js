// @ts-check
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// Type-aware linting (typescript-eslint's strict and stylistic type-checked sets): the rules this project cares
// most about need types: floating or misused promises, and switches that miss a member of a union.
export default defineConfig(
  globalIgnores(['dist/', 'coverage/', '.bench/', 'tmp/']),
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // On in strictTypeChecked already; named here because they are the point of linting this codebase.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // A `default:` does not make a switch over a union (outcomes, reasons, kinds) complete: a member added later
      // must be an error where it is not handled.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: false, requireDefaultForNonUnion: false }],
      // Only the CLI layer prints (see the overrides below); the core returns results and logs through pino.
      'no-console': 'error',
      // Numbers (and bigints) in messages are the normal case here; nullish, boolean, object and any values stay
      // errors, since they print as "undefined", "null" or "[object Object]". (Passing one option resets the
      // others to the rule's lax defaults, hence all of them.)
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowAny: false, allowBoolean: false, allowNullish: false, allowRegExp: false, allowNever: false },
      ],
      // `(resolve) => server.close(resolve)` style callbacks are idiomatic Node; braces around each add nothing.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // An async function that does not await is how this code implements a Promise-returning interface
      // (stop(), connect(), a pool's end()): it also turns a synchronous throw into a rejection.
      '@typescript-eslint/require-await': 'off',
      // `const { run_id, ...rest } = report` is how the code drops fields from a copy.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
      // An empty environment variable means unset here: `env.LOG_LEVEL || fallback` on strings is deliberate.
      '@typescript-eslint/prefer-nullish-coalescing': ['error', { ignorePrimitives: { string: true } }],
      // It asks to replace `x as T` with `x!`, which strictTypeChecked's no-non-null-assertion then forbids.
      '@typescript-eslint/non-nullable-type-assertion-style': 'off',
    },
  },
  {
    // The CLI layer (and the benchmark, a CLI of its own) is where printing belongs.
    files: ['src/cli/**', 'src/bench/**', 'bin/**', 'scripts/**'],
    rules: { 'no-console': 'off' },
  },
  {
    files: ['test/**'],
    rules: {
      // vitest types its asymmetric matchers (expect.any, objectContaining, stringContaining) as `any` so they fit
      // any expected value; every use in an expectation would be a finding. Other `any`s in tests are still
      // caught by no-unsafe-member-access, -call, -argument and -return.
      '@typescript-eslint/no-unsafe-assignment': 'off',
    },
  },
  {
    // Plain JavaScript: this file, measurement scripts and the launcher (no extension, so it is named to be linted at all).
    files: ['**/*.js', '**/*.mjs', 'bin/migrate-users'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: globals.node },
  },
);
