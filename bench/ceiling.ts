/**
 * The physical limit no bench row may exceed. For a software adapter (and for every CPU peer) it is
 * the CPU's fp32 peak computed from cores × frequency × vector lanes × 2 (multiply-add) × 2 FMA
 * units per core (the most any x86 core has); where the kernel does not expose a maximum frequency
 * (VMs), the nominal "cpu MHz" is taken × 1.5 as an allowance for boost. For a hardware adapter it
 * is four times the fp32 rate of the timing probe's multiply-add kernel by the wall clock (a
 * kernel may beat that simple probe, not by 4×; WebGPU exposes no peak). Bench-only.
 */
import { gpu, timestampProbe } from "../engine/mod.ts";
import type { BenchRow } from "./registry.ts";

export interface Ceiling {
  /** GFLOP/s no row may exceed. */
  gflops: number;
  /** How it was obtained. */
  source: string;
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** fp32 peak of this machine's CPU, computed (see the module comment). */
export function cpuCeiling(): Ceiling {
  const info = readText("/proc/cpuinfo");
  const cores = navigator.hardwareConcurrency ||
    (info.match(/^processor\s*:/gm) ?? []).length || 1;
  const flags = new Set((info.match(/^flags\s*:(.*)$/m)?.[1] ?? "").trim().split(/\s+/));
  const lanes = flags.has("avx512f") ? 16 : flags.has("avx") ? 8 : 4;
  const maxKhz = Number(readText("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").trim());
  let ghz: number, freqNote: string;
  if (maxKhz > 0) {
    ghz = maxKhz / 1e6;
    freqNote = `cpuinfo_max_freq ${ghz.toFixed(2)} GHz`;
  } else {
    const mhz = Math.max(
      0,
      ...[...info.matchAll(/^cpu MHz\s*:\s*([\d.]+)/gm)].map((m) => Number(m[1])),
    );
    ghz = (mhz || 3000) / 1000 * 1.5;
    freqNote = `${mhz ? `cpu MHz ${(mhz / 1000).toFixed(2)} GHz` : "no frequency, 3 GHz assumed"}` +
      ` × 1.5 boost allowance`;
  }
  const gflops = cores * ghz * lanes * 2 * 2;
  return {
    gflops,
    source: `computed: ${cores} CPUs × ${freqNote} × ${lanes} fp32 lanes (${
      lanes === 16 ? "AVX-512" : lanes === 8 ? "AVX" : "SSE"
    }) × 2 FMA units × 2 = ${gflops.toFixed(0)} GFLOP/s`,
  };
}

/** The ceiling for rows measured on the current adapter. */
export async function adapterCeiling(): Promise<Ceiling> {
  const g = gpu();
  const probe = await timestampProbe();
  if (g.isSoftware) {
    const c = cpuCeiling();
    return {
      gflops: c.gflops,
      source: `${c.source}; the probe's FMA kernel measured ${
        probe.fmaGflops.toFixed(1)
      } GFLOP/s on ${g.adapterName}`,
    };
  }
  return {
    gflops: 4 * probe.fmaGflops,
    source: `measured: 4 × the timing probe's FMA kernel (${
      probe.fmaGflops.toFixed(0)
    } GFLOP/s by the wall clock) on ${g.adapterName}`,
  };
}

/** Thrown for a row faster than physics allows. */
export class ImpossibleRowError extends Error {}

/**
 * Throws {@link ImpossibleRowError} naming the row's kernel when its GFLOP/s exceeds the ceiling:
 * the adapter's for our rows, the CPU's for rows of CPU peers.
 */
export function checkRow(row: BenchRow, ours: Ceiling, cpu: Ceiling, adapter: string): void {
  if (row.gflops === null || !Number.isFinite(row.gflops)) return;
  const c = row.adapter === adapter ? ours : /cpu|torch|onnx|ort/i.test(row.adapter) ? cpu : null;
  if (!c) return;
  if (row.gflops > c.gflops) {
    throw new ImpossibleRowError(
      `bench: kernel "${row.name}" [${row.shape}] measured ${row.gflops.toFixed(1)} GFLOP/s ` +
        `(${row.ms.toPrecision(3)} ms), above the physical ceiling of ${
          c.gflops.toFixed(0)
        } GFLOP/s (${c.source}): its timing is wrong, the row is refused`,
    );
  }
}

/** A peer on the CPU (its time is held to the CPU's ceiling; the others to the adapter's). */
const isCpuPeer = (name: string) => /cpu/i.test(name);

/**
 * Refuses each peer of `row` whose time implies more GFLOP/s than its ceiling (the same work as the
 * row's): the peer becomes `ok: false` with no time and the error says why; returns the messages.
 */
export function checkPeers(row: BenchRow, ours: Ceiling, cpu: Ceiling): string[] {
  if (!row.peers || row.gflops === null || !Number.isFinite(row.gflops)) return [];
  const flops = row.gflops * row.ms * 1e6;
  const out: string[] = [];
  for (const [name, p] of Object.entries(row.peers)) {
    if (p.ms === null || !(p.ms > 0)) continue;
    const c = isCpuPeer(name) ? cpu : ours;
    const gflops = flops / p.ms / 1e6;
    if (gflops <= c.gflops) continue;
    const msg = `bench: peer ${name} of kernel "${row.name}" [${row.shape}] measured ${
      gflops.toFixed(1)
    } GFLOP/s (${p.ms.toPrecision(3)} ms), above the physical ceiling of ${
      c.gflops.toFixed(0)
    } GFLOP/s (${c.source}): its timing is wrong, the figure is refused`;
    row.peers[name] = { ...p, ms: null, ok: false, error: msg };
    out.push(msg);
  }
  return out;
}

/**
 * The rows within the physical ceilings (the adapter's for ours, the CPU's for CPU peers) and a
 * refusal message, naming the kernel, for each row above them (and each peer figure above its
 * ceiling, which {@link checkPeers} turns into a failed peer). Every bench entry point that prints
 * rows passes them through this.
 */
export async function withinCeiling(
  rows: BenchRow[],
): Promise<{ rows: BenchRow[]; refused: string[] }> {
  const ours = await adapterCeiling(), cpu = cpuCeiling(), adapter = gpu().adapterName;
  const kept: BenchRow[] = [], refused: string[] = [];
  for (const r of rows) {
    try {
      checkRow(r, ours, cpu, adapter);
      refused.push(...checkPeers(r, ours, cpu));
      kept.push(r);
    } catch (e) {
      if (!(e instanceof ImpossibleRowError)) throw e;
      refused.push(e.message);
    }
  }
  return { rows: kept, refused };
}

/** Prints the refusals on stderr; the exit status of an entry point that had some (1) or not. */
export function reportRefused(refused: string[]): number {
  for (const m of refused) console.error(m);
  if (refused.length) {
    console.error(`bench: ${refused.length} row(s) refused as impossible (see above)`);
  }
  return refused.length ? 1 : 0;
}
