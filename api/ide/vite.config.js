import { defineConfig } from 'vite';

// Built into dist/, which the API embeds when it is compiled (api/build.rs) and serves under
// /graphql/: the page at /graphql, everything else at /graphql/assets/<name>-<hash>.<ext>.
export default defineConfig({
  base: '/graphql/',
  oxc: { jsx: { runtime: 'automatic' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    // Fonts and images as files, never data: URIs, so the page's CSP needs no data: source.
    assetsInlineLimit: 0,
    // No inline polyfill script: the CSP allows scripts from 'self' only.
    modulePreload: { polyfill: false },
    sourcemap: false,
    // Monaco and GraphiQL are large; the IDE is a developer tool loaded once and cached.
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      onwarn(warning, warn) {
        // React Server Components' "use client" markers mean nothing in this bundle.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
    },
  },
  worker: { format: 'es' },
});
