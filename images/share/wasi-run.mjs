// xpcargo's runner for wasm32-wasip1 programs (CARGO_TARGET_WASM32_WASIP1_RUNNER = node --no-warnings <this file>):
// Node's WASI preview 1 (node:wasi, Debian's nodejs) runs the module with its arguments and the container's
// environment, and exits with the program's exit code. The program sees the working directory, both as `.` and at
// its own absolute path, so that relative paths and paths under it (CARGO_MANIFEST_DIR when Cargo runs a test
// from its package) work; nothing else of the file system is open to it. A trap (a panic: wasm32-wasip1 aborts on
// panic) exits with 134, as a program killed by SIGABRT does, the code wasmtime gives a trap too.
import { readFile } from "node:fs/promises";
import process from "node:process";
import { WASI } from "node:wasi";

const [program, ...args] = process.argv.slice(2);
if (program === undefined) {
    process.stderr.write("usage: node wasi-run.mjs PROGRAM.wasm [ARG...]\n");
    process.exit(2);
}
const cwd = process.cwd();
const wasi = new WASI({
    version: "preview1",
    args: [program, ...args],
    env: process.env,
    preopens: { ".": cwd, [cwd]: cwd },
    returnOnExit: true,
});
let code;
try {
    const module = await WebAssembly.compile(await readFile(program));
    const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
    code = wasi.start(instance);
} catch (error) {
    process.stderr.write(`wasi-run: ${program}: ${error instanceof Error ? error.stack : error}\n`);
    code = error instanceof WebAssembly.RuntimeError ? 134 : 1;
}
process.exitCode = code;
