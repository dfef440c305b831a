// xpcargo's runner for wasm32-wasip1 programs (CARGO_TARGET_WASM32_WASIP1_RUNNER = node --no-warnings <this file>):
// Node's WASI preview 1 (node:wasi, Debian's nodejs) runs the module with its arguments and the container's
// environment, and exits with the program's exit code. The program sees the working directory, both as `.` and at
// its own absolute path, so that relative paths and paths under it (CARGO_MANIFEST_DIR when Cargo runs a test
// from its package) work; nothing else of the file system is open to it. A trap (a panic: wasm32-wasip1 aborts on
// panic) exits with 134, as a program killed by SIGABRT does, the code wasmtime gives a trap too. A module that
// imports what the runner does not provide is not started: one line names the import and what usually provides it,
// and the runner exits with 127, as the dynamic loader does for a missing library.
import { readFile } from "node:fs/promises";
import process from "node:process";
import v8 from "node:v8";
import { WASI } from "node:wasi";

// Node 20 calls its WASI functions from WebAssembly through V8's fast API calls, in which V8 must not collect
// garbage; but each call's allocations are reported to V8 as external memory, and once a module's memory has grown
// past about 32 MiB that report starts a collection inside the fast call, which leaves the heap corrupt: Node then
// crashes (SIGSEGV, exit 139) in the JavaScript it runs after the module returned, most of the time, whatever the
// program's exit code (nodejs/node#46777, #53087). Without fast calls each WASI call is an ordinary API call, where
// a collection is safe. Set before any module is compiled: V8 reads the flag when it compiles the module's imports.
v8.setFlagsFromString("--no-turbo-fast-api-calls");

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
// What usually provides an import of ``module``: the reason a module built elsewhere, or linked incompletely, asks
// for it.
function providedBy(module) {
    if (module === "wasi_snapshot_preview1") {
        return "a WASI preview 1 function that Node's WASI does not implement";
    }
    if (module === "wasi_unstable") {
        return "WASI's old snapshot 0, which Node's WASI preview 1 does not provide: rebuild for wasm32-wasip1";
    }
    if (module.startsWith("wasi:")) {
        return "a WASI preview 2 interface (a component, wasm32-wasip2): this runner runs preview 1 modules only";
    }
    if (module === "env") {
        return (
            "a C function that no linked library defines, left to the host by the linker: link the C library that " +
            "defines it (for wasi-libc's emulations, its -lwasi-emulated-* library)"
        );
    }
    if (module === "wbg" || module.startsWith("__wbindgen")) {
        return "wasm-bindgen's JavaScript glue (wasm32-unknown-unknown, for a browser), which WASI does not have";
    }
    return "the module's own host (a `#[link(wasm_import_module = ...)]` block, or an embedder's API); not WASI";
}

// A name from the module, shown as data: quoted and escaped (no control character reaches the terminal), and cut.
function shown(name) {
    const quoted = JSON.stringify(name.length > 100 ? `${name.slice(0, 100)}...` : name);
    return quoted.replace(/[\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/gu, (c) => `\\u${c.codePointAt(0).toString(16).padStart(4, "0")}`);
}

let code;
try {
    const module = await WebAssembly.compile(await readFile(program));
    const provided = wasi.getImportObject();
    const missing = WebAssembly.Module.imports(module).filter(
        (item) => !Object.hasOwn(provided, item.module) || !Object.hasOwn(provided[item.module], item.name),
    );
    if (missing.length > 0) {
        const [first] = missing;
        const others = missing.length > 1 ? ` (and ${missing.length - 1} other missing import(s))` : "";
        process.stderr.write(
            `wasi-run: ${program}: imports ${first.kind} ${shown(first.name)} from module ${shown(first.module)}` +
                `${others}, which this runner (Node's WASI preview 1) does not provide; ` +
                `usually provided by ${providedBy(first.module)}\n`,
        );
        process.exit(127);
    }
    const instance = await WebAssembly.instantiate(module, provided);
    code = wasi.start(instance);
} catch (error) {
    process.stderr.write(`wasi-run: ${program}: ${error instanceof Error ? error.stack : error}\n`);
    code = error instanceof WebAssembly.RuntimeError ? 134 : 1;
}
// A process's exit status is 8 bits: Node, like the kernel, keeps the low byte of a larger code, so a program that
// exits with 256 would be reported a success. A code outside 0 to 255 is a failure, and exits with 1.
if (code !== undefined && !(Number.isInteger(code) && code >= 0 && code <= 255)) {
    process.stderr.write(`wasi-run: ${program}: exited with ${code}, outside an exit status's 0 to 255: exiting with 1\n`);
    code = 1;
}
process.exitCode = code;
