// The firmware under MicroPython (its WebAssembly build) in Node.js, on stdin/stdout.
//
//   node run.mjs --micropython PATH/micropython.mjs [--firmware DIR] [--dtype f32]
//                [--boot N] [--board sim|wire] [--heap BYTES] [--mem] [--loop js|python]
//
// Every .py file of DIR (default: the folder above this one) goes into MicroPython's
// file system, and stdio_main.make_core() builds the firmware's protocol core. Node's
// stdin and stdout are the serial line: each chunk read goes to the core's feed() and
// the frames it returns are written out, byte for byte (hex across the JS boundary).
// MicroPython collects its heap when a call from JS returns, so the loop stays in JS;
// --loop python runs physproto.serve() instead, the loop main.py runs on the Pico (this
// build collects nothing until it returns: for short runs).
// With --mem each batch's heap use goes to stderr: "mem ROWS ALLOCATED LIVE FREE", the
// bytes allocated while answering, then the heap in use and free after collection.
// A Python exception ends the process with status 1 and its text on stderr.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

function parse(argv) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const opts = { firmware: path.dirname(here), dtype: "i16", boot: 0, board: "sim", loop: "js", heap: 196608, mem: false };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, "");
    if (key === "mem") opts.mem = true;
    else if (key in opts || key === "micropython") opts[key] = argv[++i];
    else throw new Error(`run.mjs: unknown option ${argv[i]}`);
  }
  if (!opts.micropython) throw new Error("run.mjs: --micropython PATH is required");
  if (!["i16", "f32"].includes(opts.dtype)) throw new Error(`run.mjs: bad --dtype ${opts.dtype}`);
  if (!["sim", "wire"].includes(opts.board)) throw new Error(`run.mjs: bad --board ${opts.board}`);
  if (!["js", "python"].includes(opts.loop)) throw new Error(`run.mjs: bad --loop ${opts.loop}`);
  return opts;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

// Up to n bytes from stdin, blocking until some arrive; null at end of input.
function read(n) {
  const buf = Buffer.alloc(n);
  for (;;) {
    try {
      const got = fs.readSync(0, buf, 0, n, null);
      return got === 0 ? null : buf.subarray(0, got);
    } catch (err) {
      if (err.code === "EAGAIN") Atomics.wait(pause, 0, 0, 2);
      else if (err.code === "EOF" || err.code === "EIO") return null;
      else throw err;
    }
  }
}

function write(bytes) {
  let done = 0;
  while (done < bytes.length) {
    try {
      done += fs.writeSync(1, bytes, done, bytes.length - done);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      Atomics.wait(pause, 0, 0, 2);
    }
  }
}

const GLUE = (boot, dtype, board) => `
import sys
sys.path.insert(0, "/firmware")
import binascii
import gc
import stdio_main

core = stdio_main.make_core(boot=${boot}, dtype="${dtype}", board="${board}")


def feed(text):
    rows, before = core.measured, gc.mem_alloc()
    gc.disable()  # nothing collected inside: the growth is what answering allocated
    try:
        frames = core.feed(binascii.unhexlify(text))
    finally:
        grown = gc.mem_alloc() - before
        gc.enable()
    return "%d %d " % (core.measured - rows, grown) + "".join(
        binascii.hexlify(f).decode() for f in frames)


def heap():
    return "%d %d" % (gc.mem_alloc(), gc.mem_free())


def serve():
    import physproto
    import serial

    def read(n):
        text = serial.read(n)
        return None if text is None else binascii.unhexlify(text)

    physproto.serve(core, read, lambda frame: serial.write(binascii.hexlify(frame).decode()))
`;

const opts = parse(process.argv.slice(2));
const { loadMicroPython } = await import(pathToFileURL(opts.micropython).href);
const log = (text) => process.stderr.write(`${text}\n`);
const mp = await loadMicroPython({ heapsize: Number(opts.heap), stdout: log, stderr: log });
mp.FS.mkdir("/firmware");
for (const name of fs.readdirSync(opts.firmware).filter((n) => n.endsWith(".py"))) {
  mp.FS.writeFile(`/firmware/${name}`, fs.readFileSync(path.join(opts.firmware, name)));
}
try {
  mp.runPython(GLUE(Number(opts.boot), opts.dtype, opts.board));
  const feed = mp.globals.get("feed"), heap = mp.globals.get("heap");
  if (opts.loop === "python") {
    mp.registerJsModule("serial", {
      read: (n) => read(n)?.toString("hex") ?? null,
      write: (text) => write(Buffer.from(text, "hex")),
    });
    mp.globals.get("serve")();
  }
  for (let data = read(4096); data !== null; data = read(4096)) {
    const [rows, grown, frames] = feed(data.toString("hex")).split(" ");
    if (frames) write(Buffer.from(frames, "hex"));
    if (opts.mem && rows !== "0") log(`mem ${rows} ${grown} ${heap()}`);
  }
} catch (err) {
  if (err.name !== "PythonError") throw err;
  log(`MicroPython: ${err.type}: ${err.message}`);
  process.exit(1);
}
