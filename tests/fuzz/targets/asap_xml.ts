/**
 * ASAP XML: `parseAsapXml` (pipeline/wsi/annotations.ts, the export helper's parser) on mutated
 * annotation files. Seeds: the fixture XML when ../shared/fixtures is present, else a built-in
 * one.
 */
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";
import { parseAsapXml } from "../../../pipeline/wsi/annotations.ts";
import { namesFileWithoutCrash } from "../wsi_refusal.ts";

const NAME = "fuzz.xml";

const BUILT_IN = `<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="metastases" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="1200.5" Y="1300" />
        <Coordinate Order="1" X="2300" Y="1250" />
        <Coordinate Order="2" X="2500" Y="2100" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 1" Type="Rectangle" PartOfGroup="_2" Color="#64FE2E">
      <Coordinates>
        <Coordinate Order="0" X="10" Y="10" />
        <Coordinate Order="1" X="90" Y="10" />
        <Coordinate Order="2" X="90" Y="90" />
        <Coordinate Order="3" X="10" Y="90" />
      </Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups>
    <Group Name="metastases" PartOfGroup="None" Color="#ff0000"><Attributes /></Group>
  </AnnotationGroups>
</ASAP_Annotations>
`;

function seeds(): Uint8Array[] {
  const enc = new TextEncoder();
  const out = [enc.encode(BUILT_IN)];
  const fixture = new URL("../../../../shared/fixtures/wsi/slide_jpeg_t256.xml", import.meta.url);
  try {
    out.push(Deno.readFileSync(fixture));
  } catch {
    // No fixtures here (e.g. a checkout without ../shared): the built-in seed serves.
  }
  return out;
}

const target: FuzzTarget = {
  name: "asap_xml",
  description: "ASAP annotation XML through parseAsapXml",
  input: () => fuzzBytes(seeds(), 2048),
  parse(input) {
    parseAsapXml(new TextDecoder().decode(input), NAME);
  },
  isParserError: (e) => namesFileWithoutCrash(e, NAME),
};
export default target;
