/** Pipeline config: profiles, config-file and flag layering, type and range errors. */
import assert from "node:assert/strict";
import { mergeConfig, parseSetting, PROFILES, resolveConfig } from "../../pipeline/config.ts";

Deno.test("config: the paper profile holds the reference's values", async () => {
  const dir = await Deno.makeTempDir();
  const c = await resolveConfig({
    profile: "paper",
    data: dir,
    samCheckpoint: "sam_vit_b_01ec64.pth",
  });
  assert.equal(c.patchSize, 512);
  assert.deepEqual(c.classifier.layers, [3, 4, 6, 3]);
  assert.equal(c.classifier.batchSize, 16);
  assert.equal(c.classifier.epochs, 50);
  assert.equal(c.classifier.lr, 1e-5);
  assert.equal(c.classifier.weightDecay, 1e-3);
  assert.equal(c.classifier.gamma, 0.9);
  assert.equal(c.sam.model, "vit_b");
  assert.equal(c.sam.trainEncoder, false);
  assert.equal(c.sam.lr, 5e-6);
  assert.equal(c.sam.weightDecay, 1e-2);
  assert.equal(c.sam.epochs, 20);
  assert.equal(c.sam.batchSize, 4);
  assert.equal(c.sam.points, 50);
  assert.equal(c.iterations, 3);
  assert.equal(c.idsThreshold, 0.9);
});

Deno.test("config: paper needs a checkpoint and data; no checkpoint trains the encoder", async () => {
  await assert.rejects(resolveConfig({ profile: "paper", data: "x" }), /sam-checkpoint/);
  await assert.rejects(resolveConfig({ profile: "paper", samCheckpoint: "x.pth" }), /--data/);
  const t = await resolveConfig({ profile: "tiny" });
  assert.equal(t.sam.trainEncoder, true);
  const d = await resolveConfig({ profile: "tiny", trainEncoder: false });
  assert.equal(d.sam.trainEncoder, false);
});

Deno.test("config: file, then flags, then --set override the profile", async () => {
  const dir = await Deno.makeTempDir();
  const f = `${dir}/c.json`;
  await Deno.writeTextFile(
    f,
    JSON.stringify({ iterations: 2, classifier: { epochs: 3 }, sam: { lr: 0.01 } }),
  );
  const c = await resolveConfig({
    profile: "tiny",
    config: f,
    iterations: "4",
    noAdl: true,
    noFft: true,
    noRotation: true,
    idsThreshold: "0.8",
    set: ["sam.points=7", "classifier.cam.percentile=30"],
  });
  assert.equal(c.iterations, 4);
  assert.equal(c.classifier.epochs, 3);
  assert.equal(c.sam.lr, 0.01);
  assert.equal(c.classifier.adl, false);
  assert.equal(c.classifier.fft, false);
  assert.equal(c.classifier.rotations, false);
  assert.equal(c.idsThreshold, 0.8);
  assert.equal(c.sam.points, 7);
  assert.equal(c.classifier.cam.percentile, 30);
  // The profile object itself is untouched.
  assert.equal(PROFILES.tiny.classifier.adl, true);
});

Deno.test("config: unknown keys, wrong types and bad ranges name the key", async () => {
  assert.throws(() => mergeConfig({ a: 1 }, { b: 2 }, "f.json"), /unknown key "b"/);
  assert.throws(() => mergeConfig({ a: 1 }, { a: "x" }, "f.json"), /"a" must be a number/);
  assert.throws(
    () => mergeConfig({ a: { b: true } }, { a: { b: 1 } }, "f.json"),
    /"a.b" must be a boolean/,
  );
  assert.throws(() => parseSetting({ a: 1 }, "a=zz"), /must be a number/);
  assert.throws(() => parseSetting({ a: 1 }, "nokey"), /key.path=value/);
  await assert.rejects(resolveConfig({ profile: "nope" }), /--profile must be one of/);
  await assert.rejects(resolveConfig({ profile: "tiny", idsThreshold: "2" }), /idsThreshold/);
  await assert.rejects(resolveConfig({ profile: "tiny", set: ["sam.epochs=0"] }), /sam.epochs/);
  await assert.rejects(
    resolveConfig({ profile: "tiny", iterations: "x" }),
    /--iterations must be a number/,
  );
});

Deno.test("config: ablation flags reach the config and the classifier that is built from it", async () => {
  const { initGpu } = await import("../../engine/mod.ts");
  const { buildClassifier } = await import("../../pipeline/classifier/model.ts");
  const c = await resolveConfig({
    profile: "tiny",
    noAdl: true,
    noFft: true,
    noRotation: true,
    idsThreshold: "0.8",
    iterations: "3",
  });
  assert.equal(c.classifier.adl, false);
  assert.equal(c.classifier.fft, false);
  assert.equal(c.classifier.rotations, false);
  assert.equal(c.idsThreshold, 0.8);
  assert.equal(c.iterations, 3);
  await initGpu();
  const m = buildClassifier(c);
  // No FFT channel: conv1 takes RGB only; no ADL: every ADL is the identity even in training.
  assert.deepEqual(m.conv1.weight.shape, [c.classifier.width, 3, 7, 7]);
  assert.ok(m.adls.length > 0 && m.adls.every((a) => !a.enabled));
  m.dispose();
  const full = buildClassifier(await resolveConfig({ profile: "tiny" }));
  assert.deepEqual(full.conv1.weight.shape, [c.classifier.width, 4, 7, 7]);
  assert.ok(full.adls.every((a) => a.enabled));
  full.dispose();
});
