/**
 * ASAP XML parsers compared (issue #14 item 6): the project's hand-written parser
 * (`pipeline/wsi/annotations.ts`) against npm `fast-xml-parser` (validator for line/column errors,
 * then the parser with entity processing off), on a large Camelyon-like file and on hostile ones.
 * Each parse runs in its own child process; the figure is wall time of the parse and the child's
 * peak RSS (VmHWM) after it.
 *
 *   deno run -A bench/asap_xml.ts [--vertices 1000000]
 */
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { parseAsapXml } from "../pipeline/wsi/annotations.ts";
import { numberFlag, runCommand } from "../pipeline/cli/args.ts";

function vmHWM(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The same extraction as parseAsapXml, on fast-xml-parser's object tree. */
function parseWithFxp(text: string, source: string): number {
  const v = XMLValidator.validate(text);
  if (v !== true) throw new Error(`${source}:${v.err.line}:${v.err.col}: ${v.err.msg}`);
  const doc = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: "",
    processEntities: false,
    parseAttributeValue: false,
    isArray: (name) => name === "Annotation" || name === "Coordinate",
  }).parse(text);
  const anns = doc?.ASAP_Annotations?.Annotations?.Annotation ?? [];
  let n = 0;
  for (const a of anns) {
    const cs = a?.Coordinates?.Coordinate ?? [];
    const pts = new Float64Array(cs.length * 2);
    cs.forEach((c: Record<string, string>, i: number) => {
      pts[2 * i] = Number(c.X);
      pts[2 * i + 1] = Number(c.Y);
    });
    n += cs.length;
  }
  return n;
}

function camelyonLike(vertices: number): string {
  const per = 5000, parts: string[] = [];
  for (let a = 0; a * per < vertices; a++) {
    const c: string[] = [];
    for (let k = 0; k < per; k++) {
      const t = (2 * Math.PI * k) / per;
      c.push(
        `\t\t\t\t<Coordinate Order="${k}" X="${
          (50000 + 3000 * Math.cos(t) + a * 10).toFixed(4)
        }" Y="${(60000 + 2000 * Math.sin(t)).toFixed(4)}" />\n`,
      );
    }
    parts.push(
      `\t\t<Annotation Name="Annotation ${a}" Type="Polygon" PartOfGroup="metastases" Color="#F4FA58">\n\t\t\t<Coordinates>\n${
        c.join("")
      }\t\t\t</Coordinates>\n\t\t</Annotation>\n`,
    );
  }
  return `<?xml version="1.0"?>\n<ASAP_Annotations>\n\t<Annotations>\n${
    parts.join("")
  }\t</Annotations>\n</ASAP_Annotations>\n`;
}

/** One polygon of `n` vertices alternating between the top and bottom of a 512² slide. */
function zigzagXml(n: number, size = 512): string {
  const c: string[] = [];
  for (let k = 0; k < n; k++) {
    const x = 1 + ((size - 2) * k) / (n - 1), y = k % 2 ? size - 1.5 : 1.5;
    c.push(`<Coordinate Order="${k}" X="${x}" Y="${y}"/>`);
  }
  return `<ASAP_Annotations><Annotations><Annotation Name="z" Type="Polygon" PartOfGroup="metastases"><Coordinates>${
    c.join("")
  }</Coordinates></Annotation></Annotations></ASAP_Annotations>`;
}

function deepXml(depth: number): string {
  return "<ASAP_Annotations>" + "<a>".repeat(depth) + "</a>".repeat(depth) + "</ASAP_Annotations>";
}

if (Deno.args[0] === "--child") {
  const [, which, file] = Deno.args;
  const text = Deno.readTextFileSync(file);
  const t0 = performance.now();
  let result: string;
  try {
    if (which === "hand") {
      const a = parseAsapXml(text, file);
      result = `${a.positive.reduce((s, p) => s + p.points.length / 2, 0)} vertices`;
    } else result = `${parseWithFxp(text, file)} vertices`;
  } catch (e) {
    result = `error: ${String((e as Error).message ?? e).slice(0, 90)}`;
  }
  const ms = performance.now() - t0;
  console.log(JSON.stringify({ ms, hwm: vmHWM(), result }));
  Deno.exit(0);
}

const USAGE = `usage: deno run -A bench/asap_xml.ts [--vertices N]
  --vertices N  vertices of the Camelyon-like file (default 1000000)`;

Deno.exit(
  await runCommand(
    { name: "bench/asap_xml.ts", usage: USAGE, options: { vertices: { type: "string" } } },
    Deno.args,
    async (flags) => {
      const V = numberFlag(flags, "vertices", { def: 1_000_000, min: 1, integer: true })!;
      const dir = await Deno.makeTempDir();
      const cases: [string, string][] = [
        [`camelyon-like, ${V} vertices`, camelyonLike(V)],
        ["zigzag, 100k vertices", zigzagXml(100_000)],
        ["nested 200 000 deep", deepXml(200_000)],
        ["nested 100 deep", deepXml(100)],
      ];
      console.log("| case | MB | parser | parse ms | peak RSS MiB | result |");
      console.log("|---|---|---|---|---|---|");
      for (const [name, text] of cases) {
        const f = `${dir}/case.xml`;
        await Deno.writeTextFile(f, text);
        for (const which of ["hand", "fast-xml-parser"]) {
          const o = await new Deno.Command(Deno.execPath(), {
            args: ["run", "-A", new URL(import.meta.url).pathname, "--child", which, f],
            stdout: "piped",
            stderr: "piped",
          }).output();
          const out = new TextDecoder().decode(o.stdout).trim();
          let r = {
            ms: NaN,
            hwm: NaN,
            result: `crashed: ${new TextDecoder().decode(o.stderr).slice(0, 80)}`,
          };
          try {
            r = JSON.parse(out);
          } catch { /* crashed */ }
          console.log(
            `| ${name} | ${(text.length / 2 ** 20).toFixed(1)} | ${which} | ${r.ms.toFixed(0)} | ${
              r.hwm.toFixed(0)
            } | ${r.result.replace(/\|/g, "/").replace(/\n/g, " ")} |`,
          );
        }
      }
      await Deno.remove(dir, { recursive: true });
    },
  ),
);
