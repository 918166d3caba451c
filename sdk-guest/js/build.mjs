#!/usr/bin/env node
// Builds a JavaScript (or TypeScript) plugin into a WebAssembly component:
// bundles the plugin with its npm dependencies and this SDK (esbuild), then
// componentizes the bundle against the Kiln WIT world (componentize-js).
// `kiln build` runs this; it can also be run by hand:
//
//   node build.mjs --plugin DIR --wit WIT_DIR --out FILE.wasm [--debug]
//
// --debug uses StarlingMonkey's debug build: the component keeps its names
// section, so a crash inside the JS engine shows function names in the
// engine log's backtrace.

import { mkdir, readFile, rm, writeFile, rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const sdk = dirname(fileURLToPath(import.meta.url));

function fail(message) {
  console.error(`kiln build: ${message}`);
  process.exit(1);
}

const { values: args } = parseArgs({
  options: {
    plugin: { type: 'string', default: '.' },
    wit: { type: 'string', default: join(sdk, '..', '..', 'wit') },
    world: { type: 'string', default: 'kiln:plugin/full-plugin' },
    out: { type: 'string' },
    debug: { type: 'boolean', default: false },
  },
});

const pluginDir = resolve(args.plugin);
const pkgPath = join(pluginDir, 'package.json');
let pkg;
try {
  pkg = JSON.parse(await readFile(pkgPath, 'utf8'));
} catch (e) {
  fail(`cannot read ${pkgPath}: ${e.message}`);
}
if (typeof pkg.name !== 'string' || !/^[a-z][a-z0-9_-]{0,63}$/.test(pkg.name)) {
  fail(`package.json "name" must be the plugin name: 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter (got ${JSON.stringify(pkg.name)})`);
}
const entry = resolve(pluginDir, pkg.main || 'index.js');
if (!existsSync(entry)) fail(`the entry module ${entry} does not exist (package.json "main")`);
const witDir = resolve(args.wit);
if (!existsSync(join(witDir, 'worlds.wit'))) fail(`${witDir} is not the Kiln WIT folder (no worlds.wit)`);
const out = resolve(args.out || join(pluginDir, 'dist', `${pkg.name}.wasm`));

const work = join(pluginDir, 'dist', '.build');
await mkdir(work, { recursive: true });
const stub = join(work, 'entry.js');
const bundle = join(work, `${pkg.name}.bundle.js`);
const info = { name: pkg.name, version: pkg.version, description: pkg.description };
await writeFile(
  stub,
  `import * as user from ${JSON.stringify(entry)};
import { adapt } from ${JSON.stringify(join(sdk, 'src', 'adapter.js'))};
const wit = adapt(user, ${JSON.stringify(info)});
export const plugin = wit.plugin;
export const httpHandler = wit.httpHandler;
export const httpPrices = wit.httpPrices;
export const graphql = wit.graphql;
export const mcp = wit.mcp;
export const authProvider = wit.authProvider;
`,
);

const started = Date.now();
const esbuild = await import('esbuild');
try {
  await esbuild.build({
    entryPoints: [stub],
    outfile: bundle,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    mainFields: ['module', 'main'],
    conditions: ['worker', 'browser', 'import'],
    alias: { kiln: join(sdk, 'src', 'index.js') },
    // WIT imports stay imports: componentize-js binds them to the host.
    external: ['kiln:*', 'wasi:*'],
    nodePaths: [join(pluginDir, 'node_modules')],
    logLevel: 'warning',
    legalComments: 'none',
  });
} catch {
  fail('bundling failed (see the errors above)');
}
const bundled = Date.now();

const { componentize } = await import('@bytecodealliance/componentize-js');
let component;
try {
  ({ component } = await componentize({
    sourcePath: bundle,
    witPath: witDir,
    worldName: args.world,
    debugBuild: args.debug,
  }));
} catch (e) {
  fail(`componentize failed: ${e.message || e}`);
}
await mkdir(dirname(out), { recursive: true });
const tmp = `${out}.${process.pid}.tmp`;
await writeFile(tmp, component);
await rename(tmp, out);
await rm(work, { recursive: true, force: true });
console.error(
  `kiln build: ${pkg.name} -> ${out} (${(component.length / 1048576).toFixed(1)} MB; bundle ${bundled - started} ms, componentize ${Date.now() - bundled} ms)`,
);
console.log(out);
