/** Every bench entry point answers --help with its flags (exit 0) instead of taking it as input. */

const ENTRIES = [
  "bench/main.ts",
  "bench/models.ts",
  "bench/conv.ts",
  "bench/attention.ts",
  "bench/conv_fused.ts",
  "bench/profile.ts",
  "bench/wsi.ts",
  "bench/loads.ts",
  "bench/peers/ort_run.ts",
  "bench/gpu_report.ts",
];

Deno.test("bench entry points answer --help", async () => {
  for (const e of ENTRIES) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", e, "--help"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    if (out.code !== 0 || !/usage:/.test(text)) {
      throw new Error(
        `${e} --help: exit ${out.code}, stdout ${text.slice(0, 200)}, stderr ${
          new TextDecoder().decode(out.stderr).slice(0, 300)
        }`,
      );
    }
  }
  const sh = await new Deno.Command("bash", {
    args: ["bench/gpu_check.sh", "--help"],
    stdout: "piped",
  }).output();
  const text = new TextDecoder().decode(sh.stdout);
  if (sh.code !== 0 || !/usage:/.test(text)) throw new Error(`gpu_check.sh --help: ${text}`);
});
